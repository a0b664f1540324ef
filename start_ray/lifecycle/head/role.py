"""Rank 0's part: its three pieces over one ledger (ledger.py).

    bring-up   the head, the wait until every node is alive  (bring_up.py)
    watch      the news, the helpers, the GCS while the payload runs  (watch.py)
    teardown   Stop to every rank, their Done, the summary   (head_teardown.py)
"""

from __future__ import annotations

import logging
from typing import Optional

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import Channel, Launcher, Owner, Teardown
from start_ray.lifecycle.head import join_slots
from start_ray.lifecycle.head.bring_up import BringUp
from start_ray.lifecycle.head.join_slots import JoinSlots
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.lifecycle.head.teardown import HeadTeardown
from start_ray.lifecycle.head.watch import Watch
from start_ray.node.gcs_table import ClusterInfo
from start_ray.options import Options
from start_ray.procs.signals import SignalInbox
from start_ray.record import announce


class HeadRank:
    """Rank 0: bring-up, watch and teardown, sharing one ledger."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 launcher: Launcher, inbox: SignalInbox, log: logging.Logger,
                 started: float) -> None:
        self.agreed, self.options, self.launcher, self.log = agreed, options, launcher, log
        self.ledger = Ledger(agreed, started)
        workers = agreed.node_ranks[1:]
        slots = JoinSlots(workers, join_slots.slots_for(len(workers), options.join_slots))
        self.watch = Watch(agreed, options, channel, owner, self.ledger, slots, log)
        self.bring_up = BringUp(agreed, options, channel, owner, launcher, inbox, self.ledger,
                                self.watch, log)
        self.teardown = HeadTeardown(agreed, options, channel, launcher, self.ledger,
                                     self.watch, log)

    def start(self) -> ClusterInfo:
        """The cluster, then its card and the READY block."""
        info = self.bring_up.run()
        node = self.launcher.node
        announce.announce(self.agreed, self.options, info, node.command if node else [],
                       self.ledger.since_start(), self.log)
        self.teardown.card_published = True
        return info

    def logs_wanted(self) -> bool:
        return False  # rank 0 knows the status itself; a lost head ends the job

    def stop_others(self, status: int, deadline: float) -> None:
        self.teardown.stop_others(status, deadline)

    def report(self, teardown: Teardown) -> None:
        self.teardown.report(teardown)

    def leave_by(self, latest: float) -> Optional[float]:
        return self.teardown.leave_by(latest)
