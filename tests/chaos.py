"""Chaos: end one process of a running start_ray job at a chosen moment, then
check what every user is owed: the launcher ends within a bound, no process
of the job is alive 5 s after it does, and the logs say what happened.

A case is an MPI (Open MPI's mpirun, MPICH's Hydra mpiexec), a victim, and a
phase. Victims: rank 0 (the head), a rank that owns a worker node, a rank
that owns no node (SIGKILL each), and the launcher (SIGTERM, as Ctrl-C or a
scheduler would). Phases, each recognised from the rank logs as it begins:

    head      rank 0 logged "starting the Ray head"
    join      the worker rank logged its `ray start --address` command
    driver    the driver is attached to the whole cluster
    teardown  rank 0 logged "stopping Ray on all" (the driver has ended)

A rank that owns no node exists only with one node per host, where nothing
joins: it has no join phase. tests/test_chaos.py runs a subset of the cases
in CI; benchmarks/chaos.py runs the randomized full matrix and prints a table.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import time
import uuid
from typing import Callable, Dict, List, Optional

import psutil

from jobs import HOLD_DRIVER, MPIS, Jobs, Running, describe, leftovers, rank_processes

PHASES = ("head", "join", "driver", "teardown")
VICTIMS = ("rank0", "node-rank", "idle-rank", "launcher")
# From the kill (or SIGTERM) to the launcher's exit. Measured: under 2 s;
# the bound leaves room for a loaded 2-core machine.
LAUNCHER_EXIT_BOUND = 30.0
# From the launcher's exit until no process of the job is left.
CLEAN_BOUND = 5.0
# A rank that started processes ends its log with one of these: its own
# teardown's result, or its watchdog's account of the clean-up.
ACCOUNTS = ("none left", "would not stop", "watchdog: the rank")


@dataclasses.dataclass(frozen=True)
class Case:
    mpi: str
    victim: str
    phase: str

    @property
    def name(self) -> str:
        return f"{self.mpi}-{self.victim}-{self.phase}"

    @property
    def node_per_rank(self) -> bool:
        """The idle rank needs one node per host (here: rank 0's node for
        both ranks); the others need a worker node (one per rank)."""
        return self.victim != "idle-rank"


def all_cases() -> List[Case]:
    return [Case(mpi, victim, phase) for mpi in MPIS for victim in VICTIMS
            for phase in PHASES if not (victim == "idle-rank" and phase == "join")]


@dataclasses.dataclass
class Outcome:
    case: Case
    hit: bool               # the victim was alive when the phase began
    launcher_seconds: float  # kill -> launcher exit
    returncode: int
    left_at_bound: List[str]  # processes alive CLEAN_BOUND s after the launcher's exit
    clean_seconds: float     # launcher exit -> none left (measured up to 30 s)
    silent_logs: List[str]   # rank logs that started processes and say nothing of the end
    output: str

    @property
    def ok(self) -> bool:
        return (self.launcher_seconds <= LAUNCHER_EXIT_BOUND and not self.left_at_bound
                and not self.silent_logs)

    def explain(self) -> str:
        return (f"{self.case.name}: launcher exit {self.launcher_seconds:.1f}s "
                f"(bound {LAUNCHER_EXIT_BOUND:g}), left after {CLEAN_BOUND:g}s: "
                f"{self.left_at_bound}, clean after {self.clean_seconds:.1f}s, silent logs: "
                f"{self.silent_logs}\n{self.output[-4000:]}")


def rank_logs(log_dir: str) -> Dict[str, str]:
    logs = {}
    for path in glob.glob(os.path.join(log_dir, "*", "rank-*.log")):
        with open(path, errors="replace") as handle:
            logs[os.path.basename(path)] = handle.read()
    return logs


def _wait(condition: Callable[[], bool], running: Running, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if running.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the job never reached {what}")
        time.sleep(0.02)


def _log_has(log_dir: str, rank: int, text: str) -> Callable[[], bool]:
    def check() -> bool:
        return any(text in body for name, body in rank_logs(log_dir).items()
                   if name == f"rank-{rank}.log")
    return check


def run(jobs: Jobs, case: Case, workdir: str) -> Outcome:
    """Run one case to its end and measure it (asserts nothing itself)."""
    mpi = MPIS[case.mpi]
    log_dir = os.path.join(workdir, f"logs-{case.name}-{uuid.uuid4().hex[:8]}")
    ready, until = log_dir + ".ready", log_dir + ".until"
    env = {"START_RAY_LOG_DIR": log_dir,
           "START_RAY_NODE_PER_RANK": "1" if case.node_per_rank else "0"}
    running = jobs.start(2, ["--num-cpus", "1", "--join-timeout", "120", HOLD_DRIVER,
                             "--ready", ready, "--until", until], env=env, mpi=mpi)
    try:
        _reach_phase(case, running, log_dir, ready, until)
        hit, killed = _strike(case, running, mpi)
        result = running.wait(LAUNCHER_EXIT_BOUND + 60)
    except BaseException:
        if running.proc.poll() is None:
            os.killpg(running.proc.pid, signal.SIGKILL)
        raise
    exited = time.monotonic()
    left, clean = _measure_clean(result, exited)
    return Outcome(case, hit, exited - killed, result.returncode, left, clean,
                   _silent_logs(log_dir), result.output)


def _reach_phase(case: Case, running: Running, log_dir: str, ready: str, until: str) -> None:
    if case.phase == "head":
        _wait(_log_has(log_dir, 0, "starting the Ray head"), running, 120, "the head's start")
    elif case.phase == "join":
        _wait(_log_has(log_dir, 1, "start --address"), running, 120, "a join")
    else:
        _wait(lambda: os.path.exists(ready), running, 180, "the driver")
        if case.phase == "teardown":
            open(until, "w").close()
            _wait(_log_has(log_dir, 0, "stopping Ray on all"), running, 60, "the teardown")


def _strike(case: Case, running: Running, mpi) -> tuple:
    """End the victim; (whether it was still alive, when)."""
    if case.victim == "launcher":
        target: Optional[psutil.Process] = psutil.Process(running.proc.pid)
        sig = signal.SIGTERM
    else:
        rank = 0 if case.victim == "rank0" else 1
        deadline = time.monotonic() + 5
        target = rank_processes(running, mpi).get(rank)
        while target is None and time.monotonic() < deadline and running.proc.poll() is None:
            time.sleep(0.05)  # a /proc read that failed in passing: look again
            target = rank_processes(running, mpi).get(rank)
        if target is None:
            raise AssertionError(f"no rank {rank} among the job's processes: "
                                 f"{describe(running.processes())}")
        sig = signal.SIGKILL
    killed = time.monotonic()
    try:
        if target is None:
            return False, killed
        target.send_signal(sig)
        return True, killed
    except psutil.NoSuchProcess:
        return False, killed


def _measure_clean(result, exited: float) -> tuple:
    """(what is left CLEAN_BOUND s after the launcher's exit, seconds until none)."""
    left_at_bound: Optional[List[str]] = None
    while True:
        now = time.monotonic() - exited
        left = leftovers(result.mark, result.temp_root, result.before)
        if now >= CLEAN_BOUND and left_at_bound is None:
            left_at_bound = describe(left).splitlines()
        if not left:
            return left_at_bound or [], now
        if now > 30:
            return left_at_bound or [], float("inf")
        time.sleep(0.1)


def _silent_logs(log_dir: str) -> List[str]:
    """Logs of ranks that started a watchdog (so, processes) whose last
    account of the end is missing."""
    silent = []
    for name, body in sorted(rank_logs(log_dir).items()):
        if "watchdog pid" in body and not any(text in body for text in ACCOUNTS):
            silent.append(name)
    return silent
