"""Rank 0's bring-up: the Ray head, then the wait until every node is alive.

    start the head (ray start --head; --block only without the GCS store) and its node-table helper
    HeadRecord (address | error)  -- share -->  every rank
    wait until every planned node is alive in the GCS, at its planned address,
        reading Joined / Failed from the ranks (watch.Watch.read_news); a
        deadline names who is missing
    the payload's ClusterInfo

Each round of a wait is one `look` (the news, signals, helpers, the head:
the one place that reads, logs and fails) and one pure question (is every
node up?), which costs O(1): the readiness is kept as it changes, and only a
new look at the GCS's table costs O(nodes).
"""

from __future__ import annotations

import logging
import time
from typing import Any, FrozenSet, List, Sequence, Set

from start_ray.errors import JobError, NodeError
from start_ray.host.placement import NodePlan
from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.contracts import Channel, ClusterInfo, Launcher, Owner, Table
from start_ray.lifecycle.head.state import HeadState
from start_ray.lifecycle.head.watch import NODE_WATCH_INTERVAL, Watch
from start_ray.mpi.messages import HeadRecord
from start_ray.node import raynode
from start_ray.node.gcs_table import NodeInfo, summarize, total_resources
from start_ray.options import Options, nodes_needed
from start_ray.polling import wait_until
from start_ray.procs.signals import SignalInbox
from start_ray.record.events import HeadUp, JoinFailed, NeverJoined, NotJoinedYet
from start_ray.record.logs import LISTED_ON_CONSOLE

# While nodes join: a progress line at most this often, and the slowest joins named.
PROGRESS_EVERY = 10.0
SLOWEST_SHOWN = 3
# While the nodes join, rank 0 and the node-table helper look this often at
# most (a few seconds of start-up; every 0.2 s added ~0.3 s to the start).
START_POLL = 0.05
# Reading the node table costs ~N: while nodes join, it is read at most every
# N / TABLE_LOOKS_PER_SECOND seconds (1,000 nodes: every 2 s).
TABLE_LOOKS_PER_SECOND = 500.0


def table_interval(nodes: int, poll_interval: float) -> float:
    return max(poll_interval, nodes / TABLE_LOOKS_PER_SECOND)


class Progress:
    """`312/1000 nodes joined (41 s)`, at most every PROGRESS_EVERY seconds,
    and only when the count changed: readable at any N."""

    def __init__(self, total: int, started: float, log: Any) -> None:
        self.total, self.started, self.log = total, started, log
        self.shown = -1
        self.next_at = time.monotonic() + PROGRESS_EVERY

    def show(self, joined: int) -> None:
        now = time.monotonic()
        if now < self.next_at or joined == self.shown or joined >= self.total:
            return
        self.shown, self.next_at = joined, now + PROGRESS_EVERY
        self.log.info("%d/%d nodes joined (%.0f s)", joined, self.total, now - self.started)


class Readiness:
    """Which planned nodes are up: alive in the GCS's latest look and, for a
    worker, its `ray start` done (it said Joined). Kept as it changes."""

    def __init__(self, expected: Set[int]) -> None:
        self.expected = set(expected)
        self.failed: Set[int] = set()  # --min-nodes: the job goes on without these
        self.alive: FrozenSet[int] = frozenset()
        self.not_alive = set(self.expected)  # planned, not failed, not in the latest look
        self.not_joined = self.expected - {0}  # workers whose rank has not said Joined
        self.seen: Set[int] = set()  # alive or said Joined: the progress count
        self.version = -1

    def look_at(self, table: Table) -> None:
        """A new look at the table (O(nodes)), else nothing (O(1))."""
        if table.version == self.version:
            return
        self.version = table.version
        self.alive = table.alive() or frozenset()
        self.not_alive = {rank for rank in self.expected - self.failed
                          if rank not in self.alive}
        self.seen.update(rank for rank in self.alive if rank in self.expected)

    def joined(self, rank: int) -> None:
        self.not_joined.discard(rank)
        if rank in self.expected:
            self.seen.add(rank)

    def fail(self, rank: int) -> None:
        self.failed.add(rank)
        self.not_alive.discard(rank)
        self.not_joined.discard(rank)

    def all_said_joined(self) -> bool:
        return not self.not_joined

    def ready(self) -> bool:
        """Alive in the GCS, and each `ray start` done: one still starting
        does not heed SIGINT (a driver that ends at once would wait out the
        stop timeout)."""
        return not self.not_alive and not self.not_joined

    def up(self) -> Set[int]:
        """At the deadline: the nodes up (each `ray start` done)."""
        return {rank for rank in self.expected - self.failed
                if rank in self.alive and (rank == 0 or rank not in self.not_joined)}


