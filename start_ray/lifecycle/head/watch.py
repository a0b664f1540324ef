"""Rank 0's watch over the cluster: the other ranks' news, its own helpers,
the head's GCS and raylet, and the GCS's word on every node.

The same watch serves both entry points. The command line's driver loop
calls `Watch.tick` between its polls; the Python API's body is the user's
own code, so a `WatchThread` calls `tick` beside it and, when the job must
end (a lost node under fail_fast, the head gone, a helper lost), interrupts
the body with that error.

    news (REPORT)   Joined -> ledger, join slot to the next rank; once the
                              cluster is up: a lost node back, or a late one
                    Failed -> the job ends (JobError; --min-nodes: it goes on
                              without that node at start-up)
                    Lost   -> the node is lost (policy below); rejoining: a
                              join slot for it (--rejoins)
    every tick      helpers restarted once, else the job ends
                    the head's `ray start`, gcs_server and raylet still run,
                    else it ends (bring-up asks the same while nodes join)
    every NODE_WATCH_INTERVAL   the GCS's node table: a node missing is lost
    a lost node     logged once; with --fail-fast the job ends
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Optional

from start_ray.errors import JobError
from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import Channel, Node, Owner, Table
from start_ray.lifecycle.head.join_slots import JoinSlots
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.mpi.messages import REPORT, Failed, Go, Joined, Lost
from start_ray.options import Options
from start_ray.record.events import GivenUp

# How often rank 0 asks the GCS about the nodes while the driver runs (~30 ms).
NODE_WATCH_INTERVAL = 2.0


class Watch:
    """Rank 0's reading of the news and its policy for what it reads."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 ledger: Ledger, slots: JoinSlots, log: logging.Logger) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.owner, self.ledger, self.slots, self.log = owner, ledger, slots, log
        self.table: Optional[Table] = None  # the GCS's node table, once the head runs
        self.head: Optional[Node] = None  # the head's `ray start`, once rank 0 started it
        self._next_look = 0.0
        self.mpi_news = True  # False: another thread may not use MPI (WatchThread)

    def read_news(self) -> None:
        """Act on what the other ranks reported since the last look."""
        while self.mpi_news:
            news = self.channel.receive(REPORT)
            if news is None:
                return
            source, message = news
            if isinstance(message, Lost):  # the ledger books it in node_lost
                self.node_lost(source, message.error)
                self.rejoin(source, message.rejoining, message.error)
                continue
            self.ledger.record(source, message)
            where = self.agreed.name_ranks([source])
            if isinstance(message, Joined):
                self.grant_after(source)
                self.log.debug("%s joined after %.1fs (attempt %d)", where,
                               message.elapsed, message.attempt)
                self.count_in(source)
            elif isinstance(message, Failed):
                self.grant_after(source)
                if not message.starting or not self.options.min_nodes:
                    raise JobError(f"{where} could not start its Ray node: {message.error}"
                                   if message.starting else f"{where} failed: {message.error}")
                self.log.error("%s could not start its Ray node: %s; the job goes on without "
                               "it (--min-nodes)", where, message.error)

    def count_in(self, rank: int) -> None:
        """A lost node back (even before the cluster was up), or, once it
        is, a late one."""
        ledger, where = self.ledger, self.agreed.name_ranks([rank])
        if rank in ledger.lost:
            times = ledger.rejoined(rank)
            self.log.info("%s rejoined the cluster (rejoin %d of at most %d)%s", where, times,
                          self.options.rejoins, self.members_alive())
        elif ledger.ready and rank not in ledger.members:
            ledger.joined_late(rank)
            self.log.info("%s joined late and is counted in%s", where, self.members_alive())

    def members_alive(self) -> str:
        if not self.ledger.ready:
            return ""
        return f"; {len(self.ledger.members)} of {len(self.agreed.nodes)} node(s) alive"

    def rejoin(self, rank: int, rejoining: bool, error: str) -> None:
        """A rank whose node died starts it anew (a join slot for it), or
        gives it up: its rejoins are used (--rejoins), or a rejoin failed."""
        where = self.agreed.name_ranks([rank])
        if rejoining:
            self.log.info("%s starts its Ray node anew, to rejoin", where)
            for granted in self.slots.request(rank):
                self.channel.send(granted, Go())
            return
        self.grant_after(rank)  # a rejoin that failed frees its slot
        if self.options.rejoins and not self.options.fail_fast:
            times = self.ledger.rejoins.get(rank, 0)
            self.ledger.note(GivenUp(rank, self.ledger.since_start(), times))
            self.log.error("%s gives its Ray node up after %d rejoin(s) (--rejoins %d): %s",
                           where, times, self.options.rejoins, error)

    def grant_after(self, rank: int) -> None:
        """`rank`'s join ended: its slot goes to the next waiting rank(s)."""
        for granted in self.slots.finished(rank):
            self.channel.send(granted, Go())
            self.log.debug("join slot to rank %d (%d joining)", granted,
                           len(self.slots.in_flight))

    def tick(self) -> None:
        """While the payload runs: news from the ranks, the helpers, the
        head, and every few seconds the GCS's word on the nodes (a rank that
        died, e.g. under `mpirun --enable-recovery`, reports nothing itself)."""
        self.read_news()
        self.owner.check_helpers("the driver ran")
        self.check_head("the driver is stopped now")
        if self.table is None or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + NODE_WATCH_INTERVAL
        alive = self.table.alive_ranks()
        if alive is None:
            return
        looked = self.table.looked_at or 0.0
        for rank in sorted(self.ledger.members - alive.keys() - {0}):
            if self.ledger.counted_at.get(rank, 0.0) <= looked:  # else: a look from before
                self.node_lost(rank, "the GCS reports its node dead")

    def check_head(self, consequence: str) -> None:
        """In every phase: the head's `ray start`, GCS server and raylet still
        run, else JobError at once (a lost head cannot be brought back: its
        GCS held the cluster's state; waiting on would blame other nodes)."""
        why = self.head.gone() if self.head is not None else None
        if why is not None:
            raise JobError(f"the Ray head on {self.agreed.hosts[0]} (rank 0) ended ({why}): "
                           f"the cluster is gone, so {consequence}")

    def node_lost(self, rank: int, why: str) -> None:
        """Log a lost node once; stop the job if --fail-fast says so."""
        if not self.ledger.lose(rank, why):
            return
        where = self.agreed.name_ranks([rank])
        self.log.error("%s lost its Ray node: %s", where, why)
        if self.options.fail_fast:
            raise JobError(f"stopping the job (--fail-fast): {where} lost its Ray node")
        if self.ledger.ready:
            self.log.info("the job goes on with the remaining %d node(s) (--fail-fast would "
                          "stop it)", len(self.ledger.members))


