"""What the head's GCS says about the cluster (rank 0 only), and what the
payload is told about it (ClusterInfo).

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
from typing import Any, Dict, List, Optional

from start_ray.node import compat
from start_ray.node.raynode import RANK_LABEL
from start_ray.procs import proctree

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


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What the payload (the driver, or an API user's code) gets to know."""

    address: str
    nodes: List[NodeInfo]
    run_dir: str
    env: Dict[str, str] = dataclasses.field(repr=False)
    grace: float = 30.0  # seconds the driver gets after a stopping signal
    # Set when the job got the walltime signal while an API body runs: time to
    # checkpoint and return; the cluster stays up until the body returns.
    walltime_warning: threading.Event = dataclasses.field(
        default_factory=threading.Event, repr=False, compare=False)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def resources(self) -> Dict[str, float]:
        return total_resources(self.nodes)


def total_resources(nodes: List[NodeInfo]) -> Dict[str, float]:
    total: Dict[str, float] = {}
    for node in nodes:
        for key, value in node.resources.items():
            total[key] = total.get(key, 0.0) + value
    return total


class NodeTable:
    """Rank 0's view of the GCS node table, kept fresh by the helper."""

    what = "the node-table helper start_ray.node.gcs_table"

    def __init__(self, env: Dict[str, str], spawn: proctree.Spawn = proctree.popen) -> None:
        self.nodes: Optional[List[NodeInfo]] = None  # None: no answer yet
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

    # helpers.Helper: rank 0 watches the helper while it relies on it.
    @property
    def pid(self) -> int:
        return self.process.pid

    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def restart(self) -> None:
        """A new helper, told what the old one watched (its whole state)."""
        self.process.wait()
        self.process = self._spawn()
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
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "nodes" in message:  # else the GCS did not answer: keep the last look
                with self._lock:
                    self.nodes = [NodeInfo(**node) for node in message["nodes"]]
                    self.look_took = message.get("took")
                    self.looked_at = time.monotonic() - (self.look_took or 0.0)

    def alive_ranks(self) -> Optional[Dict[int, NodeInfo]]:
        """The alive nodes by rank, as of the helper's latest look."""
        with self._lock:
            if self.nodes is None:
                return None
            return {node.rank: node for node in self.nodes if node.alive}

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


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


def main() -> int:
    """The helper: read `ADDRESS INTERVAL` lines on stdin; print the node
    table every INTERVAL seconds; exit when stdin closes (rank 0 is gone).

    It runs niced: its Ray import (~0.5 s of CPU) overlaps the start of the
    head and the joins, which are on the critical path; it is not."""
    os.nice(NICENESS)
    import ray._private.state  # noqa: F401  (imported now, used at the first look)
    read_table, interval = None, None
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], interval)
        if ready:
            line = sys.stdin.readline()
            if not line:
                return 0
            address, text = line.split()
            interval = float(text)
            if read_table is None:
                read_table = compat.node_table_reader(address)
        if read_table is None:
            continue
        began = time.perf_counter()
        try:
            message: Dict[str, Any] = {"nodes": [_node_info(raw) for raw in read_table()],
                                       "took": time.perf_counter() - began}
        except Exception as err:  # the GCS busy or going: say so, look again
            message = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(message), flush=True)


if __name__ == "__main__":
    sys.exit(main())
