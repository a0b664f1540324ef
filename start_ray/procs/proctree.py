"""Owning the processes a rank starts, and stopping exactly those.

Ray's processes outlive `ray start` and the raylet puts its workers in process
groups of their own, so neither a PID nor a process group covers them. Three
facts, each kept by the kernel, say which processes a rank started:

- the tree: the rank is a child subreaper, so every process it starts, and
  every orphan of those, stays its descendant while the rank lives; teardown
  walks that tree;
- the session: every child starts in a session of its own (`popen`), and
  all that it starts stays in that session unless it calls setsid(), which
  Ray's processes do not (its workers change only their process group);
- the marker: every child's environment holds `START_RAY_JOB=<job>/<rank>`,
  inherited by everything below it, a setsid() daemon included.

The last two outlive the rank, so its watchdog uses them when the rank dies
without its teardown. The session is the one to rely on. Ray renames its
agents (setproctitle), which overwrites /proc/PID/environ with NUL bytes from
its start (1,808 of 2,163 bytes, seen here): psutil's environ() then returns
nothing, and since the raylet orders the agents' environment arbitrarily,
the marker survives in the raw bytes in some runs and not in others. The
session ID, kept by the kernel, does not depend on what a process does to
its own memory. The marker (raw bytes) covers a process that left the
session with setsid(), such as a daemon started by the driver; a process
escapes only by doing both. Nothing outside these sets is ever signalled
(no `ray stop`, no name matching).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import psutil

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
REAP_WAIT = 2.0  # seconds: a killed process's threads end within it (proctree.reap)


# Loaded once here: the preexec_fn below runs between fork and exec, where
# nothing may be looked up or imported. The process's own symbols (libc's
# among them), not ctypes.util.find_library, which runs `ldconfig -p` (and
# gcc where that fails) at every rank's start.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


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
    ignore = ignoring(ignored)

    def preexec() -> None:
        set_parent_death_signal(signal.SIGKILL)
        ignore()
    return preexec


def ignoring(ignored: Sequence[int]) -> Callable[[], None]:
    """A preexec_fn: the child ignores these signals (see die_with_parent)."""
    def preexec() -> None:
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
    alive += [p for p in descendants()
              if p.pid not in exclude and p not in alive and running(p)]
    if alive:
        logging.getLogger("start_ray").warning(
            "still running %gs after the stop signal, sending SIGKILL: %s",
            timeout, describe(alive))
    _signal_all(alive, signal.SIGKILL)
    _wait_gone(alive, 5.0, exclude)
    return [p for p in descendants() if p.pid not in exclude and running(p)]


def terminate(procs: List[psutil.Process], timeout: float,
              sig: int = signal.SIGTERM) -> List[psutil.Process]:
    """Send `procs` SIGTERM (or `sig`) and wait up to `timeout` for them to
    end (reaping our orphans); those still running."""
    _signal_all(procs, sig)
    return _wait_gone(procs, timeout, set())


def name_of(proc: psutil.Process) -> str:
    """Its name, or '' once it is gone."""
    try:
        return proc.name()
    except psutil.Error:
        return ""


def kill_tree(leader: int) -> None:
    """SIGKILL `leader` and everything below it (reaped by the waits that follow)."""
    try:
        root = psutil.Process(leader)
    except psutil.NoSuchProcess:
        return
    _signal_all([root, *descendants(root)], signal.SIGKILL)


def _wait_gone(procs: List[psutil.Process], timeout: float, exclude: set) -> List[psutil.Process]:
    """Wait until `procs` have exited, reaping the ones that were orphaned to
    us on the way (psutil's own wait never reaps a process that became our
    child after it started waiting). Returns those still running."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        alive = [p for p in procs if running(p)]
        reap_zombies(exclude)  # after the look: a process that just ended is reaped too
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def running(proc: psutil.Process) -> bool:
    """Alive, and not a zombie (psutil's is_running() is true for a zombie)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reap_zombies(exclude: Optional[set] = None) -> None:
    """Collect exit statuses of adopted orphans (we are their subreaper), now."""
    reap([proc.pid for proc in descendants() if proc.pid not in (exclude or ())], timeout=0)


def reap(pids: Iterable[int], timeout: float = REAP_WAIT) -> List[int]:
    """Collect the exit status of those of `pids` that are our children and
    have ended (orphans we adopted among them): the PIDs reaped. A rank does
    it before it exits, since its zombies would pass to the PID namespace's
    init, and where that is mpiexec (a container whose command is `mpiexec
    ...`), Hydra takes a killed Ray process it reaps for a rank that
    "terminated badly" and fails the job. A killed process with threads
    shows as a zombie before it can be reaped (its other threads are still
    exiting): such a one is waited for, up to `timeout`. Only our own
    processes: in the API the rank is the user's process, whose other
    children are not ours."""
    deadline = time.monotonic() + timeout
    waiting, reaped = list(pids), []
    while True:
        dying = []
        for pid in waiting:
            try:
                ended = os.waitpid(pid, os.WNOHANG)[0]
            except ChildProcessError:  # not our child, or reaped already
                continue
            if ended:
                reaped.append(pid)
            elif timeout > 0 and (_proc_stat(pid) or ("",))[0] == "Z":
                dying.append(pid)
        if not dying or time.monotonic() >= deadline:
            return reaped
        waiting = dying
        time.sleep(0.01)


def _proc_stat(pid: int) -> Optional[Tuple[str, int, int]]:
    """(state, session id, start time in clock ticks) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2:].split()  # the name may hold spaces
    return fields[0].decode(), int(fields[3]), int(fields[19])


