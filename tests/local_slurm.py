"""A real single-node Slurm on this machine, for the tests of jobs/: Debian's
slurmctld + slurmd with munge, all state under a temp dir, one fake node with
more CPUs than the machine (config_overrides), pmix as the MPI plugin.

It starts only what is not running: a munged that already answers is used as
it is; slurmctld and slurmd are ours and stopped by the pids they wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

from started import Started

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "libpmix2", "libpmix-dev")

CONF = """\
ClusterName=startraytest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
# Real sites give tasks 30 s or more between SIGTERM and SIGKILL; the tests
# need some of it for the driver's checkpoint.
KillWait=30
MinJobAge=300
InactiveLimit=0
Waittime=0
NodeName={host} CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _run(cmd: List[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def unavailable() -> Optional[str]:
    """Why a local Slurm cannot run here, or None."""
    if os.geteuid() != 0:
        return "a local Slurm needs root"
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "munged")
               if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        return (f"{', '.join(missing)} not installed (apt-get install "
                f"{' '.join(PACKAGES)})")
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalSlurm(Started):
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="srslurm-")
        self.host = socket.gethostname().split(".")[0]
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.munged: Optional[int] = None  # pid, when we started it

    @property
    def env(self) -> Dict[str, str]:
        """For the client commands (sbatch, srun, squeue, scancel)."""
        return {"SLURM_CONF": self.conf}

    def start(self) -> None:
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(self.conf, "w") as handle:
            handle.write(CONF.format(host=self.host, dir=self.dir, ctld_port=_free_port(),
                                     slurmd_port=_free_port()))
        with open(os.path.join(self.dir, "mpi.conf"), "w") as handle:
            handle.write("PMIxEnv=PMIX_MCA_psec=native\n")
        self._start_munge()
        env = {**os.environ, **self.env}
        for daemon in ("slurmctld", "slurmd"):
            done = _run([shutil.which(daemon) or f"/usr/sbin/{daemon}", "-f", self.conf],
                        env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{daemon} did not start: {done.stderr}{self.log_tail()}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _run(["sinfo", "-h", "-o", "%t"], env=env).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(f"the Slurm node never became idle ({state!r}){self.log_tail()}")

    def _start_munge(self) -> None:
        if _run(["sh", "-c", "munge -n | unmunge"]).returncode == 0:
            return  # a munged is already serving this machine
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        done = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
        if done.returncode != 0:
            raise RuntimeError(f"munged did not start: {done.stderr}")
        with open("/run/munge/munged.pid") as handle:
            self.munged = int(handle.read().strip())

    def log_tail(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                with open(path) as handle:
                    out.append(f"\n--- {name}\n" + "".join(handle.readlines()[-15:]))
        return "".join(out)

    def stop(self) -> None:
        pids = []
        for name in ("slurmctld.pid", "slurmd.pid"):
            try:
                with open(os.path.join(self.dir, name)) as handle:
                    pids.append(int(handle.read().strip()))
            except (OSError, ValueError):
                pass
        if pids:
            _run(["scontrol", "shutdown"], env={**os.environ, **self.env}, timeout=30)
        if self.munged:
            pids.append(self.munged)
            os.kill(self.munged, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --------------------------------------------------------------- jobs
    def sbatch(self, script: str, args: List[str], env: Dict[str, str], cwd: str) -> str:
        done = _run(["sbatch", "--parsable", *args, script], env={**env, **self.env}, cwd=cwd)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed: {done.stderr}")
        return done.stdout.strip().split(";")[0]

    def running(self, job_id: str) -> bool:
        done = _run(["squeue", "-h", "-j", job_id, "-o", "%T"],
                    env={**os.environ, **self.env})
        return bool(done.stdout.strip())

    def running_now(self) -> List[str]:
        """The ids of the jobs running (not pending)."""
        done = _run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"],
                    env={**os.environ, **self.env})
        return done.stdout.split()

    def steps(self, job_id: str) -> List[str]:
        """The ids of the job's steps that Slurm has made (JOB.0, ...)."""
        done = _run(["squeue", "-h", "-s", "-j", job_id, "-o", "%i"],
                    env={**os.environ, **self.env})
        return [step for step in done.stdout.split() if not step.endswith(".batch")]

    def queue(self) -> List[str]:
        """The ids of every job pending or running."""
        done = _run(["squeue", "-h", "-o", "%i"], env={**os.environ, **self.env})
        return done.stdout.split()

    def wait_for_empty_queue(self, timeout: float) -> None:
        """Until no job is pending or running (a chain queues its own links)."""
        deadline = time.monotonic() + timeout
        while self.queue():
            if time.monotonic() > deadline:
                for job_id in self.queue():
                    self.scancel(job_id, "--signal=KILL")
                raise AssertionError(f"Slurm jobs still queued after {timeout}s")
            time.sleep(1)

    def wait(self, job_id: str, timeout: float) -> Dict[str, str]:
        """Wait for the job to end; its final record (JobState, ExitCode, ...)."""
        deadline = time.monotonic() + timeout
        while self.running(job_id):
            if time.monotonic() > deadline:
                _run(["scancel", "--signal=KILL", job_id], env={**os.environ, **self.env})
                raise AssertionError(f"Slurm job {job_id} did not end within {timeout}s")
            time.sleep(0.5)
        return self.record(job_id)

    def record(self, job_id: str) -> Dict[str, str]:
        """The job's line in the jobcomp file, as a dict."""
        path = os.path.join(self.dir, "jobcomp.txt")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as handle:
                    for line in handle:
                        fields = dict(re.findall(r"(\w+)=(\S*)", line))
                        if fields.get("JobId") == job_id:
                            return fields
            time.sleep(0.3)
        raise AssertionError(f"no jobcomp record for job {job_id}")

    def scancel(self, job_id: str, *args: str) -> None:
        _run(["scancel", *args, job_id], env={**os.environ, **self.env})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
