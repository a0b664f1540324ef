"""The seams of the lifecycle, as typing.Protocols: what the lifecycle and
the rank roles need of the MPI conversation, of the process owner, of the
node launcher, of a Ray node and of the GCS's node table; what the RUN
phase's payload (the driver) gets; and the part a rank plays (Role: rank
0's, lifecycle/head/role.py, or every other rank's, lifecycle/worker/role.py).

The real classes (handshake.Channel, owned.ProcessOwner, node_launcher.
NodeLauncher, raynode.RayNode, cluster_state.NodeTable) and the protocol
tests' fakes (tests/fake_world.py) both satisfy them, and mypy checks both
against them (tests/test_types.py): a fake that drifts from the real thing
fails there, not silently in a green test.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from start_ray.mpi.messages import Message
from start_ray.node.gcs_table import ClusterInfo, NodeInfo
from start_ray.procs.helpers import Helper
from start_ray.procs.proctree import Spawn
from start_ray.procs.signals import SignalInbox


class Channel(Protocol):
    """Everything the ranks say to each other (handshake.Channel)."""

    rank: int
    size: int

    def share(self, value: Any) -> Any: ...
    def gather(self, value: Any) -> Optional[List[Any]]: ...
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
    """A `ray start --block` this rank runs (raynode.RayNode)."""

    command: List[str]

    @property
    def process(self) -> Popen: ...
    @property
    def started(self) -> bool: ...

    def wait_started(self, deadline: float, interval: float,
                     interrupted: Callable[[], bool] = ...,
                     need_address: bool = False) -> None: ...
    def wait_address(self, deadline: float, interval: float,
                     interrupted: Callable[[], bool] = ...,
                     ip: Optional[str] = None) -> str: ...
    def alive(self) -> bool: ...
    def last_words(self, lines: int = 4) -> str: ...
    def session_dir(self) -> str: ...
    def gone(self) -> Optional[str]: ...


class Table(Helper, Protocol):
    """Rank 0's view of the GCS node table (cluster_state.NodeTable), kept
    fresh by a helper process that rank 0 watches."""

    @property
    def look_took(self) -> Optional[float]: ...
    @property
    def looked_at(self) -> Optional[float]: ...

    def watch(self, address: str, interval: float) -> None: ...
    def look_now(self) -> None: ...
    def alive_ranks(self) -> Optional[Dict[int, NodeInfo]]: ...
    def close(self) -> None: ...


class Owner(Protocol):
    """What one rank started, and stopping exactly that (owned.ProcessOwner)."""

    @property
    def temp_dir(self) -> Optional[str]: ...

    def set_up(self) -> None: ...
    def popen(self, cmd: Sequence[str], ignored_signals: Sequence[int] = (),
              walltime_warning: bool = False, **kwargs: Any) -> Any: ...
    def adopt(self, pid: int) -> None: ...
    def watch_helper(self, helper: Helper) -> None: ...
    def forget_helper(self, helper: Helper) -> None: ...
    def check_helpers(self, doing: str) -> None: ...
    def stop(self, node: Optional[Node]) -> Tuple[int, List[str]]: ...
    def finish(self, clean: bool) -> None: ...


class Launcher(Protocol):
    """This rank's Ray node from the environment to `ray start`
    (node_launcher.NodeLauncher)."""

    @property
    def node(self) -> Optional[Node]: ...

    def ray_env(self) -> Dict[str, str]: ...
    def adopt(self, ready: Any) -> None: ...
    def prepare(self) -> None: ...
    def start_node(self, role_args: List[str]) -> Node: ...
    def node_table(self) -> Table: ...
    def close_node_table(self, table: Table) -> None: ...


@dataclasses.dataclass(frozen=True)
class Running:
    """What the RUN phase's payload (the driver) gets."""

    info: ClusterInfo
    inbox: SignalInbox  # the signals the job received, to forward
    tick: Callable[[], None]  # the watch: call it between polls; raises when the job must end
    spawn: Spawn  # start a child that this rank owns (owned.ProcessOwner.popen)
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


class Role(Protocol):
    """What the lifecycle asks of a rank's part in the teardown."""

    def logs_wanted(self) -> bool:
        """Whether this node's Ray logs explain something (--collect-logs
        on-failure): the whole job is known to have failed (beyond this
        rank), or this rank's node died during it."""

    def stop_others(self, status: int, deadline: float) -> None:
        """Teardown, before this rank stops its own processes."""

    def report(self, teardown: Teardown) -> None:
        """Teardown, once this rank's own processes are stopped."""

    def leave_by(self, latest: float) -> Optional[float]:
        """Until when (at most `latest`) to wait for the others at the very
        end (Channel.part); None when not every rank is known to come."""
