"""Signals as a scheduler sends them, for the tests.

Slurm (its proctrack plugin), `scancel --signal` and a step's `--signal=SIG@T`
do not signal one process: they signal every process of the job step at
once, the ranks and everything below them (start_ray's helpers, Ray's
processes, the driver). They do it more than once (a warning, then the
step's end, or a user's second scancel), and at any moment, the step's
first instant included (with short time limits Slurm's coarse timer fires
as the step starts). These helpers do the same to a job a test launched.

The step is the test's own process tree: the launcher it started and every
descendant (found with psutil from the launcher's PID, not by name or by
start_ray's bookkeeping).
"""

from __future__ import annotations

import signal
import time
from typing import List

import psutil

from jobs import RANK_PARENTS, Running, found_by


def step_processes(running: Running) -> List[psutil.Process]:
    """The launcher and every process below it, as they are now."""
    try:
        root = psutil.Process(running.proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def to_every_process(running: Running, signum: int) -> List[str]:
    """Send `signum` to every process of the step at once; `pid name` of each."""
    struck = []
    for proc in step_processes(running):
        try:
            proc.send_signal(signum)
            struck.append(f"{proc.pid} {found_by.kernel_name(proc.pid)}")
        except psutil.NoSuchProcess:
            pass
    return struck


def repeatedly(running: Running, signum: int, times: int, gap: float) -> List[List[str]]:
    """`times` deliveries to every process of the step, `gap` seconds apart."""
    rounds = []
    for i in range(times):
        if i:
            time.sleep(gap)
        rounds.append(to_every_process(running, signum))
    return rounds


def at_first_instant(running: Running, signum: int, ranks: int,
                     timeout: float = 60.0) -> List[str]:
    """Signal every process of the step the moment its `ranks` tasks exist
    (children of the launcher's daemon), before they can have done anything:
    as Slurm does when a step's warning is due at its start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = [proc for proc in step_processes(running)
                 if found_by.kernel_name(_parent(proc)) in RANK_PARENTS]
        if len(tasks) >= ranks:
            return to_every_process(running, signum)
        time.sleep(0.002)
    raise AssertionError(f"the step's {ranks} task(s) never appeared")


def _parent(proc: psutil.Process) -> int:
    try:
        return proc.ppid()
    except psutil.NoSuchProcess:
        return 0


WALLTIME = signal.SIGUSR1
