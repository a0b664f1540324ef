"""IBM Spectrum LSF, asked about a job from inside it (bjobs -json), and a
chain's next link queued with bsub -w "ended(ID)"."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Dict, List, Optional

from start_ray.batch.scheduler import TIMEOUT, Scheduler, _run
from start_ray.errors import UsageError


class Lsf(Scheduler):
    """IBM Spectrum LSF: bjobs reports the job's options (as JSON); a chain
    link is `bsub -w "ended(ID)"` with the script on stdin (its #BSUB lines
    are read again). LSF sends the walltime warning itself (`bsub -wa USR1
    -wt MINUTES`): no time limit needed here."""

    name = "LSF"
    job_variable = "LSB_JOBID"

    def read_fields(self) -> Dict[str, str]:
        out = _run(["bjobs", "-json", "-o", "job_name queue proj_name output_file error_file",
                    self.job_id])
        records = json.loads(out).get("RECORDS") or [{}]
        return {key: str(value) for key, value in records[0].items()}

    def submit_options(self) -> List[str]:
        options = []
        for field, option in (("JOB_NAME", "-J"), ("QUEUE", "-q"), ("PROJ_NAME", "-P"),
                              ("OUTPUT_FILE", "-o"), ("ERROR_FILE", "-e")):
            value = self.fields.get(field, "")
            if value and value != "default":
                options += [option, value.replace(self.job_id, "%J")]
        return options

    def script(self) -> Optional[str]:
        return None  # LSF keeps a wrapper of its own: the script says (CHAIN_SCRIPT)

    def time_limit(self) -> Optional[int]:
        return None

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        exports = ",".join(["all"] + [f"{key}={value}" for key, value in env.items()])
        try:
            stdin = open(script)
        except OSError as err:
            raise UsageError(f"cannot read the next link's script {script}: {err.strerror} "
                             "(set CHAIN_SCRIPT to its path)") from None
        with stdin:
            try:
                done = subprocess.run(["bsub", "-w", f"ended({self.job_id})", *options,
                                       "-env", exports], stdin=stdin, capture_output=True,
                                      text=True, timeout=TIMEOUT)
            except (OSError, subprocess.SubprocessError) as err:
                raise UsageError(f"bsub failed: {err}") from None
        found = re.search(r"Job <(\d+)> is submitted", done.stdout)
        if done.returncode != 0 or not found:
            raise UsageError(f"bsub failed: {done.stderr.strip() or done.stdout.strip()}")
        return found.group(1)

    def cancel(self, job: str) -> None:
        _run(["bkill", job])