class BringUp:
    """The head and the wait for every node (rank 0's start phase)."""

    def __init__(self, agreed: Agreement, options: Options, channel: Channel, owner: Owner,
                 launcher: Launcher, inbox: SignalInbox, state: HeadState, watch: Watch,
                 log: logging.Logger) -> None:
        self.agreed, self.options, self.channel = agreed, options, channel
        self.owner, self.launcher, self.inbox = owner, launcher, inbox
        self.state, self.watch, self.log = state, watch, log
        self.deadline = state.ledger.started + options.join_timeout

    def run(self) -> ClusterInfo:
        """The head, then every node, with a deadline; what the payload gets."""
        state, ledger = self.state, self.state.ledger
        try:
            self.log.info("starting the Ray head on %s", self.agreed.host)
            if self.options.no_auth:
                self.log.warning("authentication is OFF (--no-auth): anyone who can reach "
                                 "this job's ports can run code as you")
            address = self.start_head()
        except BaseException as err:
            self.channel.share(HeadRecord(error=f"{type(err).__name__}: {err}"))
            raise
        # The workers join while the head's raylet starts (the GCS serves already).
        self.channel.share(HeadRecord(address=address))
        state.address = address
        self.log.debug("the head's GCS serves at %s after %.1fs: the workers may join",
                       address, ledger.since_start())
        assert state.head is not None
        state.head.wait_started(self.deadline, self.options.poll_interval, self._look_and_read,
                                need_address=True)
        ledger.note(HeadUp(0, ledger.since_start()))
        self.log.info("Ray head is up at %s after %.1fs; Ray's own logs: %s",
                      address, ledger.since_attempt(), state.head.session_dir())
        nodes = self.wait_for_nodes(address)
        env = self.launcher.ray_env()
        env.update({"RAY_ADDRESS": address, "START_RAY_RUN_DIR": self.agreed.run_dir,
                    "START_RAY_NUM_NODES": str(len(nodes))})
        return ClusterInfo(address=address, nodes=nodes, run_dir=self.agreed.run_dir,
                           env=env, grace=self.agreed.plan.grace)

    def start_head(self) -> str:
        """The head's `ray start` and the node-table helper; the GCS's
        address once it serves. A head whose GCS store fails at start-up
        (RocksDB is alpha in Ray) starts again without it, with a warning."""
        state, my_node = self.state, self.agreed.my_node
        ip = my_node.ip if my_node and my_node.ip_given else None

        def start() -> str:
            state.head = None
            state.head = self.launcher.start_head(raynode.head_args(self.options.dashboard),
                                                  gcs_store=state.gcs.on)
            if state.table is None:
                state.table = self.launcher.node_table()
            address = state.head.wait_address(self.deadline, self.options.poll_interval,
                                              self._look, ip=ip)
            # as soon as it serves: it may die while the rest starts
            state.gcs.keep(state.head, address, self.owner.temp_dir)
            return address
        try:
            return start()
        except NodeError as err:
            if not state.gcs.without_store(state.head, err):
                raise
            return start()

    def _look(self) -> None:
        """During start-up a stopping signal, or a walltime warning, ends the
        job; so does a helper that ended twice."""
        self.inbox.raise_if_stopping(walltime_too=True)
        self.owner.check_helpers("rank 0 started the Ray head")

    def _look_and_read(self) -> None:
        """While the head finishes starting: the workers' news too, and its
        GCS (started again in place if it died)."""
        self.watch.read_news()  # into the ledger: the wait for the nodes starts from it
        self._look()
        self.watch.check_head("the Ray head could not start")

    def wait_for_nodes(self, address: str) -> List[NodeInfo]:
        """Until every rank's node is alive in the GCS and every worker rank
        said its `ray start` is done, or the deadline.

        The node table is read every `table_interval` (longer as N grows);
        when the last worker says it joined, once more at once."""
        layout, ledger = self.state.layout, self.state.ledger
        planned = layout.nodes
        workers = len(planned) - 1
        slots = self.state.slots.slots
        if workers:
            self.log.info("waiting for %d worker node(s) to join%s (deadline %gs)", workers,
                          f", {slots} at a time" if slots < workers else "",
                          self.options.join_timeout)
        table = self.state.table
        assert table is not None
        poll = min(self.options.poll_interval, START_POLL)
        table.watch(address, table_interval(len(planned), poll))
        readiness = Readiness(set(layout.node_ranks))
        for rank in ledger.joins:  # joined while the head's raylet started
            readiness.joined(rank)
        for rank in ledger.failed:
            readiness.fail(rank)
        progress = Progress(len(planned), ledger.started, self.log)
        need = nodes_needed(self.options.min_nodes, len(planned))
        asked = False  # the table asked to look at once (every rank said it joined)

        def look() -> None:
            """The round's one reading of the world: the ranks' news (which
            the readiness follows), signals, helpers, the head, the table."""
            nonlocal asked
            news = self.watch.read_news()
            for rank in news.joined:
                readiness.joined(rank)
            for rank in news.failed:
                readiness.fail(rank)
            self.inbox.raise_if_stopping(walltime_too=True)
            self.owner.check_helpers("rank 0 waited for the nodes to join")
            self.watch.check_head("the nodes that were joining cannot join")
            if len(planned) - len(readiness.failed) < need:  # --min-nodes out of reach
                raise JobError(f"{len(readiness.failed)} of {len(planned)} Ray node(s) "
                               f"could not start, and {need} are needed (--min-nodes): "
                               + layout.name_ranks(sorted(readiness.failed)))
            if not asked and readiness.all_said_joined():
                asked = True
                table.look_now()
            readiness.look_at(table)
            progress.show(len(readiness.seen))

        if wait_until(readiness.ready, poll, self.deadline, look=look):
            expected = readiness.expected - readiness.failed
        else:
            expected = self.enough(readiness, need)
        seen = table.nodes()  # the rows of the latest look (one that found every node up)
        nodes = [seen[rank] for rank in sorted(expected) if rank in seen]
        ledger.up(expected)
        for rank in sorted(expected - {0}):  # the rank may say so itself later, or never
            ledger.joined(rank)
        self.check_addresses(nodes)
        # from now on, a look now and then: every 2 s, or every N/500 s (a look
        # costs the helper and rank 0 ~N; 10,000 nodes: every 20 s)
        table.watch(address, table_interval(len(planned), NODE_WATCH_INTERVAL))
        # The READY block tells the story on the console (announce.py); these lines, the
        # rank's log (the slowest joins, at a size where they matter, the console too).
        self.log.debug("Workers are all running! %d node(s) alive after %.1fs: %s",
                       len(nodes), ledger.since_attempt(), summarize(total_resources(nodes)))
        self.log_joins(table)
        if len(nodes) <= LISTED_ON_CONSOLE:
            for node in nodes:
                self.log.debug("  node of rank %d on %s (%s): %s", node.rank, node.hostname,
                               node.ip, summarize(node.resources))
                self.log.debug("  ports of rank %d on %s: %s%s", node.rank, node.hostname,
                               self.head_ports(address) if node.rank == 0 else "",
                               node.describe_ports())
        return nodes

    def enough(self, readiness: Readiness, need: int) -> Set[int]:
        """At the deadline: the nodes up, if they are enough (--min-nodes, and
        the head among them); the others keep trying to join. Else JobError."""
        ledger, layout = self.state.ledger, self.state.layout
        up = readiness.up()
        missing = sorted(readiness.expected - up)
        if len(up) < need or 0 not in up:
            for rank in missing:
                if not ledger.has(rank, JoinFailed):
                    ledger.note(NeverJoined(rank, ledger.since_start()))
            short = (f"; {need} are needed (--min-nodes)" if self.options.min_nodes else "")
            raise JobError(
                f"timed out after {self.options.join_timeout:g}s: {len(missing)} of "
                f"{len(readiness.expected)} Ray node(s) did not join{short}: "
                + layout.name_ranks(missing))
        joining = [rank for rank in missing if rank not in readiness.failed]
        for rank in joining:
            ledger.note(NotJoinedYet(rank, ledger.since_start()))
        self.log.warning("%d of %d Ray node(s) joined by the deadline: the driver starts with "
                         "them (--min-nodes %g)%s", len(up), len(readiness.expected),
                         self.options.min_nodes,
                         "; still joining, counted in when they do: "
                         + layout.name_ranks(joining) if joining else "")
        return up

    def log_joins(self, table: Table) -> None:
        """The slowest joins, how many joined at once at most, what a look cost."""
        joins = self.state.ledger.joins
        slowest = sorted(joins.items(), key=lambda item: -item[1].took)[:SLOWEST_SHOWN]
        if len(joins) > 1:
            many = len(joins) > LISTED_ON_CONSOLE
            self.log.log(logging.INFO if many else logging.DEBUG,
                         "slowest joins: %s; at most %d node(s) joining at once", "; ".join(
                f"{self.state.layout.name_ranks([rank])} {joined.took:.1f}s (attempt "
                f"{joined.attempt}, up {joined.elapsed:.1f}s after its start)"
                for rank, joined in slowest), self.state.slots.peak)
        if table.look_took is not None:
            self.log.debug("one look at the node table (%d nodes) took %.1f ms",
                           len(self.state.layout.nodes), table.look_took * 1000)

    def head_ports(self, address: str) -> str:
        """The head's own ports besides the raylet's: GCS, client server, dashboard."""
        ports = [f"GCS {address.rpartition(':')[2]}"]
        node = self.launcher.node
        for name, option in (("client server", "--ray-client-server-port"),
                             ("dashboard", "--dashboard-port")):
            value = raynode.option_value(node.command, option) if node is not None else None
            if value:
                ports.append(f"{name} {value}")
        return ", ".join(ports) + ", "

    def check_addresses(self, nodes: List[NodeInfo]) -> None:
        wrong = misplaced(nodes, self.state.layout.nodes)
        if wrong:
            raise JobError("Ray node(s) registered with an unexpected address: " +
                           "; ".join(wrong))


def misplaced(nodes: Sequence[NodeInfo], planned: Sequence[NodePlan]) -> List[str]:
    """Every node must have registered with the address it was given: a node
    that Ray knows under another address strands its tasks. Nodes and plans
    meet by rank (with --min-nodes, the nodes up are any subset of the plan)."""
    plans = {plan.rank: plan for plan in planned}
    return [f"rank {node.rank} on {node.hostname}: {node.ip}, expected {plans[node.rank].ip}"
            for node in nodes
            if node.rank in plans and plans[node.rank].ip_given
            and node.ip != plans[node.rank].ip]
