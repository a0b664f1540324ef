"""Signals as a scheduler sends them, for the tests.

Slurm (its proctrack plugin), `scancel --signal` and a step's `--signal=SIG@T`
do not signal one process: they signal every process of the job step at
once, the ranks and everything below them (start_ray's helpers, Ray's
processes, the driver). They do it more than once (a warning, then the
step's end, or a user's second scancel), and at any moment, the step's
first instant included (with short time limits Slurm's coarse timer fires
as the step starts). These helpers do the same to a job a test launched.

The step is what Slurm's proctrack tracks for a step: its tasks and every
process below them. The launcher and its daemons (mpirun, prted, Hydra's
proxies; slurmstepd under srun) are the launcher's, not the step's: they
are not signalled (under `mpirun`, Open MPI's prted dies of SIGUSR1). The
tasks are found in the test's own process tree (psutil, from the PID of the
launcher it started), as the children of a launcher daemon; never by name
of the program they run, nor by start_ray's bookkeeping.
"""

from __future__ import annotations

import signal
import time
from typing import List

import psutil

from jobs import RANK_PARENTS, Running, found_by

# What a launcher tells each task it starts (and none of its own daemons).
TASK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")


def tasks(running: Running) -> List[psutil.Process]:
    """The step's tasks: the children of a launcher daemon in the job's tree
    that the launcher gave a rank (a remote prted is a child of mpirun too,
    through the launch agent, and has none)."""
    try:
        below = psutil.Process(running.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [proc for proc in below
            if found_by.kernel_name(_parent(proc)) in RANK_PARENTS
            and any(name in found_by.environ(proc.pid) for name in TASK_VARIABLES)]


def step_processes(running: Running) -> List[psutil.Process]:
    """The tasks and every process below them, as they are now."""
    found = []
    for task in tasks(running):
        try:
            found += [task, *task.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return found


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
        if len(tasks(running)) >= ranks:
            return to_every_process(running, signum)
        time.sleep(0.002)
    raise AssertionError(f"the step's {ranks} task(s) never appeared")


def _parent(proc: psutil.Process) -> int:
    try:
        return proc.ppid()
    except psutil.NoSuchProcess:
        return 0


WALLTIME = signal.SIGUSR1
