"""What the head's GCS says about the cluster (rank 0 only).

Rank 0 never talks to the GCS itself: Ray's GCS client can block for a
minute, holding the interpreter, and then abort the whole process when the
GCS dies ("Failed to connect to GCS within 60 seconds"), and rank 0 must
stay free to stop the driver and tear down. So a small helper process
(`python -m start_ray.node.gcs_table`, started next to the head) reads the
node table from the GCS (~30 ms a look; unlike `ray.init()` + `ray.nodes()`
it registers no driver in the user's cluster) and prints it as JSON lines;
rank 0 only reads the latest line. The helper imports Ray while the head
starts, off the critical path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Protocol, TextIO

from start_ray.node import compat
from start_ray.node.raynode import RANK_LABEL
from start_ray.procs import proctree
from start_ray.procs.helpers import Helper, HelperProcess

# The helper's niceness (added to what rank 0 has).
NICENESS = 10


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    hostname: str
    alive: bool
    rank: int  # the start_ray rank that started it; -1 for a foreign node
    resources: Dict[str, float]
    ports: Dict[str, int] = dataclasses.field(default_factory=dict)  # "NodeManager": 41234

    def describe_ports(self) -> str:
        """`node manager 41234, object manager 40111, ...` (all chosen by the OS)."""
        first = ("NodeManager", "ObjectManager")
        names = [n for n in first if n in self.ports] + sorted(set(self.ports) - set(first))
        return ", ".join(f"{_words(name)} {self.ports[name]}" for name in names)


def _words(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", camel).lower()


def total_resources(nodes: List[NodeInfo]) -> Dict[str, float]:
    total: Dict[str, float] = {}
    for node in nodes:
        for key, value in node.resources.items():
            total[key] = total.get(key, 0.0) + value
    return total


class Table(Helper, Protocol):
    """Rank 0's view of the GCS node table (NodeTable, and the tests'
    fakes), kept fresh by a helper process that rank 0 watches."""

    @property
    def look_took(self) -> Optional[float]: ...
    @property
    def looked_at(self) -> Optional[float]: ...
    @property
    def version(self) -> int: ...

    def watch(self, address: str, interval: float) -> None: ...
    def look_now(self) -> None: ...
    def alive(self) -> Optional[FrozenSet[int]]: ...
    def nodes(self) -> Dict[int, NodeInfo]: ...
    def close(self) -> None: ...


class NodeTable(HelperProcess):
    """Rank 0's view of the GCS node table, kept fresh by the helper."""

    what = "the node-table helper start_ray.node.gcs_table"

    def __init__(self, env: Dict[str, str], spawn: proctree.Spawn = proctree.popen) -> None:
        self.version = 0  # looks read so far: a caller recomputes only on a new one
        self._look: Optional[Look] = None  # the latest (None: no answer yet)
        self._nodes: Optional[Dict[int, NodeInfo]] = None  # its nodes, once asked for
        self.look_took: Optional[float] = None  # seconds the helper's last look took
        # time.monotonic() when that look began, at the latest: a node counted
        # in after it may be missing from it, and is not lost for that
        self.looked_at: Optional[float] = None
        self._watching = ""
        self._lock = threading.Lock()
        self._env = env
        self._popen = spawn
        self.process = self._spawn()

    def _spawn(self) -> "subprocess.Popen[str]":
        process = self._popen(
            [sys.executable, "-m", "start_ray.node.gcs_table"], env=self._env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, args=(process,), daemon=True,
                         name="node-table").start()
        return process

    def _retell(self) -> None:
        """A new helper is told what the old one watched (its whole state);
        rank 0 watches the helper while it relies on it (HelperProcess)."""
        if self._watching:
            self._say(self._watching)

    def watch(self, address: str, interval: float) -> None:
        """Look at `address` every `interval` seconds (a new interval
        applies from the next look), and once right now."""
        self._watching = f"{address} {interval}"
        self._say(self._watching)

    def look_now(self) -> None:
        """One look right away (then on at the same interval)."""
        if self._watching:
            self._say(self._watching)

    def _say(self, line: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # the helper is gone: rank 0's Helpers.check restarts it

    def _read(self, process: "subprocess.Popen[str]") -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.take(line)

    def take(self, line: str) -> None:
        """One line of the helper's: a look at the table (else the GCS did
        not answer: the last look stands)."""
        look = parse_look(line)
        if look is None:
            return
        with self._lock:
            self._look, self._nodes = look, None
            self.look_took = look.took
            self.looked_at = time.monotonic() - (look.took or 0.0)
            self.version += 1

    def alive(self) -> Optional[FrozenSet[int]]:
        """The ranks of the alive nodes, as of the helper's latest look."""
        with self._lock:
            return self._look.alive if self._look is not None else None

    def nodes(self) -> Dict[int, NodeInfo]:
        """The latest look's alive nodes by rank, read from its rows when
        first asked for (once per look, and only when needed: the READY block)."""
        with self._lock:
            if self._nodes is None:
                self._nodes = self._look.nodes() if self._look is not None else {}
            return self._nodes

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@dataclasses.dataclass(frozen=True)
class Look:
    """One look at the table, as the helper prints it: the alive nodes'
    ranks as a list of numbers, and every node's row as one JSON text,
    read only when asked for. Rank 0 takes a look every few seconds for
    hours: a row made into objects at every look was 10,000 objects a look
    at 10,000 nodes, each living until the next, for its garbage collector
    to scan again and again."""

    alive: FrozenSet[int]
    rows: str  # json: [NodeInfo as a dict, ...]
    took: Optional[float]

    def nodes(self) -> Dict[int, NodeInfo]:
        return {node.rank: node for node in (NodeInfo(**row) for row in json.loads(self.rows))
                if node.alive}


def parse_look(line: str) -> Optional[Look]:
    """A helper's line -> the look, or None (not a look: the GCS did not answer)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if "alive" not in message:
        return None
    return Look(frozenset(message["alive"]), message["rows"], message.get("took"))


def summarize(resources: Dict[str, float]) -> str:
    """`CPU 2, GPU 0, memory 12.3 GiB, object_store_memory 5.1 GiB`."""
    parts = []
    for key in sorted(resources):
        value = resources[key]
        if "memory" in key:
            parts.append(f"{key} {value / 2**30:.1f} GiB")
        else:
            parts.append(f"{key} {value:g}")
    return ", ".join(parts)


# ------------------------------------------------------------------ helper
def _node_info(raw: Dict[str, Any]) -> Dict[str, Any]:
    label = (raw.get("Labels") or {}).get(RANK_LABEL, "")
    return dataclasses.asdict(NodeInfo(
        node_id=raw.get("NodeID", ""),
        ip=raw.get("NodeManagerAddress", ""),
        hostname=raw.get("NodeManagerHostname", ""),
        alive=bool(raw.get("Alive")),
        rank=int(label) if label.isdigit() else -1,
        resources={key: value for key, value in (raw.get("Resources") or {}).items()
                   if not key.startswith("node:")},
        ports={key[:-len("Port")]: value for key, value in raw.items()
               if key.endswith("Port") and isinstance(value, int) and value > 0},
    ))


class Orders:
    """Rank 0's `ADDRESS INTERVAL` lines on the helper's stdin, read whole.
    select() sees the pipe, not a file object's buffer: a buffered readline
    takes in every line written so far and returns the first, and the later
    ones (rank 0's "every 2 s" right after "every 0.05 s", as the cluster
    becomes ready) would wait, unseen, until another line came."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._partial = b""

    def wait(self, timeout: Optional[float]) -> Optional[List[str]]:
        """The whole lines that came within `timeout` ([] if none did), or
        None once rank 0 has closed the pipe (it is gone)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return []
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            if lines:
                return [line.decode() for line in lines if line.strip()]


Reader = Callable[[], List[Dict[str, Any]]]


def main(fd: int = 0, reader: Optional[Callable[[str], Reader]] = None,
         out: TextIO = sys.stdout) -> int:
    """The helper: read `ADDRESS INTERVAL` lines on `fd`; print the node
    table at once, then every INTERVAL seconds (the latest line's); exit
    when `fd` closes (rank 0 is gone).

    It runs niced: its Ray import (~0.5 s of CPU) overlaps the start of the
    head and the joins, which are on the critical path; it is not."""
    if reader is None:
        os.nice(NICENESS)
        import ray._private.state  # noqa: F401  (imported now, used at the first look)
        reader = compat.node_table_reader
    orders = Orders(fd)
    read_table: Optional[Reader] = None
    interval: Optional[float] = None
    while True:
        lines = orders.wait(interval)
        if lines is None:
            return 0
        if lines:
            address, text = lines[-1].split()
            interval = float(text)
            if read_table is None:
                read_table = reader(address)
        if read_table is None:
            continue
        began = time.perf_counter()
        try:
            rows = [_node_info(raw) for raw in read_table()]
            message: Dict[str, Any] = {
                "alive": [row["rank"] for row in rows if row["alive"]],
                "rows": json.dumps(rows), "took": time.perf_counter() - began}
        except Exception as err:  # the GCS busy or going: say so, look again
            message = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(message), file=out, flush=True)


if __name__ == "__main__":
    sys.exit(main())
