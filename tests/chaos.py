"""Chaos: end one process of a running start_ray job at a chosen moment, then
check what every user is owed: the launcher ends within a bound, no process
of the job is alive 5 s after it does, and the logs say what happened.

A case is an MPI (Open MPI's mpirun, MPICH's Hydra mpiexec), a victim, and a
phase. Victims: rank 0 (the head), a rank that owns a worker node, a rank
that owns no node (SIGKILL each), the launcher (SIGTERM, as Ctrl-C or a
scheduler would), and start_ray's helpers (SIGKILL): rank 0's node-table
helper, the worker rank's watchdog, and the worker rank's `ray` imported
ahead (before it is used); and the worker node's raylet (SIGKILL: the node
dies, its rank lives, as after the OOM killer). Phases, each recognised as
it begins:

    start     the victim exists (the `ray` imported ahead: before MPI starts)
    head      rank 0 logged "starting the Ray head"
    join      the worker rank logged its `ray start --address` command (the
              head: rank 0 logged that it waits for the workers to join)
    driver    the driver is attached to the whole cluster
    teardown  rank 0 logged "stopping Ray on all" (the driver has ended)

A rank is found as a child of the launcher's daemon (jobs.rank_processes), a
helper as a child of its rank with the helper's command line: a child of a
rank between fork and exec looks like the rank by its command line and
environment, and once took its place as the victim. What was struck (PID,
command line, parent) goes into the outcome.

A killed rank ends the job (non-zero); a killed helper must not: the rank
notices it within NOTICE_BOUND seconds (its log names the helper's PID), a
restart or a fresh `ray start` takes its place, and the job, released then,
exits 0. Nor must a killed raylet: its rank notices its node ended within
NOTICE_BOUND (while the driver runs) and starts it anew (--rejoins); the
job, released meanwhile, exits 0 with nothing left, rejoin or not. A rank
that owns no node exists only with one node per host, where nothing joins:
it has no join phase. tests/test_chaos.py runs a subset of the
cases in CI; benchmarks/chaos.py runs the randomized full matrix and prints a
table.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import time
import uuid
from typing import Callable, Dict, List, Optional, Tuple

import leftovers as found_by
import psutil

from jobs import (
    HOLD_DRIVER,
    MPIS,
    Jobs,
    Mpi,
    Running,
    describe,
    helper_process,
    leftovers,
    node_process,
    rank_processes,
)

PHASES = ("start", "head", "join", "driver", "teardown")
RANK_VICTIMS = ("rank0", "node-rank", "idle-rank", "launcher")
# helper victim -> (the rank that started it, its module, the phases it lives in)
HELPERS = {
    "table-helper": (0, "node.gcs_table", ("head", "join", "driver")),
    "watchdog": (1, "procs.watchdog", ("head", "join", "driver", "teardown")),
    "ray-ahead": (1, "node.ray_ahead", ("start",)),
}
# node victim -> (the rank whose node it is, the phases it lives in, its
# process's name, the job's options for the case, what its rank logs once it
# noticed). The worker's raylet: its rank starts the node anew (--rejoins).
# The head's GCS: started again in place (Ray 2.57+, --gcs-restarts). The
# head's raylet, which carries the driver: the cluster is formed again and
# the driver runs again (--restarts 1).
NODE_PARTS = {
    "raylet": (1, ("driver", "teardown"), "raylet", {}, "the Ray node of this rank ended"),
    "gcs": (0, ("join", "driver"), "gcs_server", {}, "is back in place"),
    "head-raylet": (0, ("driver",), "raylet", {"START_RAY_RESTARTS": "1"},
                    "restart 1 of at most 1"),
}
# The head's `ray start --head`, GCS server and raylet, all at once, while the
# workers join (their `ray start` is held back HEAD_JOIN_DELAY s, so that the
# join phase lasts): rank 0 must say within NOTICE_BOUND that the head is gone.
HEAD = "head"
HEAD_JOIN_DELAY = 20
VICTIMS = RANK_VICTIMS + tuple(HELPERS) + tuple(NODE_PARTS) + (HEAD,)
# From a helper's kill until its rank's log names it (the rank noticed).
NOTICE_BOUND = 10.0
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


    @property
    def helper(self) -> bool:
        return self.victim in HELPERS

    @property
    def survivable(self) -> bool:
        """The job must go on, and exit 0, after this victim's death."""
        return self.helper or self.victim in NODE_PARTS

    @property
    def noticed_by(self) -> Optional[int]:
        """The rank whose log must say within NOTICE_BOUND that the victim
        died (None: nothing to notice, e.g. a node stopping anyway)."""
        if self.victim == HEAD:
            return 0
        if self.helper:
            return HELPERS[self.victim][0]
        if self.victim in NODE_PARTS and self.phase != "teardown":
            return NODE_PARTS[self.victim][0]
        return None


