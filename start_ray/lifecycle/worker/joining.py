"""How a worker rank's node joins the cluster: the first join, a late one
(--min-nodes) and a rejoin after the node died (--rejoins) alike.

    check the head is reachable (once: a network mistake fails at once)
    wait for a join slot (rank 0's Go), unless among the first to join
    `ray start --address HEAD --block`, retried with backoff: on a loaded
        machine a join can fail with Ray's "timed out during startup", and a
        second try usually succeeds; until the deadline, or, with none (a
        late join), until rank 0 says Stop, each attempt with --join-timeout
    Joined to rank 0 (which frees the slot for the next rank)
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Callable, List, Optional

from start_ray.errors import NodeError
from start_ray.host import network
from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import Channel, Launcher, Node, Owner
from start_ray.lifecycle.head import join_slots
from start_ray.mpi.messages import GO, Joined
from start_ray.node import raynode
from start_ray.options import Options
from start_ray.polling import wait_until
from start_ray.procs.signals import SignalInbox

# The longest pause between two attempts.
MOST_PAUSE = 30.0


class Joiner:
    """One worker rank's joins. Each round of its waits, `look()` reads
    rank 0's word (and raises helpers.HelperLost when a helper ended
    twice); `stopped()` says, purely, whether rank 0 ended the job."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 launcher: Launcher, inbox: SignalInbox, log: logging.Logger,
                 started: float, look: Callable[[], None],
                 stopped: Callable[[], bool]) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.owner, self.launcher, self.inbox, self.log = owner, launcher, inbox, log
        self.started, self.look, self.stopped = started, look, stopped

    def check_reach(self, address: str) -> None:
        """A worker that cannot open a connection to the head fails at once,
        naming both ends: retrying would only hide a network mistake."""
        my_node = self.agreed.my_node
        assert my_node is not None
        ip, _, port = address.rpartition(":")
        why = network.reach(ip, int(port), timeout=10.0)
        if why is not None:
            raise NodeError(
                f"cannot reach the Ray head at {address} (rank 0 on {self.agreed.head_host}) "
                f"from {self.agreed.host} ({my_node.ip}, {my_node.ip_source}): {why}; "
                "choose a network that connects the hosts with --interface NAME "
                f"(here: {network.interfaces()})")

    def join(self, address: str, deadline: Optional[float], rejoin: bool = False
             ) -> Optional[Node]:
        """Start a worker node, with retries; NodeError once the deadline is
        past. Without a deadline (a late join, --min-nodes) no attempt is cut
        by start_ray's clock: a slow node's `ray start` is left to finish (or
        to fail by Ray's own timeouts) until rank 0 says Stop; cutting it
        after --join-timeout kept a node that needs longer from ever joining.
        None: rank 0 ended the job meanwhile (e.g.
        the driver was done before this node had said it was up, though the
        GCS already counted it); that is no failure, and exiting non-zero
        here would give mpirun the wrong exit status. A rejoin waits for a
        slot while the joins are bounded."""
        if not self.wait_for_slot(deadline, rejoin=rejoin):
            return None
        attempt, pause, began = 0, 1.0, time.monotonic()
        while True:
            attempt += 1
            node = self.launcher.start_node(raynode.worker_args(address))
            try:
                node.wait_started(deadline or math.inf, self.options.poll_interval,
                                  self._look_or_abandon)
                now = time.monotonic()
                self.channel.send(0, Joined(attempt, now - self.started, now - began))
                self.log.info("%s the cluster at %s (attempt %d)",
                              "rejoined" if rejoin else "joined", address, attempt)
                return node
            except NodeError as err:
                if self.stopped():  # the rank says so, with rank 0's status
                    return None
                _, left = self.owner.stop(node)
                retry_at = time.monotonic() + pause * random.uniform(0.5, 1.0)
                if (deadline is not None and retry_at >= deadline) or left:
                    raise NodeError(f"attempt {attempt}: {err}") from None
                self.log.warning("attempt %d to join failed (%s); retrying", attempt, err)
                wait_until(lambda: self.stopped() or time.monotonic() >= retry_at,
                           self.options.poll_interval, look=self.look)
                if self.stopped():
                    return None
                self.inbox.raise_if_stopping()
                pause = min(pause * 2, MOST_PAUSE)

    def _look_or_abandon(self) -> None:
        """A start's round: rank 0's word; its Stop abandons the start."""
        self.look()
        if self.stopped():
            raise NodeError("start abandoned: the job is stopping")

    def wait_for_slot(self, deadline: Optional[float], rejoin: bool = False) -> bool:
        """Unless this rank is among the first to join (and not rejoining
        while joins are bounded), wait for rank 0's Go (join_slots.py).
        False: rank 0 ended the job meanwhile."""
        workers = self.agreed.node_count - 1
        slots = join_slots.slots_for(workers, self.options.join_slots)
        index = (self.agreed.node_index or 1) - 1
        if not join_slots.needs_go(index, workers, slots, rejoin=rejoin):
            return True
        began = time.monotonic()
        self.log.info("waiting for a join slot (%d node(s) join at a time)", slots)
        go: List[bool] = []

        def look() -> None:
            self.look()
            if self.channel.receive(GO, source=0) is not None:
                go.append(True)

        granted = wait_until(lambda: self.stopped() or bool(go), self.options.poll_interval,
                             deadline, look=look)
        if self.stopped():
            self.log.info("rank 0 ended the job while this rank waited to join")
            return False
        if not granted:
            raise NodeError("no join slot came before the deadline (--join-timeout)")
        self.log.info("got a join slot after %.1fs", time.monotonic() - began)
        return True
