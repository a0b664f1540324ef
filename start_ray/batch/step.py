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
that many seconds before the job's time limit (from the scheduler), or, when
less time than that is left, LEAD_SHARE of the time left before the end (a
short test job still runs its program). A SIGTERM before the time limit is
a cancel (qdel, scancel), one at the limit the walltime: a chain tells them
apart (chain.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional, Sequence

from start_ray.batch.scheduler import Scheduler
from start_ray.errors import UsageError
from start_ray.procs.signals import WARNED_VARIABLE, SignalInbox

# A time limit shorter than the warning's lead: the warning this share of
# the time left before the end.
LEAD_SHARE = 0.2


class Step:
    """One job step, whether the walltime warning came (and was passed on),
    and whether the job was cancelled (SIGTERM before its time limit)."""

    def __init__(self, cmd: Sequence[str], walltime_signal: int = signal.SIGUSR1,
                 inbox: Optional[SignalInbox] = None) -> None:
        self.cmd = list(cmd)
        self.walltime_signal = walltime_signal
        self.warned = threading.Event()
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._source = ""  # who warned, before the step had started
        self._early = inbox  # what the wrapper caught before this step existed
        self.warned_at_start = False  # the step was started warned
        self.no_time = False  # no time was left at the start
        self.began = time.monotonic()
        self.ends_at: Optional[float] = None  # the time limit (monotonic), if known
        self.at_limit = False  # SIGTERM came at the time limit: the walltime
        self.cancelled = False  # SIGTERM came before the time limit: qdel, scancel
        # run as a cancel's SIGTERM comes (a chain's link); then the time
        # limit is read even without a warning to send, to tell the two apart
        self.on_cancel: Optional[Callable[[], None]] = None

    def run(self, scheduler: Optional[Scheduler] = None, warn_before: float = 0.0) -> int:
        """Run the step to its end: its exit status (128+N if killed by N)."""
        signal.signal(self.walltime_signal, lambda signum, frame: self.warn("the scheduler"))
        signal.signal(signal.SIGTERM, lambda signum, frame: self.terminated())
        if self._early is not None and self.walltime_signal in self._early.drain():
            self.warn("the scheduler")  # it came while the wrapper started
        delay = None
        if scheduler is not None and (warn_before > 0 or self.on_cancel is not None):
            delay = self._delay(scheduler, warn_before)
        if delay is not None and delay <= 0:
            self.no_time = True
            self.warn("start_ray: no time was left before the time limit")
        env = self._scheduler_env(scheduler)
        if self.warned.is_set():  # before the step: it starts warned
            self.warned_at_start = True
            say(f"walltime warning ({signal.Signals(self.walltime_signal).name}, from "
                f"{self._source}) before the step started: the step starts warned "
                f"({WARNED_VARIABLE}=1)")
            env[WARNED_VARIABLE] = "1"
        try:
            self.process = subprocess.Popen(self.cmd, env={**os.environ, **env} if env else None)
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

    def terminated(self) -> None:
        """SIGTERM: the scheduler stops the job, and its tasks have it too (it
        is not passed on). Before the time limit it is a cancel (qdel,
        scancel, flux cancel): a chain ends there (on_cancel); at the limit,
        the walltime."""
        if self.ends_at is not None and time.monotonic() >= self.ends_at - margin(
                self.ends_at - self.began):
            if not self.at_limit:
                say("SIGTERM at the time limit: the scheduler is stopping the job; the "
                    "tasks have it too")
            self.at_limit = True
            return
        if self.cancelled:
            return
        if self.ends_at is None and self.on_cancel is None:
            say("SIGTERM: the scheduler is stopping the job; the tasks have it too")
            return
        self.cancelled = True
        say(("SIGTERM before the time limit" if self.ends_at is not None else
             "SIGTERM, and the time limit is unknown") +
            ": the job was cancelled (qdel, scancel); the tasks have it too")
        if self.on_cancel is not None:
            self.on_cancel()

    def _scheduler_env(self, scheduler: Optional[Scheduler]) -> Dict[str, str]:
        """What the scheduler tells the step's ranks (Scheduler.step_env)."""
        if scheduler is None:
            return {}
        try:
            return dict(scheduler.step_env())
        except (UsageError, ValueError, KeyError) as err:
            say(f"could not ask {scheduler.name} about this job's hosts: {err}")
            return {}

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
        """Seconds until the walltime warning, `before` seconds before the
        time limit (or, when the time left is shorter than that, LEAD_SHARE
        of it), counted from now; None without a time limit or a lead.
        The time limit is kept (ends_at) to tell a cancel from the walltime."""
        self.began = time.monotonic()
        try:
            limit = scheduler.time_limit()
        except (UsageError, ValueError, KeyError) as err:
            say(f"could not read the time limit from {scheduler.name}: {err}"
                + ("; no walltime warning from start_ray" if before > 0 else ""))
            return None
        if limit is None:
            if before > 0:
                say(f"{scheduler.name} reports no time limit: no walltime warning")
            return None
        self.ends_at = self.began + limit
        if before <= 0:
            return None
        if 0 < limit <= before:
            lead = limit * LEAD_SHARE
            say(f"{limit}s left, less than the warning's lead (--warn-before {before:g}): "
                f"the walltime warning comes {lead:.0f}s before the end instead "
                f"({LEAD_SHARE:.0%} of the time left), in {limit - lead:.0f}s")
            return limit - lead
        delay = max(0.0, limit - before)
        say(f"time limit {limit}s: the walltime warning in {delay:.0f}s")
        return delay


def margin(limit: float) -> float:
    """How early a SIGTERM may come and still be the time limit's: the
    limit was read a moment after the job began (5% of it, 5 to 60 s)."""
    return max(5.0, min(60.0, 0.05 * limit))


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
