"""The batch scheduler around a job, asked about the job itself: its options
as submitted, its time limit, and how to queue the next job of a chain with
the same options. One module per scheduler (slurm.py, pbs.py, flux.py,
lsf.py); which one a job runs under: schedulers.py.

A chain's next link must land where the first one did (account, partition,
QoS, output file, constraint, GRES, mail): options given on the first
`sbatch`/`qsub` command line are not in the script, so they are read back
from the scheduler (`scontrol show job`, `qstat -f`) and passed again.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Dict, List, Mapping, Optional

from start_ray.errors import UsageError

TIMEOUT = 30.0
# What a PBS job's step learns from the scheduler (Pbs.host_cpus): the CPUs of
# each host, which host/resources.py prefers to NCPUS.
HOST_CPUS = "START_RAY_PBS_HOST_CPUS"


def _run(cmd: List[str], env: Optional[Mapping[str, str]] = None) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                              env=None if env is None else {**os.environ, **env})
    except (OSError, subprocess.SubprocessError) as err:
        raise UsageError(f"{cmd[0]} failed: {err}") from None
    if done.returncode != 0:
        raise UsageError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def seconds(text: str) -> Optional[int]:
    """`1-02:03:04`, `02:03:04`, `03:04` or `5` (minutes, Slurm) -> seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if match:
        days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + secs
    return int(text) * 60 if text.strip().isdigit() else None


def qstat_fields(text: str) -> Dict[str, str]:
    """`qstat -f` as {field: value}: `    Key = value` lines, a long value
    continued on lines that begin with a tab (PBS Pro, OpenPBS, Torque)."""
    joined = re.sub(r"\n\t", "", text)
    return {key.strip(): value.strip() for key, value in
            re.findall(r"^\s+([\w.]+) = (.*)$", joined, re.M)}


class Scheduler:
    """One batch system, as seen from inside one of its jobs."""

    name = ""
    job_variable = ""  # where the scheduler puts the job id

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.job_id = environ[self.job_variable]
        self._fields: Optional[Dict[str, str]] = None

    @property
    def fields(self) -> Dict[str, str]:
        """What the scheduler reports of this job (asked once)."""
        if self._fields is None:
            self._fields = self.read_fields()
        return self._fields

    def read_fields(self) -> Dict[str, str]:
        raise NotImplementedError

    def submit_options(self) -> List[str]:
        """Options that submit a job like this one."""
        raise NotImplementedError

    def script(self) -> Optional[str]:
        """The batch script this job runs, as submitted (its absolute path)."""
        raise NotImplementedError

    def time_limit(self) -> Optional[int]:
        """This job's time limit in seconds, if it has one."""
        raise NotImplementedError

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        """Queue `script` to start once this job has ended; its job id."""
        raise NotImplementedError

    def warning_sent(self) -> bool:
        """Whether the scheduler sent the walltime warning to the step's tasks
        and not to the batch script (which then never saw it)."""
        return False

    def cautions(self) -> List[str]:
        """What in this job's own options will go wrong (said at the start)."""
        return []

    def step_env(self) -> Dict[str, str]:
        """What the job step's ranks should know that only the scheduler
        says (asked once, here, rather than by every rank)."""
        return {}

    def cancel(self, job: str) -> None:
        raise NotImplementedError
