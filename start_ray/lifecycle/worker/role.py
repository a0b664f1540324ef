"""Every other rank's part: reach the head, join, stay out of the way until
rank 0 says Stop (bringing a node that died back, --rejoins), report.

    start   HeadRecord from rank 0 (its address, or why the head failed);
            a rank that starts a node joins (joining.py: Joined, or Failed
            with Ray's words; with --min-nodes it keeps trying past the
            deadline, and is counted in late)
    serve   wait quietly for Stop; a node that ends meanwhile is Lost, and,
            while the rank has rejoins left (and no --fail-fast), its remains
            are stopped and it joins anew under the join rules
    stop    (lifecycle): stop own processes, then Done to the host's leader;
            a leader hears its host's ranks and sends rank 0 one HostDone

Each wait is rounds of one `look` (Stop, signals, helpers: what this rank
reads, logs and fails on) and a pure question about what it has read.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence

from start_ray.errors import EXIT_FAILURE, NodeError
from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import (
    Channel,
    Launcher,
    Node,
    Owner,
    Parted,
    Started,
    Teardown,
)
from start_ray.lifecycle.worker.joining import Joiner
from start_ray.mpi.messages import (
    REPORT,
    Done,
    Failed,
    HeadRecord,
    HostDone,
    Lost,
    Stop,
)
from start_ray.mpi.ranks import RankSet
from start_ray.options import Options
from start_ray.polling import wait_until
from start_ray.procs.helpers import HelperLost
from start_ray.procs.signals import SignalInbox, is_stopping

# After a stopping signal, how long past the driver's grace and the teardown
# a rank waits for rank 0's Stop before it stops on its own.
STOP_SLACK = 15.0
# A leader waits for its host's ranks' Done this long past its own teardown
# (they stop at the same time); when a rank is lost, at most LOST_PATIENCE.
HOST_SLACK = 5.0
LOST_PATIENCE = 3.0


class WorkerRank:
    """A rank other than 0: joins (if it starts a node), serves, follows rank 0."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 launcher: Launcher, inbox: SignalInbox, log: logging.Logger,
                 started: float) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.owner, self.inbox, self.log = owner, inbox, log
        self.started = started  # time.monotonic() when the job began on this rank
        self.deadline = started + options.join_timeout  # for the whole cluster to be up
        self.status = 0  # this rank's exit status so far
        self.node: Optional[Node] = None  # this rank's node, once it joined
        self.address = ""  # the head's, from its HeadRecord
        self.rejoins = 0  # how often this rank's node came back
        self.losses = 0  # how often it died
        self.stop_message: Optional[Stop] = None  # rank 0's Stop, once received
        self.joiner = Joiner(agreed, options, channel, owner, launcher, inbox, log, started,
                             self.look, self.stopped)
        self.launcher = launcher

    def restarted(self, attempt: int, after: str, earlier: Sequence[Any]) -> None:
        """Rank 0 keeps the job's account of its attempts."""

    def start(self) -> Started:
        """Join the head (if this rank starts a node); whether to serve next
        (not when the head never came up: there is nothing to serve)."""
        serves = self._join()
        return Started(serves=serves, status=self.status)

    def _join(self) -> bool:
        if self.agreed.my_node is not None:
            self.launcher.prepare()  # Ray's imports while the head starts
        record: HeadRecord = self.channel.share(None)
        if record.error:  # rank 0 says why on the console; no N copies
            self.log.info("exiting: the Ray head could not start on rank 0 (%s): %s",
                          self.agreed.head_host, record.error)
            self.status = EXIT_FAILURE
            return False
        self.address = record.address
        if self.agreed.my_node is None:
            self.log.info("the Ray node of rank %d serves this rank too; waiting for the "
                          "end of the job", self.agreed.served_by)
            return True
        try:
            self.joiner.check_reach(record.address)
            # --min-nodes: a node may join late, so it keeps trying until Stop
            self.node = self.joiner.join(
                record.address, None if self.options.min_nodes else self.deadline)
        except (NodeError, HelperLost) as err:
            self.channel.send(0, Failed(str(err)))
            self.log.error("could not join the cluster at %s: %s", record.address, err)
            self.status = EXIT_FAILURE
        if self.node is None and self.stop_message is not None:
            self.log.info("rank 0 ended the job (status %d) while this rank was joining",
                          self.stop_message.status)
        return True

    def serve(self) -> None:
        """Stay out of the way until rank 0 says stop; bring the node back
        when it died and this rank lives (--rejoins)."""
        while not self.wait_for_stop(self.node):  # False: the node died
            assert self.node is not None
            error = (f"`ray start` exited with status {self.node.process.poll()}: "
                     f"{self.node.last_words()}")
            self.losses += 1
            if self.options.fail_fast or self.rejoins >= self.options.rejoins:
                self.channel.send(0, Lost(error))
                self.log.error("the Ray node of this rank ended: %s%s", error,
                               "; given up (--rejoins)" if self.rejoins else "")
                self.node = None
                continue
            self.rejoins += 1
            self.channel.send(0, Lost(error, rejoining=True))
            self.log.error("the Ray node of this rank ended: %s; starting it anew (rejoin "
                           "%d of at most %d)", error, self.rejoins, self.options.rejoins)
            try:
                self.node = self.rejoin()
            except (NodeError, HelperLost) as err:
                self.channel.send(0, Lost(f"could not rejoin: {err}"))
                self.log.error("could not rejoin the cluster: %s", err)
                self.node = None

    def rejoin(self) -> Optional[Node]:
        """What is left of the dead node goes (its process tree, as at
        teardown), then a fresh `ray start` joins under the join rules."""
        _, left = self.owner.stop(self.node)
        if left:
            raise NodeError(f"what was left of the node would not stop: {', '.join(left)}")
        return self.joiner.join(self.address, time.monotonic() + self.options.join_timeout,
                                rejoin=True)

    def logs_wanted(self) -> bool:
        return self.losses > 0 or (self.stop_message is not None and
                                   self.stop_message.status != 0)

    def stop_others(self, status: int, deadline: float, restart: int = 0) -> Parted:
        """Nothing: rank 0 stops the others (and its Stop says whether all
        restart: `restart_said`)."""
        return Parted(restart=0)

    def restart_said(self) -> Optional[int]:
        """The attempt rank 0's Stop said every rank begins next (0: none),
        None when no Stop came."""
        return self.stop_message.restart if self.stop_message is not None else None

    def timeline(self) -> Sequence[Any]:
        return []

    @property
    def stop_status(self) -> Optional[int]:
        return self.stop_message.status if self.stop_message is not None else None

    def look(self) -> None:
        """While joining: rank 0's Stop, if it came, and the helpers (raises
        helpers.HelperLost for one that ended twice)."""
        self.owner.check_helpers("this rank joined the cluster")
        self.read_stop()

    def read_stop(self) -> None:
        if self.stop_message is None:
            self.stop_message = self.channel.stop_news()

    def stopped(self) -> bool:
        """Whether rank 0 said Stop (as of the last look)."""
        return self.stop_message is not None

    def wait_for_stop(self, node: Optional[Node] = None) -> bool:
        """Wait quietly for rank 0's Stop (True), or until `node` ends (False).
        A signal here (scancel hits every rank) does not stop us early: rank
        0 forwards it to the driver and needs the cluster until the driver is
        done; we wait at most for the driver's grace and the teardown after it."""
        stop_by: Optional[float] = None  # set by a stopping signal
        broken = False  # a helper is gone (rank 0 was told)
        gave_up = False  # no word from rank 0 after the signal

        def look() -> None:
            nonlocal stop_by, broken, gave_up
            if not broken:
                try:
                    self.owner.check_helpers("this rank waited for the end of the job")
                except HelperLost as err:  # rank 0 ends the job and says why
                    broken = True
                    self.channel.send(0, Failed(str(err), starting=False))
                    self.log.error("%s", err)
            signum = self.inbox.pop()
            if signum is not None and is_stopping(signum) and stop_by is None:
                stop_by = (time.monotonic() + self.agreed.plan.grace +
                           self.options.stop_timeout + STOP_SLACK)
                self.log.info("received a signal: waiting for rank 0 to stop the job")
            self.read_stop()
            if stop_by is not None and not self.stopped() and time.monotonic() >= stop_by:
                self.log.error("no word from rank 0 after the signal: stopping on my own")
                gave_up = True

        def ended() -> bool:  # the node died while the job goes on
            return node is not None and stop_by is None and not node.alive()

        wait_until(lambda: self.stopped() or gave_up or ended(),
                   self.options.poll_interval, look=look)
        return not ended() or self.stopped()

    def leave_by(self, latest: float) -> Optional[float]:
        """After rank 0's Stop (unless a rank is lost): until rank 0 too has
        stopped its processes, which it does after hearing from everyone. A
        rank that never served (the head did not start) has Stop now, after
        the flush: it must leave together too, or rank 0's parting barrier
        meets whatever collective this rank's program calls next (the API:
        MPI_ERR_TRUNCATE on rank 0)."""
        self.read_stop()
        if self.stop_message is None or not self.stop_message.together:
            return None
        return latest

    def report(self, teardown: Teardown) -> None:
        """Done to this host's leader; a leader hears its host's ranks and
        tells rank 0 how its whole host's teardown went, in one HostDone."""
        done = Done(teardown.stopped, ", ".join(teardown.left))
        if not self.channel.is_leader:
            self.channel.send(self.agreed.leader, done)
            return
        pending = set(self.agreed.host_ranks.without([self.rank]))
        stopped, reported = teardown.stopped, [self.rank]
        left = [f"rank {self.rank}: {done.left}"] if done.left else []
        together = self.stop_message is not None and self.stop_message.together
        deadline = teardown.began + self.options.stop_timeout + HOST_SLACK
        if not together:
            deadline = min(deadline, time.monotonic() + LOST_PATIENCE)

        def look() -> None:
            nonlocal stopped
            while True:
                news = self.channel.receive(REPORT)
                if news is None:
                    return
                source, message = news
                if isinstance(message, Done) and source in pending:
                    pending.discard(source)
                    reported.append(source)
                    stopped += message.stopped
                    if message.left:
                        left.append(f"rank {source}: {message.left}")

        wait_until(lambda: not pending, self.options.poll_interval, deadline, look=look)
        if pending:
            self.log.error("no teardown report from rank(s) %s of this host",
                           RankSet.of(pending).text())
        self.channel.send(0, HostDone(stopped, tuple(left), RankSet.of(reported),
                                      RankSet.of(pending)))

    @property
    def rank(self) -> int:
        return self.agreed.rank
