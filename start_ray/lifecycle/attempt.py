"""What one attempt of the job found and started, on one rank. The Job keeps
the job's life (its phases, the restarts' budget, the exit); a restart
(--restarts, lifecycle/restarts.py) is a new Attempt: the last one's
processes are stopped, and nothing of it is carried but the run id."""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Union

from start_ray.errors import EXIT_FAILURE
from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import ClusterInfo, Launcher, Owner
from start_ray.lifecycle.head.role import HeadRank
from start_ray.lifecycle.worker.role import WorkerRank
from start_ray.node.ready_ray import ReadyRay
from start_ray.record.log_sync import NodeLogs


@dataclasses.dataclass
class Attempt:
    ready: Optional[ReadyRay] = None  # a `ray` started before MPI, for this rank's node
    status: int = EXIT_FAILURE  # this rank's exit status, final once DONE
    cause: Optional[str] = None  # why the job failed, when it did
    crash: Optional[BaseException] = None  # re-raised once DONE
    agreed: Optional[Agreement] = None  # AGREE's
    owner: Optional[Owner] = None  # what this rank starts, owned (OWN)
    launcher: Optional[Launcher] = None  # this rank's Ray node, from its plan
    role: Optional[Union[HeadRank, WorkerRank]] = None  # rank 0's part, or another's
    info: Optional[ClusterInfo] = None  # rank 0's cluster, from START
    tick: Optional[Callable[[], None]] = None  # rank 0's watch, from START
    node_logs: Optional[NodeLogs] = None  # this rank's node's Ray logs
    teardown_began: float = 0.0  # time.monotonic() when STOP began
    stopped: int = 0  # processes this rank's teardown stopped
    # `pid name` of the processes it could not stop
    left: List[str] = dataclasses.field(default_factory=list)
    logs_safe: bool = True  # the job succeeded, or its Ray logs are copied

    def fail(self, status: int, cause: Optional[str]) -> None:
        """The outcome, if not known yet (the first failure is the cause)."""
        self.status = status
        self.explain(cause)

    def explain(self, cause: Optional[str]) -> None:
        """Why the job failed, if no reason is known yet."""
        self.cause = self.cause or cause
