"""A batch script's job step (`srun ...`, `mpiexec ...`), run so that the
walltime warning reaches the driver.

The scheduler's warning goes to the batch script (`#SBATCH --signal=B:USR1@T`),
not to the step's tasks, and a shell runs traps only between commands. So the
script runs `python -m start_ray.jobs run -- srun ...`, which starts the step,
passes the warning on to it (srun, mpiexec and aprun forward it to the tasks;
start_ray forwards it to the driver) and returns the step's exit status.
SIGTERM (scancel, the walltime itself) is not passed on: the scheduler sends
it to every task already, and `kill -TERM <srun>` makes srun SIGKILL them.

PBS sends no warning: with `warn_before`, the step gets the walltime signal
that many seconds before the job's time limit (from the scheduler).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Optional, Sequence

from start_ray.batch.scheduler import Scheduler
from start_ray.errors import UsageError
from start_ray.procs.signals import WARNED_VARIABLE, SignalInbox


class Step:
    """One job step and whether the walltime warning came (and was passed on)."""

    def __init__(self, cmd: Sequence[str], walltime_signal: int = signal.SIGUSR1,
                 inbox: Optional[SignalInbox] = None) -> None:
        self.cmd = list(cmd)
        self.walltime_signal = walltime_signal
        self.warned = threading.Event()
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._source = ""  # who warned, before the step had started
        self._early = inbox  # what the wrapper caught before this step existed
        self.warned_at_start = False  # the step was started warned
        self.no_time = False  # the time left was under the warning's lead at the start

    def run(self, scheduler: Optional[Scheduler] = None, warn_before: float = 0.0) -> int:
        """Run the step to its end: its exit status (128+N if killed by N)."""
        signal.signal(self.walltime_signal, lambda signum, frame: self.warn("the scheduler"))
        signal.signal(signal.SIGTERM, lambda signum, frame: say(
            "SIGTERM: the scheduler is stopping the job; the tasks have it too"))
        if self._early is not None and self.walltime_signal in self._early.drain():
            self.warn("the scheduler")  # it came while the wrapper started
        delay = None
        if warn_before > 0 and scheduler is not None:
            delay = self._delay(scheduler, warn_before)
            if delay is not None and delay <= 0:
                self.no_time = True
                self.warn("start_ray: the time limit is shorter than the warning's lead")
        env = None
        if self.warned.is_set():  # before the step: it starts warned
            self.warned_at_start = True
            say(f"walltime warning ({signal.Signals(self.walltime_signal).name}, from "
                f"{self._source}) before the step started: the step starts warned "
                f"({WARNED_VARIABLE}=1)")
            env = {**os.environ, WARNED_VARIABLE: "1"}
        try:
            self.process = subprocess.Popen(self.cmd, env=env)
        except OSError as err:
            say(f"could not run {self.cmd[0]}: {err}")
            return 127
        if delay is not None and delay > 0:
            timer = threading.Timer(delay, self.warn, args=("start_ray, before the time limit",))
            timer.daemon = True
            timer.start()
        elif os.environ.get("COBALT_JOBID"):
            say("Cobalt sends no walltime warning, and start_ray cannot read its time limit: "
                "your program gets no SIGUSR1 before the end of this job (save your state "
                "periodically instead)")
        returncode = self.process.wait()  # a signal's handler runs, the wait goes on
        status = 128 - returncode if returncode < 0 else returncode
        say(f"the step ended with status {status}")
        return status

    def warn(self, source: str) -> None:
        """Pass the walltime warning on to the step (once); one that comes
        before the step has started makes it start warned."""
        if self.warned.is_set():
            return
        self.warned.set()
        self._source = source
        if self.process is not None:
            self._pass_on()

    def _pass_on(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            return
        say(f"walltime warning ({signal.Signals(self.walltime_signal).name}, from "
            f"{self._source}): asking the driver to checkpoint and stop")
        self.process.send_signal(self.walltime_signal)

    def ended_by_warning(self, status: int) -> bool:
        """The step died of the walltime signal itself (a task that had no
        handler yet when the scheduler sent it to every process)."""
        return died_of(status, self.walltime_signal, self.warned.is_set())

    def _delay(self, scheduler: Scheduler, before: float) -> Optional[float]:
        """Seconds until the warning `before` seconds before the time limit,
        counted from the step's start (the script's first seconds are not
        counted); None without a time limit."""
        try:
            limit = scheduler.time_limit()
        except (UsageError, ValueError, KeyError) as err:
            say(f"could not read the time limit from {scheduler.name}: {err}; no walltime "
                "warning from start_ray")
            return None
        if limit is None:
            say(f"{scheduler.name} reports no time limit: no walltime warning")
            return None
        delay = max(0.0, limit - before)
        say(f"time limit {limit}s: the walltime warning in {delay:.0f}s")
        return delay


def died_of(status: int, signum: int, sent: bool) -> bool:
    """Whether a step's exit status says its tasks died of `signum`, by each
    launcher's convention: 128+N from srun, Open MPI's mpirun and a shell;
    N from MPICH's Hydra mpiexec, which exits with the bitwise OR of its
    tasks' statuses (a signal counting as its number), so N when every task
    died of it and N|9 when the rest were then SIGKILLed by mpiexec. The
    Hydra forms are read so only when the signal was in fact sent: otherwise
    they are a driver's own exit status."""
    hydra = (signum, signum | signal.SIGKILL)
    return status == 128 + signum or (sent and status in hydra)


def say(text: str) -> None:
    print(f"start_ray.jobs: {text}", flush=True, file=sys.stdout)
