"""Rank 0's teardown: every other rank stops first, while the head is up;
their Done reports; one line on how it went; summary.txt and summary.json.

    Stop(status) -----------------> every other rank
    Done <------------------------- each rank with a node (before the head
                                    stops: a raylet whose GCS is gone spends
                                    its whole stop timeout retrying)
    rank 0 stops its own processes (lifecycle)
    Done <------------------------- the ranks without a node
    the summary
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Set

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import Channel, Launcher, Teardown
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.lifecycle.head.watch import Watch
from start_ray.mpi.messages import REPORT, Stop
from start_ray.options import Options
from start_ray.polling import wait_until
from start_ray.record import card, summary
from start_ray.record.events import NoReport, Stopped

# How long teardown waits for the Done of ranks whose node was lost (they may be dead).
LOST_RANK_PATIENCE = 3.0


class HeadTeardown:
    """Rank 0's part of the end of the job."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel,
                 launcher: Launcher, ledger: Ledger, watch: Watch,
                 log: logging.Logger) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.launcher, self.ledger, self.watch, self.log = launcher, ledger, watch, log
        self.report_by = 0.0  # when the teardown's reports are due (stop_others)
        self.card_published = False  # the cluster was ready: its card says so (ready.py)
        # Stop said the ranks leave together (none was lost then): they will
        # wait for rank 0 at the end, so rank 0 must come, whatever is lost since
        self.together = False

    def stop_others(self, status: int, deadline: float) -> None:
        """Every other rank stops first, while the head is still up; then
        hear from every rank with a node that its processes are gone (the
        other ranks' Done is collected while the head stops: `report`)."""
        self.report_by = deadline
        if self.watch.table is not None:
            self.launcher.close_node_table(self.watch.table)
            self.watch.table = None
        if self.agreed.size == 1:
            return
        self.log.info("stopping Ray on all %d ranks", self.agreed.size)
        self.together = not self.ledger.lost
        for rank in range(1, self.agreed.size):
            self.channel.send(rank, Stop(status, together=self.together))
        self.collect_done(deadline, set(self.agreed.node_ranks) - {0})

    def collect_done(self, deadline: float, ranks: Optional[Set[int]] = None) -> None:
        """The Done of `ranks` (all others by default), until the deadline.
        Ranks whose node was lost may be dead themselves: they get
        LOST_RANK_PATIENCE seconds. Late news is only written down now."""
        lost_by = time.monotonic() + LOST_RANK_PATIENCE
        ranks = self.ledger.others() if ranks is None else ranks

        def heard_all() -> bool:
            while True:
                news = self.channel.receive(REPORT)
                if news is None:
                    break
                self.ledger.record(*news)
            waiting = ranks - self.ledger.reports.keys()
            if time.monotonic() >= lost_by:
                waiting -= self.ledger.lost_ranks()
            return not waiting

        wait_until(heard_all, self.options.poll_interval, deadline)

    def leave_by(self, latest: float) -> Optional[float]:
        """When the ranks were told to leave together and every other rank
        reported its teardown, they are all about to wait for rank 0: a
        short wait. (A node lost after Stop does not change what its rank
        was told: it comes too.)"""
        if (self.agreed.size == 1 or not self.together or
                not self.ledger.reports.keys() >= self.ledger.others()):
            return None
        return time.monotonic() + LOST_RANK_PATIENCE

    def report(self, teardown: Teardown) -> None:
        """One line on how the whole job's teardown went; then the summary."""
        self.collect_done(self.report_by)  # the ranks without a node
        ledger = self.ledger
        reports = ledger.reports
        silent = sorted(ledger.others() - reports.keys() - ledger.lost_ranks())
        dirty = [f"rank {rank}: {report.left}" for rank, report in sorted(reports.items())
                 if report.left] + (["rank 0"] if teardown.left else [])
        if silent:
            self.log.error("no teardown report from %s", self.agreed.name_ranks(silent))
        if dirty:
            self.log.error("processes left after teardown: %s", "; ".join(dirty))
        if not silent and not dirty:
            total = teardown.stopped + sum(report.stopped for report in reports.values())
            self.log.info("all Ray processes stopped (%d process(es) on %d rank(s), none "
                          "left) in %.1fs", total, self.agreed.size,
                          time.monotonic() - teardown.began)
        if self.card_published:
            card.retire(self.agreed.run_dir, teardown.status)
        ledger.note(Stopped(0, ledger.since_start(), ", ".join(teardown.left)))
        for rank in sorted(ledger.others() - reports.keys()):
            ledger.note(NoReport(rank, ledger.since_start()))
        try:
            path = summary.write(ledger, teardown.status, teardown.cause)
        except Exception as err:  # the summary never changes the job's status
            self.log.error("could not write the run's summary: %s", err)
            return
        self.log.info("summary of the run: %s", path)