def phases_of(victim: str) -> Tuple[str, ...]:
    if victim == HEAD:
        return ("join",)
    if victim in HELPERS:
        return HELPERS[victim][2]
    if victim in NODE_PARTS:
        return NODE_PARTS[victim][1]
    return tuple(p for p in PHASES if p != "start" and not (victim == "idle-rank" and
                                                              p == "join"))


def all_cases() -> List[Case]:
    return [Case(mpi, victim, phase) for mpi in MPIS for victim in VICTIMS
            for phase in phases_of(victim)]


@dataclasses.dataclass
class Outcome:
    case: Case
    hit: bool               # the victim was alive when the phase began
    launcher_seconds: float  # kill (a helper: the driver's release) -> launcher exit
    returncode: int
    left_at_bound: List[str]  # processes alive CLEAN_BOUND s after the launcher's exit
    clean_seconds: float     # launcher exit -> none left (measured up to 30 s)
    silent_logs: List[str]   # rank logs that started processes and say nothing of the end
    output: str
    struck: str = ""         # `pid cmdline (parent: name)` of what was struck
    noticed_seconds: Optional[float] = None  # a helper: kill -> its rank's log names it

    @property
    def ok(self) -> bool:
        bounded = (self.launcher_seconds <= LAUNCHER_EXIT_BOUND and not self.left_at_bound
                   and not self.silent_logs)
        noticed = self.case.noticed_by is None or (
            self.noticed_seconds is not None and self.noticed_seconds <= NOTICE_BOUND)
        if self.case.victim == HEAD:  # the job ends, and says why at once
            return bounded and self.returncode != 0 and (noticed or not self.hit)
        if not self.case.survivable or not self.hit:
            return bounded
        return bounded and self.returncode == 0 and noticed

    def explain(self) -> str:
        noticed = ("" if self.case.noticed_by is None else
                   f", noticed after {self.noticed_seconds}s (bound {NOTICE_BOUND:g})")
        return (f"{self.case.name}: struck {self.struck}; exit status {self.returncode}; "
                f"launcher exit {self.launcher_seconds:.1f}s "
                f"(bound {LAUNCHER_EXIT_BOUND:g}){noticed}, left after {CLEAN_BOUND:g}s: "
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
    if case.victim == HEAD:
        env["START_RAY_RAY_COMMAND"] = _slow_workers(workdir, mpi)
    if case.victim in NODE_PARTS:
        env.update(NODE_PARTS[case.victim][3])
    running = jobs.start(2, ["--num-cpus", "1", "--join-timeout", "120", HOLD_DRIVER,
                             "--ready", ready, "--until", until], env=env, mpi=mpi)
    noticed: Optional[float] = None
    try:
        _reach_phase(case, running, log_dir, ready, until)
        hit, killed, struck = _strike(case, running, mpi)
        if case.victim == HEAD and hit:
            noticed = _noticed(case, log_dir, struck, killed, running)
        if case.survivable:  # the job goes on: once its rank noticed, let it end
            noticed = (_noticed(case, log_dir, struck, killed, running)
                       if hit and case.noticed_by is not None else None)
            open(until, "w").close()
            killed = time.monotonic()
        result = running.wait(LAUNCHER_EXIT_BOUND + 60)
    except BaseException:
        if running.proc.poll() is None:
            os.killpg(running.proc.pid, signal.SIGKILL)
        raise
    exited = time.monotonic()
    left, clean = _measure_clean(result, exited)
    return Outcome(case, hit, exited - killed, result.returncode, left, clean,
                   _silent_logs(log_dir), result.output, struck, noticed)


def _slow_workers(workdir: str, mpi: Mpi) -> str:
    """The MPI's `ray`, whose workers' `ray start` waits HEAD_JOIN_DELAY s
    first (a rank's processes carry START_RAY_JOB=<job>/<rank>)."""
    script = os.path.join(workdir, f"slow-workers-{mpi.name}.sh")
    ray = os.path.join(os.path.dirname(mpi.python), "ray")
    with open(script, "w") as handle:
        handle.write(f'#!/bin/sh\ncase "$START_RAY_JOB" in */0) ;; *) sleep {HEAD_JOIN_DELAY};; '
                     f'esac\nexec {ray} "$@"\n')
    os.chmod(script, 0o755)
    return script


def _reach_phase(case: Case, running: Running, log_dir: str, ready: str, until: str) -> None:
    if case.phase == "start":
        pass  # the victim is looked for at once
    elif case.phase == "head":
        _wait(_log_has(log_dir, 0, "starting the Ray head"), running, 120, "the head's start")
    elif case.phase == "join" and case.victim == HEAD:
        _wait(_log_has(log_dir, 0, "worker node(s) to join"), running, 120, "a join")
    elif case.phase == "join":
        _wait(_log_has(log_dir, 1, "start --address"), running, 120, "a join")
    else:
        _wait(lambda: os.path.exists(ready), running, 180, "the driver")
        if case.phase == "teardown":
            open(until, "w").close()
            _wait(_log_has(log_dir, 0, "stopping Ray on all"), running, 60, "the teardown")


def _strike(case: Case, running: Running, mpi: Mpi) -> Tuple[bool, float, str]:
    """End the victim: (whether it was still alive, when, what was struck)."""
    if case.victim == HEAD:
        return _strike_the_head(running)
    if case.victim == "launcher":
        target: Optional[psutil.Process] = psutil.Process(running.proc.pid)
        sig = signal.SIGTERM
    else:
        target = _find_victim(case, running, mpi)
        sig = signal.SIGKILL
    struck = _describe_struck(target) if target is not None else "nothing"
    killed = time.monotonic()
    try:
        if target is None:
            return False, killed, struck
        target.send_signal(sig)
        return True, killed, struck
    except psutil.NoSuchProcess:
        return False, killed, struck


def _strike_the_head(running: Running) -> Tuple[bool, float, str]:
    """SIGKILL the head's `ray start`, GCS server and raylet together: the
    GCS and raylet found by name and the job's variable, `ray start --head`
    as their parent."""
    parts = [node_process(running, name, 0) for name in ("gcs_server", "raylet")]
    if not all(parts):
        return False, time.monotonic(), "nothing"
    procs = [proc for proc in parts if proc is not None]
    try:  # `ray start --head --block`; a head with a GCS store has none (its
        # processes are the rank's own children then, and the rank is no victim)
        parent = psutil.Process(procs[0].ppid())
        if "start" in parent.cmdline():  # a rank runs `-m start_ray`
            procs.insert(0, parent)
    except psutil.Error:
        pass
    struck = "; ".join(_describe_struck(proc) for proc in procs)
    killed = time.monotonic()
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return True, killed, struck


def _find_victim(case: Case, running: Running, mpi: Mpi) -> Optional[psutil.Process]:
    """The victim's process, looked for up to a few seconds (a rank not yet
    started, a helper not yet started, a /proc read that failed in passing).
    A rank that cannot be found is a harness error; a helper that cannot be
    found (gone already, e.g. the `ray` imported ahead was used) is a miss."""
    if case.helper:
        rank, module, _ = HELPERS[case.victim]

        def find() -> Optional[psutil.Process]:
            return helper_process(running, module, rank, mpi)
    elif case.victim in NODE_PARTS:
        rank, name = NODE_PARTS[case.victim][0], NODE_PARTS[case.victim][2]

        def find() -> Optional[psutil.Process]:
            return node_process(running, name, rank)
    else:
        rank = 0 if case.victim == "rank0" else 1

        def find() -> Optional[psutil.Process]:
            return rank_processes(running, mpi).get(rank)
    deadline = time.monotonic() + (20 if case.survivable else 5)
    target = find()
    while target is None and time.monotonic() < deadline and running.proc.poll() is None:
        time.sleep(0.02)
        target = find()
    if target is None and not case.survivable:
        raise AssertionError(f"no rank {rank} among the job's processes: "
                             f"{describe(running.processes())}")
    return target


def _describe_struck(proc: psutil.Process) -> str:
    """`pid cmdline (parent: name)` from raw /proc, read before the strike."""
    try:
        parent = found_by.kernel_name(proc.ppid())
    except psutil.Error:
        parent = "?"
    return f"{proc.pid} {' '.join(found_by.cmdline(proc.pid))[:100]} (parent: {parent})"


def _noticed(case: Case, log_dir: str, struck: str, killed: float,
             running: Running) -> Optional[float]:
    """Seconds from the kill until the rank logged it: a helper's PID with
    what happened to it, a node's end (None: not within NOTICE_BOUND)."""
    rank, pid = case.noticed_by, struck.split()[0]
    assert rank is not None
    if case.victim == HEAD:
        named = [_log_has(log_dir, 0, "(rank 0) ended")]
    elif case.helper:
        named = [_log_has(log_dir, rank, f"(pid {pid}{end}") for end in (")", ",")]
    else:
        named = [_log_has(log_dir, rank, NODE_PARTS[case.victim][4])]
    deadline = killed + NOTICE_BOUND
    while time.monotonic() < deadline and running.proc.poll() is None:
        if any(check() for check in named):
            return time.monotonic() - killed
        time.sleep(0.05)
    return None


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
