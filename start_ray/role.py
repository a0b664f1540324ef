"""What a rank works with, whichever part it plays: rank 0's
(head_rank.HeadRank) or every other rank's (worker_rank.WorkerRank).

The two parts differ in what they do at start-up, and in two steps of the
teardown (lifecycle.Job.end): before a rank stops its own processes (rank 0
tells the others to stop and hears from them) and after (the others report
to rank 0, rank 0 sums up). Everything they share is fixed at construction.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, List, Optional

from .agreement import Agreement
from .options import Options
from .signals import SignalInbox

# Teardown reports may take this long past the stop timeout (a busy rank).
REPORT_SLACK = 15.0


@dataclasses.dataclass(frozen=True)
class Teardown:
    """How this rank's teardown went (lifecycle.Job.end)."""

    status: int  # this rank's exit status
    cause: Optional[str]  # why the job failed, as this rank knows it
    stopped: int  # processes stopped
    left: List[str]  # `pid name` of those still running
    began: float  # time.monotonic() when the teardown began


class Role:
    """One rank's part in the job (the policy; the plan is `agreed`, the
    processes `own`, the conversation `channel`)."""

    def __init__(self, agreed: Agreement, options: Options, channel: Any, own: Any,
                 inbox: SignalInbox, log: logging.Logger, started: float) -> None:
        self.agreed = agreed
        self.options = options
        self.channel = channel
        self.own = own  # an owned.OwnedProcesses (a fake one in the protocol tests)
        self.inbox = inbox
        self.log = log
        self.started = started  # time.monotonic() when the job began on this rank
        self.deadline = started + options.join_timeout  # for the whole cluster to be up

    def job_failed(self) -> bool:
        """Whether the whole job is known to have failed (beyond this rank)."""
        return False

    def stop_others(self, status: int, deadline: float) -> None:
        """Teardown, before this rank stops its own processes."""

    def report(self, teardown: Teardown) -> None:
        """Teardown, once this rank's own processes are stopped."""

    def leave_by(self, latest: float) -> Optional[float]:
        """Until when (at most `latest`) to wait for the others at the very
        end (Channel.part); None when not every rank is known to come."""
        return None
