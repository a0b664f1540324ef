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
                    the head's `ray start`, gcs_server and raylet still run
                              (a GCS that died alone: to its keeper, gcs_keeper.py),
                    else it ends (bring-up asks the same while nodes join)
    every NODE_WATCH_INTERVAL   the GCS's node table: a node missing is lost
    a lost node     logged once; with --fail-fast the job ends
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from typing import List, Optional

from start_ray.errors import HeadLost, JobError
from start_ray.lifecycle.contracts import Channel, Owner
from start_ray.lifecycle.head.state import HeadState
from start_ray.mpi.messages import REPORT, Failed, Go, Joined, Lost
from start_ray.options import Options
from start_ray.record.events import GivenUp

# How often rank 0 asks the GCS about the nodes while the driver runs (~30 ms).
NODE_WATCH_INTERVAL = 2.0


@dataclasses.dataclass
class News:
    """What one reading of the news brought: who joined, whose start failed."""

    joined: List[int] = dataclasses.field(default_factory=list)
    failed: List[int] = dataclasses.field(default_factory=list)


class Watch:
    """Rank 0's reading of the news and its policy for what it reads."""

    def __init__(self, options: Options, channel: Channel, owner: Owner, state: HeadState,
                 log: logging.Logger) -> None:
        self.options, self.channel, self.owner, self.state, self.log = (
            options, channel, owner, state, log)
        self._next_look = 0.0
        self._looked = -1  # the node table's version last compared with the members

    def name(self, rank: int) -> str:
        return self.state.layout.name_ranks([rank])

    def read_news(self, read_mpi: bool = True) -> News:
        """Act on what the other ranks reported since the last look
        (`read_mpi` False: another thread may not use MPI now, WatchThread);
        what was read, for the caller to follow without a scan."""
        ledger, read = self.state.ledger, News()
        while read_mpi:
            news = self.channel.receive(REPORT)
            if news is None:
                break
            source, message = news
            if isinstance(message, Lost):  # the ledger books it in node_lost
                self.node_lost(source, message.error)
                self.rejoin(source, message.rejoining, message.error)
                continue
            ledger.record(source, message)
            if isinstance(message, Joined):
                read.joined.append(source)
                self.grant_after(source)
                self.log.debug("%s joined after %.1fs (attempt %d)", self.name(source),
                               message.elapsed, message.attempt)
                self.count_in(source)
            elif isinstance(message, Failed):
                where = self.name(source)
                if not message.starting or not self.options.min_nodes:
                    # the job ends: its slot goes to nobody (a node started now
                    # would only be stopped again)
                    raise JobError(f"{where} could not start its Ray node: {message.error}"
                                   if message.starting else f"{where} failed: {message.error}")
                read.failed.append(source)
                self.grant_after(source)
                self.log.error("%s could not start its Ray node: %s; the job goes on without "
                               "it (--min-nodes)", where, message.error)
        return read

    def count_in(self, rank: int) -> None:
        """A lost node back (even before the cluster was up), or, once it
        is, a late one."""
        ledger, where = self.state.ledger, self.name(rank)
        if rank in ledger.lost:
            times = ledger.rejoined(rank)
            self.log.info("%s rejoined the cluster (rejoin %d of at most %d)%s", where, times,
                          self.options.rejoins, self.members_alive())
        elif ledger.ready and rank not in ledger.members:
            ledger.joined_late(rank)
            self.log.info("%s joined late and is counted in%s", where, self.members_alive())

    def members_alive(self) -> str:
        ledger = self.state.ledger
        if not ledger.ready:
            return ""
        return f"; {len(ledger.members)} of {len(self.state.layout.nodes)} node(s) alive"

    def rejoin(self, rank: int, rejoining: bool, error: str) -> None:
        """A rank whose node died starts it anew (a join slot for it), or
        gives it up: its rejoins are used (--rejoins), or a rejoin failed."""
        where = self.name(rank)
        if rejoining:
            self.log.info("%s starts its Ray node anew, to rejoin", where)
            for granted in self.state.slots.request(rank):
                self.channel.send(granted, Go())
            return
        self.grant_after(rank)  # a rejoin that failed frees its slot
        if self.options.rejoins and not self.options.fail_fast:
            ledger = self.state.ledger
            times = ledger.rejoins.get(rank, 0)
            ledger.note(GivenUp(rank, ledger.since_start(), times))
            self.log.error("%s gives its Ray node up after %d rejoin(s) (--rejoins %d): %s",
                           where, times, self.options.rejoins, error)

    def grant_after(self, rank: int) -> None:
        """`rank`'s join ended: its slot goes to the next waiting rank(s)."""
        for granted in self.state.slots.finished(rank):
            self.channel.send(granted, Go())

    def tick(self, read_mpi: bool = True) -> None:
        """While the payload runs: news from the ranks, the helpers, the
        head, and every few seconds the GCS's word on the nodes (a rank that
        died, e.g. under `mpirun --enable-recovery`, reports nothing itself)."""
        self.read_news(read_mpi)
        self.owner.check_helpers("the driver ran")
        self.check_head("the driver is stopped now")
        table = self.state.table
        if table is None or time.monotonic() < self._next_look or table.version == self._looked:
            return
        self._next_look = time.monotonic() + NODE_WATCH_INTERVAL
        self._looked = table.version
        alive = table.alive()
        if alive is None:
            return
        ledger, looked = self.state.ledger, table.looked_at or 0.0
        for rank in sorted(ledger.members - alive - {0}):
            if ledger.counted_at.get(rank, 0.0) <= looked:  # else: a look from before
                self.node_lost(rank, "the GCS reports its node dead")

    def check_head(self, consequence: str) -> None:
        """In every phase: the head's `ray start`, GCS server and raylet still
        run, else JobError at once (waiting on would blame other nodes). A
        GCS that keeps its state in a store is started again in place (its
        keeper's), unless the head's raylet or `ray start` ended too."""
        head = self.state.head
        if head is None:
            return
        how = head.gcs_ended()
        why = head.gone(but_gcs=how is not None)
        if why is not None and how is None:
            # Two looks at one process: a GCS that died between them is seen
            # dead by the second alone; look at it again (1 job in 16 was
            # ended as "its gcs_server ended" instead of bringing it back).
            how = head.gcs_ended()
            why = head.gone(but_gcs=True) if how is not None else why
        if why is not None:
            raise HeadLost(f"the Ray head on {self.state.layout.nodes[0].host} (rank 0) ended "
                           f"({why}): the cluster is gone, so {consequence}")
        if how is not None:
            self.state.gcs.bring_back(head, how, self.state.ledger, consequence)

    def node_lost(self, rank: int, why: str) -> None:
        """Log a lost node once; stop the job if --fail-fast says so."""
        ledger = self.state.ledger
        if not ledger.lose(rank, why):
            return
        where = self.name(rank)
        self.log.error("%s lost its Ray node: %s", where, why)
        if self.options.fail_fast:
            raise JobError(f"stopping the job (--fail-fast): {where} lost its Ray node")
        if ledger.ready:
            self.log.info("the job goes on with the remaining %d node(s) (--fail-fast would "
                          "stop it)", len(ledger.members))


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
        self.read_mpi = threads_ok
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
                self.watch.tick(self.read_mpi)
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
        return self.error