def start_time(pid: int) -> Optional[int]:
    """When `pid` started (clock ticks since boot): tells a reused PID apart."""
    stat = _proc_stat(pid)
    return stat[2] if stat else None


def _environ_holds(pid: int, needle: bytes) -> bool:
    """Whether the raw bytes of /proc/PID/environ hold `needle` as one whole
    `NAME=value` entry (they survive a rename that defeats psutil)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:  # gone, or not ours to read
        return False
    return needle in b"\0" + raw + b"\0"


def _pids() -> List[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def owned(variable: str, value: str,
          sessions: Iterable[Tuple[int, int]] = ()) -> List[psutil.Process]:
    """Running processes that carry `variable=value` in their environment or
    belong to one of `sessions` ((leader PID, leader start time) pairs, as
    `popen` announced them). A session whose leader PID now names another
    session leader (PID reuse) is not ours any more and is skipped."""
    needle = f"\0{variable}={value}\0".encode()
    ours = set()
    for leader, began in sessions:
        stat = _proc_stat(leader)
        if stat is None or stat[2] == began or stat[1] != leader:
            ours.add(leader)
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if stat[1] in ours or _environ_holds(pid, needle):
            try:
                found.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
    return found


# Starts a child the way a rank starts everything: `popen`, or the process
# owner's (procs/owner.ProcessOwner.popen), which books it.
Spawn = Callable[..., subprocess.Popen]


def popen(cmd: Sequence[str], ignored_signals: Sequence[int] = (),
          **kwargs: Any) -> subprocess.Popen:
    """Start a child the way a rank starts everything: in a session of its
    own (so the session ID finds all it starts, even after the rank is gone)
    and dying with the rank (PR_SET_PDEATHSIG). The rank's process owner
    books the session (procs/owner.ProcessOwner.popen).

    From a thread other than the main one (the Python API's watch) the child
    only ignores the signals: PR_SET_PDEATHSIG fires when the parent
    *thread* ends, which would kill it with the watch; the rank's watchdog
    still kills it if the rank dies."""
    preexec = (die_with_parent(ignored_signals)
               if threading.current_thread() is threading.main_thread()
               else ignoring(ignored_signals))
    return subprocess.Popen(list(cmd), start_new_session=True, preexec_fn=preexec, **kwargs)


def names(procs: List[psutil.Process]) -> List[str]:
    """`pid name` of each (a Python process is named by the script or module
    it runs: `log_monitor.py`, `-m start_ray.node.gcs_table`)."""
    found = []
    for proc in procs:
        try:
            found.append(f"{proc.pid} {_name(proc)}")
        except psutil.Error:
            found.append(f"{proc.pid} (gone)")
    return found


def describe(procs: List[psutil.Process]) -> str:
    """`pid name` pairs for a log line."""
    return ", ".join(names(procs))


def _name(proc: psutil.Process) -> str:
    name = proc.name()
    if not name.startswith("python"):
        return name
    args = proc.cmdline()[1:]
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            return f"{name} -m {args[i + 1]}"
        if arg == "-c":
            return f"{name} -c"
        if not arg.startswith("-"):
            return f"{name} {os.path.basename(arg)}"
    return name
