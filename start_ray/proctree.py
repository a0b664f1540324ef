"""Owning the processes a rank starts, and stopping exactly those.

Ray's processes outlive `ray start` and the raylet puts its workers in process
groups of their own, so neither a PID nor a process group covers them. Each
rank therefore makes itself a child subreaper: every process it starts, and
every orphan of those, stays its descendant, and teardown walks that tree.
Nothing outside the tree is ever signalled (no `ray stop`, no name matching).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from typing import Callable, Iterable, List, Optional, Sequence

import psutil

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


# Loaded once here: the preexec_fn below runs between fork and exec, where
# nothing may be looked up or imported.
_LIBC = (ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
         if sys.platform.startswith("linux") else None)


def _prctl(option: int, value: int) -> bool:
    if _LIBC is None:
        return False
    return _LIBC.prctl(option, value, 0, 0, 0) == 0


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so that teardown can still find them."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_parent_death_signal(signum: int) -> bool:
    """Have the kernel send `signum` to this process when its parent dies."""
    return _prctl(_PR_SET_PDEATHSIG, signum)


def die_with_parent(ignored: Sequence[int] = ()) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when the rank that started it dies,
    even by SIGKILL. Ray's own processes die with `ray start` in turn.

    `ignored` signals are ignored by the child and (the disposition survives
    exec and fork) by what it starts, unless they set handlers of their own:
    Slurm delivers a signal sent to srun (or `--signal=USR1@T`) to every
    process of the job, and Ray's GCS and raylet die of SIGUSR1."""
    def preexec() -> None:
        set_parent_death_signal(signal.SIGKILL)
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
    return preexec


def descendants(root: Optional[psutil.Process] = None) -> List[psutil.Process]:
    """Every live process below `root` (this process by default)."""
    root = root or psutil.Process()
    try:
        return root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: List[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def stop_descendants(timeout: float, exclude: Optional[set] = None,
                     leaders: Iterable[int] = ()) -> List[psutil.Process]:
    """Stop every descendant and return what is still alive (it should be nothing).

    `leaders` are `ray start --block` processes: each gets SIGINT and stops
    its own node (in ~1-2 s, without the drain of up to 30 s that SIGTERM
    starts). Ray's processes under a leader are left to it at first: a raylet
    or GCS sent SIGTERM directly was seen to linger. Every other descendant
    (orphans of a failed start, leftovers of the driver) gets SIGTERM at once,
    and so does whatever outlives its leader (agents whose raylet is gone).
    What is alive after `timeout` gets SIGKILL. `exclude` holds PIDs whose
    exit status a caller still wants to collect itself.
    """
    exclude = exclude or set()
    deadline = time.monotonic() + timeout
    procs = [p for p in descendants() if p.pid not in exclude]
    leading = [p for p in procs if p.pid in set(leaders)]
    led = {child.pid for leader in leading for child in descendants(leader)}
    _signal_all(leading, signal.SIGINT)
    _signal_all([p for p in procs if p not in leading and p.pid not in led], signal.SIGTERM)
    _wait_gone(leading, deadline - time.monotonic(), exclude)
    rest = [p for p in descendants() if p.pid not in exclude]
    _signal_all(rest, signal.SIGTERM)
    alive = _wait_gone(rest, deadline - time.monotonic(), exclude)
    alive += [p for p in descendants() if p.pid not in exclude and p not in alive]
    if alive:
        logging.getLogger("start_ray").warning(
            "still running %gs after the stop signal, sending SIGKILL: %s",
            timeout, describe(alive))
    _signal_all(alive, signal.SIGKILL)
    _wait_gone(alive, 5.0, exclude)
    return [p for p in descendants() if p.pid not in exclude and _running(p)]


def _wait_gone(procs: List[psutil.Process], timeout: float, exclude: set) -> List[psutil.Process]:
    """Wait until `procs` have exited, reaping the ones that were orphaned to
    us on the way (psutil's own wait never reaps a process that became our
    child after it started waiting). Returns those still running."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        reap_zombies(exclude)
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reap_zombies(exclude: Optional[set] = None) -> None:
    """Collect exit statuses of adopted orphans (we are their subreaper)."""
    for proc in descendants():
        try:
            if proc.pid not in (exclude or ()) and proc.ppid() == os.getpid() and proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass


def marked(variable: str, value: str) -> List[psutil.Process]:
    """Running processes whose environment holds `variable=value`: every
    process a job starts carries its marker, so this finds any that escaped
    the process tree. Only processes we may read are looked at."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(variable) == value \
                    and _running(proc):
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            pass
    return found


def describe(procs: List[psutil.Process]) -> str:
    """`pid name` pairs for a log line."""
    names = []
    for proc in procs:
        try:
            names.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            names.append(f"{proc.pid} (gone)")
    return ", ".join(names)
