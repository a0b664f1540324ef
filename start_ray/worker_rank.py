"""Every other rank's part: reach the head, join, stay out of the way until
rank 0 says Stop, report Done.

    start   HeadRecord from rank 0 (its address, or why the head failed);
            a rank that starts a node: check the head is reachable, then
            `ray start --address HEAD --block`, retried with backoff until the
            deadline (Joined, or Failed with Ray's words)
    serve   every rank: wait quietly for Stop; a node that ends meanwhile is Lost
    stop    (lifecycle): stop own processes, then Done
"""

from __future__ import annotations

import logging
import random
import time
from typing import Optional

from . import join_slots, network, raynode
from .agreement import Agreement
from .contracts import Channel, Launcher, Node, Owner
from .errors import EXIT_FAILURE, NodeError
from .handshake import wait_until
from .helpers import HelperLost
from .messages import GO, STOP, Done, Failed, HeadRecord, Joined, Lost, Stop
from .options import Options
from .role import Teardown
from .signals import SignalInbox, is_stopping

# After a stopping signal, how long past the driver's grace and the teardown
# a rank waits for rank 0's Stop before it stops on its own.
STOP_SLACK = 15.0


class WorkerRank:
    """A rank other than 0: joins (if it starts a node), serves, follows rank 0."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 launcher: Launcher, inbox: SignalInbox, log: logging.Logger,
                 started: float) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.owner, self.launcher, self.inbox, self.log = owner, launcher, inbox, log
        self.started = started  # time.monotonic() when the job began on this rank
        self.deadline = started + options.join_timeout  # for the whole cluster to be up
        self.status = 0  # this rank's exit status so far
        self.node: Optional[Node] = None  # this rank's node, once it joined
        self.stop_message: Optional[Stop] = None  # rank 0's Stop, once received

    def start(self) -> bool:
        """Join the head (if this rank starts a node); whether to serve next
        (False: the head never came up, there is nothing to serve)."""
        if self.agreed.my_node is not None:
            self.launcher.prepare()  # Ray's imports while the head starts
        record: HeadRecord = self.channel.share(None)
        if record.error:  # rank 0 says why on the console; no N copies
            self.log.info("exiting: the Ray head could not start on rank 0 (%s): %s",
                          self.agreed.hosts[0], record.error)
            self.status = EXIT_FAILURE
            return False
        if self.agreed.my_node is None:
            leader = next(node for node in self.agreed.nodes if self.agreed.rank in node.ranks)
            self.log.info("the Ray node of rank %d serves this rank too; waiting for the "
                          "end of the job", leader.rank)
            return True
        try:
            self.check_reach(record.address)
            self.node = self.join(record.address)
        except (NodeError, HelperLost) as err:
            self.channel.send(0, Failed(str(err)))
            self.log.error("could not join the cluster at %s: %s", record.address, err)
            self.status = EXIT_FAILURE
        return True

    def serve(self) -> None:
        """Stay out of the way until rank 0 says stop (wait_for_stop)."""
        self.wait_for_stop(self.node)

    def check_reach(self, address: str) -> None:
        """A worker that cannot open a connection to the head fails at once,
        naming both ends: retrying would only hide a network mistake."""
        my_node = self.agreed.my_node
        assert my_node is not None
        ip, _, port = address.rpartition(":")
        why = network.reach(ip, int(port), timeout=10.0)
        if why is not None:
            raise NodeError(
                f"cannot reach the Ray head at {address} (rank 0 on {self.agreed.hosts[0]}) "
                f"from {self.agreed.host} ({my_node.ip}, {my_node.ip_source}): {why}; "
                "choose a network that connects the hosts with --interface NAME "
                f"(here: {network.interfaces()})")

    def join(self, address: str) -> Optional[Node]:
        """Start a worker node; retry with backoff until the deadline.

        On a loaded machine a join can fail with Ray's "timed out during
        startup"; a second try then usually succeeds. None: rank 0 ended the
        job meanwhile (e.g. the driver was done before this node had said it
        was up, though the GCS already counted it); that is no failure, and
        exiting non-zero here would give mpirun the wrong exit status.
        """
        if not self.wait_for_slot():
            return None
        attempt, pause, began = 0, 1.0, time.monotonic()
        while True:
            attempt += 1
            node = self.launcher.start_node(raynode.worker_args(address))
            try:
                node.wait_started(self.deadline, self.options.poll_interval, self.told_to_stop)
                now = time.monotonic()
                self.channel.send(0, Joined(attempt, now - self.started, now - began))
                self.log.info("joined the cluster at %s (attempt %d)", address, attempt)
                return node
            except NodeError as err:
                if self.stop_message is not None:
                    self.log.info("rank 0 ended the job (status %d) while this rank was "
                                  "joining", self.stop_message.status)
                    return None
                _, left = self.owner.stop(node)
                retry_at = time.monotonic() + pause * random.uniform(0.5, 1.0)
                if retry_at >= self.deadline or left:
                    raise NodeError(f"attempt {attempt}: {err}") from None
                self.log.warning("attempt %d to join failed (%s); retrying", attempt, err)
                self.pause_until(retry_at)
                if self.stop_message is not None:
                    return None
                self.inbox.raise_if_stopping()
                pause = min(pause * 2, 30.0)

    def wait_for_slot(self) -> bool:
        """Unless this rank is among the first to join, wait for rank 0's Go
        (join_slots.py). False: rank 0 ended the job meanwhile."""
        workers = self.agreed.node_ranks[1:]
        slots = join_slots.slots_for(len(workers), self.options.join_slots)
        if self.agreed.rank in join_slots.first(workers, slots):
            return True
        began = time.monotonic()
        self.log.info("waiting for a join slot (%d node(s) join at a time)", slots)
        granted = wait_until(lambda: self.told_to_stop() or
                             self.channel.receive(GO, source=0) is not None,
                             self.options.poll_interval, self.deadline)
        if self.stop_message is not None:
            self.log.info("rank 0 ended the job while this rank waited to join")
            return False
        if not granted:
            raise NodeError("no join slot came before the deadline (--join-timeout)")
        self.log.info("got a join slot after %.1fs", time.monotonic() - began)
        return True

    def job_failed(self) -> bool:
        return self.stop_message is not None and self.stop_message.status != 0

    def stop_others(self, status: int, deadline: float) -> None:
        """Nothing: rank 0 stops the others."""

    def pause_until(self, when: float) -> None:
        """Back off before a retry, but not past a Stop from rank 0."""
        wait_until(lambda: self.told_to_stop() or time.monotonic() >= when,
                   self.options.poll_interval)

    def told_to_stop(self) -> bool:
        """While joining: whether rank 0 said Stop (raises HelperLost for a
        helper that ended twice: this rank's waits look at its helpers too)."""
        self.owner.check_helpers("this rank joined the cluster")
        return self._stop_received()

    def _stop_received(self) -> bool:
        if self.stop_message is None:
            news = self.channel.receive(STOP, source=0)
            if news is not None:
                self.stop_message = news[1]
        return self.stop_message is not None

    def wait_for_stop(self, node: Optional[Node] = None) -> None:
        """Wait quietly for rank 0's Stop. Report a lost node once. A signal
        here (scancel hits every rank) does not stop us early: rank 0 forwards
        it to the driver and needs the cluster until the driver is done; we
        wait at most for the driver's grace and the teardown after it."""
        stop_by: Optional[float] = None
        reported = broken = False

        def check() -> bool:
            nonlocal stop_by, reported, broken
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
            if node is not None and not node.alive() and not reported:
                reported = True
                error = f"`ray start` exited with status {node.process.poll()}: {node.last_words()}"
                self.channel.send(0, Lost(error))
                self.log.error("the Ray node of this rank ended: %s", error)
            if stop_by is not None and time.monotonic() >= stop_by:
                self.log.error("no word from rank 0 after the signal: stopping on my own")
                return True
            return self._stop_received()

        wait_until(check, self.options.poll_interval)

    def leave_by(self, latest: float) -> Optional[float]:
        """After rank 0's Stop (unless a rank is lost): until rank 0 too has
        stopped its processes, which it does after hearing from everyone."""
        if self.stop_message is None or not self.stop_message.together:
            return None
        return latest

    def report(self, teardown: Teardown) -> None:
        """Tell rank 0 how this rank's teardown went."""
        self.channel.send(0, Done(teardown.stopped, ", ".join(teardown.left)))
