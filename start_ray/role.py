"""The part a rank plays: rank 0's (head_rank.HeadRank) or every other
rank's (worker_rank.WorkerRank), as the lifecycle sees it.

The two differ in what they do at start-up, and in two steps of the
teardown: before a rank stops its own processes (rank 0 tells the others to
stop and hears from them) and after (the others report to rank 0, rank 0
sums up).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Protocol

# Teardown reports may take this long past the stop timeout (a busy rank).
REPORT_SLACK = 15.0


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
