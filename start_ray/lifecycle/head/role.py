"""Rank 0's part: its three pieces over one state object (state.py).

    bring-up   the head, the wait until every node is alive  (bring_up.py)
    watch      the news, the helpers, the GCS while the payload runs  (watch.py)
    teardown   Stop to every rank, the hosts' reports, the summary  (teardown.py)
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import (
    Channel,
    ClusterInfo,
    Launcher,
    Owner,
    Parted,
    Started,
    Teardown,
)
from start_ray.lifecycle.head import join_slots
from start_ray.lifecycle.head.bring_up import BringUp
from start_ray.lifecycle.head.gcs_keeper import GcsKeeper
from start_ray.lifecycle.head.join_slots import JoinSlots
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.lifecycle.head.state import HeadState
from start_ray.lifecycle.head.teardown import HeadTeardown
from start_ray.lifecycle.head.watch import Watch
from start_ray.node import raynode
from start_ray.options import Options
from start_ray.procs.signals import SignalInbox
from start_ray.record import announce
from start_ray.record.events import Event, Restarted


class HeadRank:
    """Rank 0: bring-up, watch and teardown, sharing one state object."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 launcher: Launcher, inbox: SignalInbox, log: logging.Logger,
                 started: float) -> None:
        self.agreed, self.options, self.launcher, self.log = agreed, options, launcher, log
        layout = agreed.whole
        workers = layout.node_ranks[1:]
        self.state = HeadState(
            layout=layout, ledger=Ledger(layout, started),
            slots=JoinSlots(workers, join_slots.slots_for(len(workers), options.join_slots)),
            gcs=GcsKeeper(agreed.gcs, layout.nodes[0].host, log))
        self.watch = Watch(options, channel, owner, self.state, log)
        self.bring_up = BringUp(agreed, options, channel, owner, launcher, inbox, self.state,
                                self.watch, log)
        self.teardown = HeadTeardown(agreed, options, channel, launcher, self.state, log)

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger

    def start(self) -> Started:
        """The cluster, then its card and the READY block; the watch the
        payload runs under."""
        return Started(info=self._bring_up(), tick=self.watch.tick)

    def serve(self) -> None:
        raise RuntimeError("rank 0 runs the payload; the other ranks serve")

    def _bring_up(self) -> ClusterInfo:
        info = self.bring_up.run()
        node = self.launcher.node
        port = (raynode.option_value(node.command, "--dashboard-port")
                if self.options.dashboard and node is not None else None)
        announce.announce(announce.Ready(
            run_dir=info.run_dir, run_id=self.agreed.plan.run_id, address=info.address,
            nodes=info.num_nodes, resources=info.resources, head_host=self.agreed.host,
            hosts=[host.name for host in self.state.layout.hosts],
            token=self.agreed.plan.auth_token, dashboard_port=port, serve=self.options.serve,
            seconds=self.ledger.since_attempt()), self.log)
        self.state.card_published = True
        return info

    def logs_wanted(self) -> bool:
        return False  # rank 0 knows the status itself; a lost head ends the job

    def restarted(self, attempt: int, after: str, earlier: Sequence[Event]) -> None:
        """This attempt follows the head's loss (--restarts): the ledger
        keeps the `earlier` attempts' events and says so, and its times count
        from now."""
        for event in earlier:
            self.ledger.note(event)
        self.ledger.attempt_first = len(self.ledger.events)
        self.ledger.attempt_started = time.monotonic()
        self.ledger.note(Restarted(0, self.ledger.since_start(), attempt, after))

    def stop_others(self, status: int, deadline: float, restart: int = 0) -> Parted:
        return self.teardown.stop_others(status, deadline, restart)

    def restart_said(self) -> Optional[int]:
        return None  # rank 0 decides (lifecycle/restarts.py)

    def timeline(self) -> Sequence[Event]:
        return self.ledger.events

    @property
    def stop_status(self) -> Optional[int]:
        return None

    def report(self, teardown: Teardown) -> None:
        self.teardown.report(teardown)

    def leave_by(self, latest: float) -> Optional[float]:
        return self.teardown.leave_by(latest)