class WatchThread:
    """`Watch.tick` beside an API body (which is the user's code, in the main
    thread). When the job must end, the error is kept and the main thread is
    interrupted (SIGINT to that thread: it wakes a blocking call; the API's
    handler raises the error in the body)."""

    def __init__(self, watch: Watch, interval: float, threads_ok: bool,
                 log: logging.Logger) -> None:
        self.watch, self.interval, self.log = watch, interval, log
        # MPI from a second thread needs MPI_THREAD_MULTIPLE; without it the
        # news waits for the body's end, the GCS's word and the helpers do not.
        watch.mpi_news = threads_ok
        if not threads_ok:
            log.debug("MPI gives no MPI_THREAD_MULTIPLE: during the body rank 0 reads the "
                      "ranks' news only at its end")
        self.error: Optional[JobError] = None
        self._stop = threading.Event()
        # Only a rank that is a process has a main thread to interrupt (the
        # protocol tests' ranks are threads: their body sees the error at its end).
        self._main = (threading.main_thread().ident
                      if threading.current_thread() is threading.main_thread() else None)
        self._thread = threading.Thread(target=self._run, name="start_ray-watch", daemon=True)

    def start(self) -> "WatchThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.watch.tick()
            except JobError as err:
                self.error = err
                self.log.error("%s", err)
                if self._main is not None:
                    signal.pthread_kill(self._main, signal.SIGINT)
                return

    def stop(self) -> Optional[JobError]:
        """Before the teardown uses the channel again: the thread is gone.
        The error that ended the job, if the watch found one."""
        self._stop.set()
        self._thread.join()
        self.watch.mpi_news = True
        return self.error

