"""The seams of the lifecycle, as typing.Protocols: what the lifecycle and
the rank roles need of the MPI conversation, of the process owner, of the
node launcher, of a Ray node and of the GCS's node table; what the RUN
phase's payload (the driver) gets; and the part a rank plays (Role: rank
0's, lifecycle/head/role.py, or every other rank's, lifecycle/worker/role.py).

The real classes (mpi/channel.Channel, procs/owner.ProcessOwner, node/starter.
NodeLauncher, node/raynode.RayNode, node/gcs_table.NodeTable) and the protocol
tests' fakes (tests/fake_world.py) both satisfy them, and mypy checks both
against them (tests/test_types.py): a fake that drifts from the real thing
fails there, not silently in a green test.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from start_ray.mpi.messages import Message, Stop
from start_ray.node.gcs_table import NodeInfo, total_resources
from start_ray.node.gcs_table import (
    Table as Table,  # the seam, where the node layer has it
)
from start_ray.procs.owner import Owner as Owner  # likewise, from the processes' layer
from start_ray.procs.proctree import Spawn
from start_ray.procs.signals import SignalInbox


class Channel(Protocol):
    """Everything the ranks say to each other (mpi/channel.Channel): to all,
    to and from the hosts' leaders, within a host."""

    rank: int
    size: int
    host_rank: int  # this rank's number on its host (0: the host's leader)
    leader: int  # the rank that leads this rank's host

    @property
    def is_leader(self) -> bool: ...

    def share(self, value: Any) -> Any: ...
    def gather_host(self, value: Any) -> Optional[List[Any]]: ...
    def gather_leaders(self, value: Any) -> Optional[List[Any]]: ...
    def scatter_leaders(self, values: Optional[List[Any]]) -> Any: ...
    def share_host(self, value: Any) -> Any: ...
    def expect_stop(self) -> None: ...
    def stop_all(self, stop: Stop, direct_to: Sequence[int] = ()) -> None: ...
    def stop_news(self) -> Optional[Stop]: ...
    def send(self, dest: int, message: Message) -> None: ...
    def receive(self, tag: int, source: Optional[int] = None) -> Optional[Tuple[int, Any]]: ...
    def flush(self, deadline: float) -> bool: ...
    def part(self, deadline: float) -> bool: ...
    def abort(self, status: int) -> None: ...
    def mpi_library(self) -> str: ...
    def threads_ok(self) -> bool: ...


class Popen(Protocol):
    """The part of subprocess.Popen the roles use."""

    pid: int

    def poll(self) -> Optional[int]: ...


class Node(Protocol):
    """A `ray start` this rank runs, --block but for a head with a GCS store (raynode.RayNode)."""

    command: List[str]
    block: bool  # `ray start --block` (a head with a GCS store: not)

    @property
    def process(self) -> Popen: ...
    @property
    def started(self) -> bool: ...

    def wait_started(self, deadline: float, interval: float,
                     look: Callable[[], None] = ...,
                     need_address: bool = False) -> None: ...
    def wait_address(self, deadline: float, interval: float,
                     look: Callable[[], None] = ...,
                     ip: Optional[str] = None) -> str: ...
    def alive(self) -> bool: ...
    def last_words(self, lines: int = 4) -> str: ...
    def session_dir(self) -> str: ...
    def gone(self, but_gcs: bool = False) -> Optional[str]: ...
    def kill(self) -> None: ...
    def stop_in_order(self, timeout: float) -> None: ...


class HeadNode(Node, Protocol):
    """The head's node, whose GCS may keep its state in a store and come back
    in place (node/gcs_server.py; lifecycle/head/gcs_keeper.py decides)."""

    def keep_gcs(self, port: int) -> bool: ...
    def gcs_ended(self) -> Optional[str]: ...
    def restart_gcs(self, deadline: float, number: int) -> float: ...
    def store_failed(self) -> bool: ...


class Launcher(Protocol):
    """This rank's Ray node from the environment to `ray start`
    (node/starter.NodeLauncher)."""

    @property
    def node(self) -> Optional[Node]: ...

    def ray_env(self) -> Dict[str, str]: ...
    def adopt(self, ready: Any) -> None: ...
    def prepare(self) -> None: ...
    def start_node(self, role_args: List[str]) -> Node: ...
    def start_head(self, role_args: List[str], gcs_store: bool) -> HeadNode: ...
    def node_table(self) -> Table: ...
    def close_node_table(self, table: Table) -> None: ...


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


@dataclasses.dataclass(frozen=True)
class Running:
    """What the RUN phase's payload (the driver) gets."""

    info: ClusterInfo
    inbox: SignalInbox  # the signals the job received, to forward
    tick: Callable[[], None]  # the watch: call it between polls; raises when the job must end
    spawn: Spawn  # start a child that this rank owns (procs/owner.ProcessOwner.popen)
    explain: Callable[[str], None]  # why the payload's status is not 0, in words


# The payload of the RUN phase -> its exit status.
Payload = Callable[[Running], int]


@dataclasses.dataclass(frozen=True)
class Teardown:
    """How this rank's teardown went (lifecycle.Job)."""

    status: int  # this rank's exit status
    cause: Optional[str]  # why the job failed, as this rank knows it
    stopped: int  # processes stopped
    left: List[str]  # `pid name` of those still running
    began: float  # time.monotonic() when the teardown began


@dataclasses.dataclass(frozen=True)
class Started:
    """What a rank's START came to: rank 0's cluster (`info`) and the watch
    its payload runs under (`tick`); another rank's: whether it serves now
    (False: the head never came up) and its status so far."""

    info: Optional[ClusterInfo] = None
    tick: Optional[Callable[[], None]] = None
    serves: bool = False
    status: int = 0


@dataclasses.dataclass(frozen=True)
class Parted:
    """What the first half of the teardown came to (Role.stop_others): the
    restart every rank begins next, 0 for none (one needs every rank: a
    rank lost since cancels it; another rank learns it from rank 0's Stop)."""

    restart: int


class Role(Protocol):
    """What the lifecycle asks of a rank's part (lifecycle/head/role.HeadRank,
    lifecycle/worker/role.WorkerRank): each phase's step, with a typed result."""

    def restarted(self, attempt: int, after: str, earlier: Sequence[Any]) -> None:
        """This attempt follows the head's loss (--restarts)."""

    def start(self) -> Started:
        """START: the cluster (rank 0), or this rank's node joined."""

    def serve(self) -> None:
        """SERVE (not rank 0): until rank 0's Stop."""

    def logs_wanted(self) -> bool:
        """Whether this node's Ray logs explain something (--collect-logs
        on-failure): the whole job is known to have failed (beyond this
        rank), or this rank's node died during it."""

    def stop_others(self, status: int, deadline: float, restart: int = 0) -> Parted:
        """Teardown, before this rank stops its own processes; `restart`:
        the attempt rank 0 decided on (--restarts)."""

    def report(self, teardown: Teardown) -> None:
        """Teardown, once this rank's own processes are stopped."""

    def leave_by(self, latest: float) -> Optional[float]:
        """Until when (at most `latest`) to wait for the others at the very
        end (Channel.part); None when not every rank is known to come."""

    def restart_said(self) -> Optional[int]:
        """Another rank: the attempt rank 0's Stop said follows (None: no
        Stop came); rank 0: None, it decides itself (lifecycle/restarts.py)."""

    def timeline(self) -> Sequence[Any]:
        """Rank 0's events so far (a restart's ledger keeps them); none elsewhere."""

    @property
    def stop_status(self) -> Optional[int]:
        """Rank 0's Stop status, as another rank received it."""
