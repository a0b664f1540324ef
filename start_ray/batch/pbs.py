"""PBS (OpenPBS, PBS Pro), asked about a job from inside it (qstat -f), and
a chain's next link queued with qsub -W depend=afterany."""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

from start_ray.batch.scheduler import HOST_CPUS, Scheduler, _run, qstat_fields, seconds


class Pbs(Scheduler):
    name = "PBS"
    job_variable = "PBS_JOBID"

    def read_fields(self) -> Dict[str, str]:
        return qstat_fields(_run(["qstat", "-f", self.job_id]))

    def submit_options(self) -> List[str]:
        fields, number = self.fields, self.job_id.split(".")[0]
        options = []
        for field, option in (("Job_Name", "-N"), ("Account_Name", "-A"), ("queue", "-q"),
                              ("Join_Path", "-j"), ("Mail_Points", "-m"), ("Mail_Users", "-M")):
            if fields.get(field) and fields[field] != "n":
                options += [option, fields[field]]
        for key, value in sorted(fields.items()):
            if key.startswith("Resource_List.") and key.split(".", 1)[1] in (
                    "select", "walltime", "place", "filesystems"):
                options += ["-l", f"{key.split('.', 1)[1]}={value}"]
        for field, option in (("Output_Path", "-o"), ("Error_Path", "-e")):
            path = fields.get(field, "").split(":", 1)[-1]
            if path and number not in os.path.basename(path):  # not PBS's own default
                options += [option, path]
        return options

    def script(self) -> Optional[str]:
        arguments = self.fields.get("Submit_arguments", "").split()
        if not arguments:
            return None
        workdir = self.env.get("PBS_O_WORKDIR", "")
        return os.path.join(workdir, arguments[-1])

    def time_limit(self) -> Optional[int]:
        """Seconds left of the walltime: Resource_List.walltime less the time
        since the job started (stime, in qstat's local time)."""
        limit = self.fields.get("Resource_List.walltime")
        total = seconds(limit) if limit else None
        started = self.fields.get("stime")
        if total is None or not started:
            return total
        try:
            began = time.mktime(time.strptime(" ".join(started.split()), "%a %b %d %H:%M:%S %Y"))
        except ValueError:
            return total
        return max(0, int(total - max(0.0, time.time() - began)))

    def host_cpus(self) -> Optional[int]:
        """The CPUs PBS gave each of the job's hosts (exec_host `h0/0*2+h1/0*2`:
        a chunk's ncpus after `*`, summed per host), when every host got the
        same; None otherwise. NCPUS and OMP_NUM_THREADS are a rank's threads
        (ompthreads, by default the chunk's ncpus), not what its host holds."""
        per_host: Dict[str, int] = {}
        for chunk in filter(None, self.fields.get("exec_host", "").split("+")):
            host, _, slot = chunk.partition("/")
            count = slot.partition("*")[2] or "1"
            if not count.isdigit():
                return None
            per_host[host] = per_host.get(host, 0) + int(count)
        counts = set(per_host.values())
        return counts.pop() if len(counts) == 1 else None

    def step_env(self) -> Dict[str, str]:
        cpus = self.host_cpus()
        return {HOST_CPUS: str(cpus)} if cpus else {}

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        # -V: the variables the first qsub gave (-v DRIVER=...) are this job's;
        # the chain's own, new values in qsub's environment as well as in -v
        # (a variable given twice is PBS's to order).
        variables = ",".join(f"{key}={value}" for key, value in env.items())
        out = _run(["qsub", "-V", "-W", f"depend=afterany:{self.job_id}", *options,
                    *(["-v", variables] if variables else []), script], env)
        return out.strip()

    def cancel(self, job: str) -> None:
        _run(["qdel", job])
