"""What a job left running, found without start_ray's own method.

start_ray finds its processes through its own marker variable and the
sessions it created. A check that used the same method would share its blind
spots (one such check once missed Ray agents that outlived every killed job:
psutil's environ() reads nothing from a process renamed by setproctitle). So
this module looks in two other ways, each from raw /proc bytes:

- every process that is new since the job began (PID and start time not in
  a snapshot taken before the launch) and looks like Ray or an MPI launcher
  by its command line or kernel name: Ray's binaries and scripts, `ray::*`
  processes, `ray start`, `python -m start_ray...`, mpirun/prterun/prted,
  mpiexec/hydra_pmi_proxy;
- every process whose raw environment holds the test's own marker variable
  (set on the launcher, inherited by all below it), or whose command line
  points into the job's own temp dir.

A new process that carries another test job's marker is that job's, not
this one's. The first way is looked for only in this test process's own
tree: the test process is a child subreaper (conftest.py), so every process
its jobs start, and every orphan of those, stays its descendant; whatever
other test runs on the machine at the same time (another pytest, another
xdist worker) is never in it. The first is the one that cannot be fooled: a
rename can overwrite a process's whole environment, the marker with it. Test
clean-up kills only what carries the marker (what the test provably
started); a Ray-looking leftover without it fails the test instead.
"""

from __future__ import annotations

import os
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import psutil

Snapshot = FrozenSet[Tuple[int, int]]

LAUNCHER_BINARIES = {"mpirun", "mpiexec", "mpiexec.hydra", "hydra_pmi_proxy", "prterun",
                     "prted", "orted", "prte"}
RAY_BINARIES = {"raylet", "gcs_server"}


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _stat(pid: int) -> Optional[Tuple[str, int]]:
    """(state, start time) from /proc/PID/stat."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def _live_pids() -> Dict[int, int]:
    """PID -> start time of every process that is not a zombie."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and stat[0] not in ("Z", "X"):
                found[int(name)] = stat[1]
    return found


def snapshot() -> Snapshot:
    """The processes running now (taken before a job is launched)."""
    return frozenset(_live_pids().items())


def renamed(pid: int) -> bool:
    """Whether a rename (setproctitle) overwrote the start of the environ:
    then any entry may be gone, in whatever order the parent wrote them."""
    return (_read(f"/proc/{pid}/environ") or b"").startswith(b"\0")


def environ(pid: int) -> Dict[str, str]:
    """A process's environment from its raw bytes, skipping what a rename
    overwrote: the NUL bytes, and the first entry after them, which may be
    the tail of an entry whose start was overwritten."""
    raw = _read(f"/proc/{pid}/environ") or b""
    items = [item for item in raw.split(b"\0") if item]
    if raw.startswith(b"\0"):
        items = items[1:]
    entries = (item.decode(errors="replace") for item in items if b"=" in item)
    return dict(entry.split("=", 1) for entry in entries)


def kernel_name(pid: int) -> str:
    """The kernel's name for a process (/proc/PID/comm), '' if gone."""
    return (_read(f"/proc/{pid}/comm") or b"").decode(errors="replace").strip()


def cmdline(pid: int) -> List[str]:
    """A process's command line from its raw bytes ([] if gone)."""
    return [arg.decode(errors="replace")
            for arg in (_read(f"/proc/{pid}/cmdline") or b"").split(b"\0") if arg]


def looks_like_ray_or_mpi(pid: int) -> bool:
    """Judged by the command line and the kernel's name for the process."""
    comm = kernel_name(pid)
    args = cmdline(pid)
    if comm.startswith("ray::") or (args and args[0].startswith("ray::")):
        return True
    if comm in RAY_BINARIES | LAUNCHER_BINARIES:
        return True
    for i, arg in enumerate(args):
        base = os.path.basename(arg)
        following = args[i + 1] if i + 1 < len(args) else ""
        if base in RAY_BINARIES | LAUNCHER_BINARIES or "/site-packages/ray/" in arg:
            return True
        if (base == "ray" and following == "start") or arg.startswith("ray start "):
            return True  # the second: a `ray` imported ahead, renamed (start_ray.node.ray_ahead)
        if arg == "-m" and following.split(".")[0] in ("ray", "start_ray"):
            return True
    return False


def become_subreaper() -> bool:
    """Adopt the orphans of everything this process starts (prctl
    PR_SET_CHILD_SUBREAPER), so that they stay in its tree."""
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0


def _tree(root: int) -> Set[int]:
    """`root` and every process below it, from raw /proc (parent links)."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            raw = _read(f"/proc/{name}/stat")
            if raw:
                parent = int(raw[raw.rindex(b")") + 2:].split()[1])
                children.setdefault(parent, []).append(int(name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def find(variable: str, mark: str, since: Optional[Snapshot] = None,
         temp_root: Optional[str] = None) -> List[psutil.Process]:
    """Running processes that carry `variable=mark` (raw bytes), point into
    `temp_root`, or are new since `since`, in this process's tree, and look
    like Ray or MPI."""
    needle = f"\0{variable}={mark}\0".encode()
    old = dict(since) if since is not None else None
    ours = _tree(os.getpid()) if old is not None else set()
    found = []
    for pid, began in _live_pids().items():
        if pid == os.getpid():
            continue
        new = old is not None and old.get(pid) != began and pid in ours
        env = b"\0" + (_read(f"/proc/{pid}/environ") or b"") + b"\0"
        cmdline = _read(f"/proc/{pid}/cmdline") or b""
        foreign = needle not in env and f"\0{variable}=".encode() in env
        if needle in env or (temp_root and temp_root.encode() in cmdline) or \
                (new and not foreign and looks_like_ray_or_mpi(pid)):
            try:
                found.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
    return found
