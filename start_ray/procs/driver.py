"""The driver: the user's program, run by rank 0 once the cluster is ready.

It runs as a child in a process group of its own (so a forwarded signal
reaches everything it started), dies with rank 0 even if rank 0 is killed,
and finds the cluster through RAY_ADDRESS, so an unmodified `ray.init()`
attaches to this job's cluster and never to someone else's on the host.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from start_ray.errors import UsageError
from start_ray.procs import proctree
from start_ray.procs.driver_output import Tee
from start_ray.procs.signals import is_stopping
from start_ray.record import logs

# The driver's output in the run folder (driver_output.py).
OUTPUT = "driver.log"

# Written in the driver's arguments, replaced by the cluster's address: for
# drivers that want it as a flag, e.g. `train_ppo.py --ray-address {ray_address}`.
ADDRESS_PLACEHOLDER = "{ray_address}"


def command(driver: str, args: Sequence[str]) -> List[str]:
    """`python DRIVER ARGS` for a .py file (same interpreter), else the
    command itself; raise UsageError if it does not exist."""
    if driver.endswith(".py"):
        if not os.path.isfile(driver):
            raise UsageError(f"driver not found: {driver} (looked in {os.getcwd()})")
        return [sys.executable, driver, *args]
    found = shutil.which(driver)
    if not found:
        raise UsageError(f"driver not found: {driver!r} is neither a .py file nor "
                         "a command on PATH")
    return [found, *args]


def fill_in(cmd: Sequence[str], address: str) -> List[str]:
    return [arg.replace(ADDRESS_PLACEHOLDER, address) for arg in cmd]


def exit_status(returncode: int) -> int:
    """The shell's convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Driver:
    """The running driver process; its output goes to the console and, when
    `output` names a file, into it too (driver_output.Tee)."""

    def __init__(self, cmd: List[str], env: Dict[str, str], spawn: proctree.Spawn,
                 output: Optional[str] = None) -> None:
        self._log = logs.get()
        self.tee = Tee(output) if output else None
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE) if self.tee else {}
        self.process = spawn(cmd, env=env, walltime_warning=True, **pipes)
        if self.tee is not None:
            assert self.process.stdout is not None and self.process.stderr is not None
            self.tee.follow(self.process.stdout, sys.stdout.fileno())
            self.tee.follow(self.process.stderr, sys.stderr.fileno(), errors=True)
        self.pid = self.process.pid
        try:  # wakes us the moment the driver exits, and otherwise not at all
            self._pidfd: Optional[int] = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def _ended(self, interval: float) -> Optional[int]:
        """The driver's return code if it ended within `interval`, else None."""
        if self._pidfd is not None:
            select.select([self._pidfd], [], [], interval)
            return self.process.poll()
        try:
            return self.process.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, signum: int) -> None:
        """Send `signum` to the driver's whole process group."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self, interval: float, on_tick: Callable[[], None],
             pending_signal: Callable[[], Optional[int]], grace: float) -> int:
        """Wait for the driver's exit, calling `on_tick` between polls.

        A signal the job receives is forwarded to the driver, which then has
        `grace` seconds to finish (e.g. write a checkpoint) before SIGKILL.
        """
        kill_at: Optional[float] = None
        while True:
            returncode = self._ended(interval)
            if returncode is not None:
                break
            signum = pending_signal()
            if signum is not None:
                stopping = is_stopping(signum)  # a walltime warning starts no timer
                self._log.info("received %s: forwarding it to the driver (pid %d)%s",
                               signal.Signals(signum).name, self.pid,
                               f", which has {grace:g}s to finish" if stopping else "")
                self.signal(signum)
                if stopping:
                    kill_at = kill_at or time.monotonic() + grace
            if kill_at is not None and time.monotonic() >= kill_at:
                self._log.error("the driver did not exit within the %gs grace period: "
                                "killing it", grace)
                self.signal(signal.SIGKILL)
                kill_at = float("inf")
            on_tick()
        if self._pidfd is not None:
            os.close(self._pidfd)
        if self.tee is not None:
            self.tee.close()
        return exit_status(returncode)


def tensorboard_folder(run_dir: str, depth: int = 6) -> Optional[str]:
    """The run folder's subfolder that holds every TensorBoard event file the
    driver wrote (their common parent), or None if it wrote none."""
    found = []
    for folder, dirs, files in os.walk(run_dir):
        if folder[len(run_dir):].count(os.sep) >= depth:
            dirs[:] = []
        if folder == run_dir:
            dirs[:] = [d for d in dirs if d != "ray"]  # Ray's own logs
        if any(name.startswith("events.out.tfevents.") for name in files):
            found.append(folder)
    return os.path.commonpath(found) if found else None

