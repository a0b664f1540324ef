"""What the head's GCS says about the cluster (rank 0 only).

Reading the node table straight from the GCS costs ~30 ms and, unlike
`ray.init()` + `ray.nodes()`, does not register a driver in the user's
cluster. Ray is imported here only, lazily: other ranks never pay for it.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Dict, List, Optional

from .raynode import RANK_LABEL


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    hostname: str
    alive: bool
    rank: int  # the start_ray rank that started it; -1 for a foreign node
    resources: Dict[str, float]


def preload() -> None:
    """Import what ClusterState needs (Ray: about a second), to be run in a
    thread while the head starts, off the critical path."""
    import ray._private.services  # noqa: F401
    import ray._private.state  # noqa: F401


class ClusterState:
    """A connection to one cluster's GCS."""

    def __init__(self, address: str) -> None:
        from ray._private.services import _get_gcs_client_options
        from ray._private.state import GlobalState

        self.address = address
        self._state = GlobalState()
        self._state._initialize_global_state(_get_gcs_client_options(address))

    def nodes(self) -> List[NodeInfo]:
        return [_node_info(raw) for raw in self._state.node_table()]

    def alive_ranks(self) -> Dict[int, NodeInfo]:
        return {node.rank: node for node in self.nodes() if node.alive}


class Watcher:
    """Reads the node table every `interval` seconds in a thread of its own:
    a GCS that hangs or is dying (scancel signals every process of the job)
    must never block rank 0, which has a driver to stop."""

    def __init__(self, state: ClusterState, interval: float,
                 gcs_alive: Callable[[], bool]) -> None:
        self.state = state
        self.interval = interval
        self.gcs_alive = gcs_alive  # asking a dead GCS blocks for a minute
        self.latest: Optional[Dict[int, NodeInfo]] = None  # None: no answer yet
        self.error: Optional[Exception] = None
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="gcs-watch").start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.gcs_alive():
            try:
                self.latest, self.error = self.state.alive_ranks(), None
            except Exception as err:  # the GCS busy or going: look again later
                self.error = err
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()


def _node_info(raw: Dict[str, Any]) -> NodeInfo:
    label = (raw.get("Labels") or {}).get(RANK_LABEL, "")
    return NodeInfo(
        node_id=raw.get("NodeID", ""),
        ip=raw.get("NodeManagerAddress", ""),
        hostname=raw.get("NodeManagerHostname", ""),
        alive=bool(raw.get("Alive")),
        rank=int(label) if label.isdigit() else -1,
        resources={key: value for key, value in (raw.get("Resources") or {}).items()
                   if not key.startswith("node:")},
    )


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
