"""Slurm, asked about a job from inside it (scontrol show job), and a
chain's next link queued with sbatch."""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional

from start_ray.batch.scheduler import Scheduler, _run, seconds


class Slurm(Scheduler):
    name = "Slurm"
    job_variable = "SLURM_JOB_ID"

    def read_fields(self) -> Dict[str, str]:
        text = _run(["scontrol", "show", "job", self.job_id])
        return dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", text))

    def _given(self, name: str) -> Optional[str]:
        value = self.fields.get(name, "")
        return None if value in ("", "(null)", "N/A", "NONE", "*") else value

    def submit_options(self) -> List[str]:
        options = []
        for field, option in (("JobName", "--job-name"), ("Account", "--account"),
                              ("Partition", "--partition"), ("QOS", "--qos"),
                              ("Features", "--constraint"), ("MailUser", "--mail-user"),
                              ("MailType", "--mail-type"), ("NumNodes", "--nodes"),
                              ("CPUs/Task", "--cpus-per-task"), ("TimeLimit", "--time"),
                              ("WorkDir", "--chdir")):
            value = self._given(field)
            if value is not None:
                options.append(f"{option}={value}")
        per_node = (self._given("NtasksPerN:B:S:C") or "0").split(":")[0]
        if per_node.isdigit() and int(per_node) > 0:
            options.append(f"--ntasks-per-node={per_node}")
        elif self._given("NumTasks"):
            options.append(f"--ntasks={self._given('NumTasks')}")
        gres = self._given("TresPerNode")
        if gres:
            options.append("--gres=" + ",".join(re.sub(r"^gres[:/]", "", part)
                                                 for part in gres.split(",")))
        out, err = self._given("StdOut"), self._given("StdErr")
        if out:
            options.append("--output=" + self.pattern(out))
        if err and err != out:
            options.append("--error=" + self.pattern(err))
        return options

    def pattern(self, path: str) -> str:
        """An output path as Slurm wrote it (`out/link-42.log`) made a pattern
        again (`out/link-%j.log`): the job id, as a whole number, in the file
        name only (`pytest-42/` is a folder that stays)."""
        folder, name = os.path.split(path)
        return os.path.join(folder, re.sub(rf"(?<!\d){re.escape(self.job_id)}(?!\d)", "%j",
                                           name))

    def script(self) -> Optional[str]:
        return self._given("Command")

    def time_limit(self) -> Optional[int]:
        """Seconds left: TimeLimit less RunTime."""
        limit = self._given("TimeLimit")
        total = seconds(limit) if limit and limit != "UNLIMITED" else None
        ran = seconds(self._given("RunTime") or "0") or 0
        return None if total is None else max(0, total - ran)

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        exports = ",".join(["ALL"] + [f"{key}={value}" for key, value in env.items()])
        out = _run(["sbatch", "--parsable", f"--dependency=afterany:{self.job_id}",
                    *options, f"--export={exports}", script])
        return out.strip().split(";")[0]

    def cancel(self, job: str) -> None:
        _run(["scancel", job])
