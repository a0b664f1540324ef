"""Rank 0's teardown: every other rank stops first, while the head is up;
the hosts' reports; one line on how it went; summary.txt and summary.json.

    Stop(status) ---------------> every leader (a non-blocking broadcast),
                                  each relaying it to its host
    HostDone <------------------- each other host's leader, once its ranks
                                  have stopped (before the head stops: a
                                  raylet whose GCS is gone spends its whole
                                  stop timeout retrying)
    Done <----------------------- rank 0's own host's node ranks, likewise
    rank 0 stops its own processes (lifecycle)
    Done <----------------------- rank 0's own host's other ranks
    the summary

Rank 0 waits for O(hosts) reports, not O(ranks): a leader speaks for its host.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Set

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import Channel, Launcher, Parted, Teardown
from start_ray.lifecycle.head.state import HeadState
from start_ray.mpi.messages import REPORT, HostDone, Stop
from start_ray.mpi.ranks import RankSet
from start_ray.options import Options
from start_ray.polling import wait_until
from start_ray.record import card, summary

# How long teardown waits for the reports of hosts whose node was lost (a
# lost rank may be dead, and its host's report never come).
LOST_RANK_PATIENCE = 3.0


class HeadTeardown:
    """Rank 0's part of the end of the job."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel,
                 launcher: Launcher, state: HeadState, log: logging.Logger) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.launcher, self.state, self.log = launcher, state, log
        self.home = next(host.ranks for host in state.layout.hosts if host.leader == 0)
        self.restarting = False  # the teardown is a restart's (--restarts)

    def stop_others(self, status: int, deadline: float, restart: int = 0) -> Parted:
        """Every other rank stops first, while the head is still up; then
        hear from every host that its nodes are gone (rank 0's own host's
        ranks without a node are heard while the head stops: `report`).
        `restart`: the attempt every rank starts next (--restarts), which
        needs every rank: whether it goes ahead (Parted)."""
        state, ledger = self.state, self.state.ledger
        state.report_by = deadline
        if state.table is not None:
            self.launcher.close_node_table(state.table)
            state.table = None
        state.together = not ledger.lost
        restart = restart if state.together else 0
        parted = Parted(restart)
        self.restarting = bool(restart)
        if self.agreed.size == 1:
            return parted
        self.log.info("stopping Ray on all %d ranks%s", self.agreed.size,
                      " (to start the cluster again)" if restart else "")
        self.channel.stop_all(Stop(status, together=state.together, restart=restart),
                              direct_to=() if state.together else ledger.other_leaders())
        self.collect(deadline, set(ledger.node_ranks_of.get(0, ())) - {0})
        return parted

    def collect(self, deadline: float, home: Set[int]) -> None:
        """Until every other host's report and the Done of `home` (ranks of
        rank 0's own host) are in, or the deadline. Hosts with a lost node
        may be dead: they get LOST_RANK_PATIENCE seconds. Late news is only
        written down now."""
        ledger = self.state.ledger
        hosts = set(ledger.other_leaders()) - ledger.reports.keys()
        home = home - set(ledger.reports[0].reported if 0 in ledger.reports else ())
        lost_by = time.monotonic() + LOST_RANK_PATIENCE
        excused = False  # the lost ranks' hosts no longer awaited

        def look() -> None:
            nonlocal excused
            while True:
                news = self.channel.receive(REPORT)
                if news is None:
                    break
                source, message = news
                ledger.record(source, message)
                if isinstance(message, HostDone):
                    hosts.discard(source)
                else:
                    home.discard(source)
            if not excused and time.monotonic() >= lost_by:
                excused = True
                hosts.difference_update(ledger.hosts_with_lost_nodes())
                home.difference_update(ledger.lost)

        wait_until(lambda: not hosts and not home, self.options.poll_interval, deadline,
                   look=look)

    def leave_by(self, latest: float) -> Optional[float]:
        """When the ranks were told to leave together and every host
        reported its teardown, they are all about to wait for rank 0: a
        short wait. (A node lost after Stop does not change what its rank
        was told: it comes too.)"""
        ledger = self.state.ledger
        if (self.agreed.size == 1 or not self.state.together or
                not ledger.reports.keys() >= set(ledger.other_leaders())):
            return None
        return time.monotonic() + LOST_RANK_PATIENCE

    def report(self, teardown: Teardown) -> None:
        """One line on how the whole job's teardown went; then the summary."""
        state, ledger, layout = self.state, self.state.ledger, self.state.layout
        ledger.host_done(0, HostDone(teardown.stopped, tuple(
            f"rank 0: {left}" for left in teardown.left), RankSet.of([0]), RankSet()))
        self.collect(state.report_by, set(self.home) - {0})  # rank 0's host's other ranks
        heard_home = ledger.reports[0].reported
        silent_home = [rank for rank in self.home if rank not in heard_home] \
            if len(heard_home) < len(self.home) else []
        if silent_home:
            ledger.host_done(0, HostDone(0, (), RankSet(), RankSet.of(silent_home)))
        silent_hosts = [host for host in layout.hosts
                        if host.leader != 0 and host.leader not in ledger.reports]
        for host in silent_hosts:
            ledger.host_done(host.leader, HostDone(0, (), RankSet(), host.ranks))
        lost_hosts = ledger.hosts_with_lost_nodes()
        named = [host.leader for host in silent_hosts if host.leader not in lost_hosts] + \
            [rank for rank in silent_home if rank not in ledger.lost]
        dirty = [entry for done in ledger.reports.values() for entry in done.left]
        if named:
            self.log.error("no teardown report from %s", layout.name_ranks(sorted(named)))
        if dirty:
            self.log.error("processes left after teardown: %s", "; ".join(dirty))
        if not named and not dirty:
            total = sum(done.stopped for done in ledger.reports.values())
            self.log.info("all Ray processes stopped (%d process(es) on %d rank(s), none "
                          "left) in %.1fs", total, self.agreed.size,
                          time.monotonic() - teardown.began)
        if state.card_published:
            card.retire(self.agreed.run_dir, teardown.status)
        try:
            path = summary.write(facts(self.agreed, state), teardown.status, teardown.cause)
        except Exception as err:  # the summary never changes the job's status
            self.log.error("could not write the run's summary: %s", err)
            return
        # Rewritten at the job's end; one line then, not one per attempt.
        self.log.log(logging.DEBUG if self.restarting else logging.INFO,
                     "summary of the run: %s", path)


def facts(agreed: Agreement, state: HeadState) -> summary.Facts:
    """What the summary is made of, from rank 0's layout and ledger."""
    layout = state.layout
    return summary.Facts(
        run_id=agreed.plan.run_id, run_dir=agreed.run_dir, size=agreed.size,
        hosts=layout.hosts,
        nodes=[summary.Node(node.rank, node.host, node.ip, node.ranks) for node in layout.nodes],
        events=state.ledger.events)
