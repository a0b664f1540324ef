"""Rank 0's part: the Ray head, the wait until every node is alive, the watch
over the nodes while the payload runs, and the end of the job for everyone.

    start the head (ray start --head --block) and its node-table reader
    HeadRecord (address | error)  -- share -->  every rank
    wait until every planned node is alive in the GCS, at its planned address,
        reading Joined / Failed from the ranks; a deadline names who is missing
    while the payload runs (keep_watch): Failed / Lost from the ranks, the
        GCS's word every NODE_WATCH_INTERVAL, the head's own GCS and raylet
    teardown: Stop to every rank, Done from every rank, one summary line
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Set

from . import join_slots, raynode, resources, summary
from .cluster_state import ClusterInfo, NodeInfo, NodeTable, summarize, total_resources
from .errors import JobError
from .handshake import wait_until
from .logs import level_for
from .join_slots import JoinSlots
from .messages import REPORT, Done, Failed, Go, HeadRecord, Joined, Lost, Message, Stop
from .raynode import RayNode
from .role import Role, Teardown

# How often rank 0 asks the GCS about the nodes while the driver runs (~30 ms).
NODE_WATCH_INTERVAL = 2.0
# How long teardown waits for the DONE of ranks whose node was lost (they may be dead).
LOST_RANK_PATIENCE = 3.0
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


class HeadRank(Role):
    """Rank 0: the head, readiness, the watch, and the teardown's summary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table: Optional[NodeTable] = None  # the GCS's node table, once the head runs
        self.head_core: List[Any] = []  # the head's gcs_server and raylet, once all are up
        self.lost: Set[int] = set()  # ranks whose Ray node was lost
        self.reports: Dict[int, Done] = {}  # teardown reports by rank
        self.joins: Dict[int, Joined] = {}  # what each worker rank said when it joined
        workers = self.agreed.node_ranks[1:]
        self.slots = JoinSlots(workers, join_slots.slots_for(len(workers),
                                                             self.options.join_slots))
        self.timeline = summary.Timeline(self.agreed, self.started)
        self._next_look = 0.0
        self.report_by = 0.0  # when the teardown's reports are due (stop_others)

    # ---------------------------------------------------------------- start
    def bring_up(self) -> ClusterInfo:
        """The head, then every node, with a deadline; what the payload gets."""
        try:
            self.log.info("starting the Ray head on %s", self.agreed.host)
            if self.options.no_auth:
                self.log.warning("authentication is OFF (--no-auth): anyone who can reach "
                                 "this job's ports can run code as you")
            for warning in resources.scale_warnings(
                    len(self.agreed.nodes), len(set(self.agreed.hosts)),
                    resources.open_files_limit(), resources.arp_limit()):
                self.log.warning("%s", warning)
            head = self.own.start_node(raynode.head_args(self.options.dashboard))
            self.table = self.own.node_table()
            my_node = self.agreed.my_node
            address = head.wait_address(self.deadline, self.options.poll_interval,
                                        self._stopping,
                                        ip=my_node.ip if my_node and my_node.ip_given else None)
        except BaseException as err:
            self.channel.share(HeadRecord(error=f"{type(err).__name__}: {err}"))
            raise
        # The workers join while the head's raylet starts (the GCS serves already).
        self.channel.share(HeadRecord(address=address))
        self.log.debug("the head's GCS serves at %s after %.1fs: the workers may join",
                       address, time.monotonic() - self.started)
        head.wait_started(self.deadline, self.options.poll_interval, self._start_news,
                          need_address=True)
        self.timeline.note(0, "head up")
        self.log.info("Ray head is up at %s after %.1fs; Ray's own logs: %s",
                      address, time.monotonic() - self.started, head.session_dir())
        if self.options.dashboard:
            self.log_dashboard(head)
        nodes = self.wait_for_nodes(address)
        self.head_core = head.core_processes()
        env = self.own.ray_env()
        env.update({"RAY_ADDRESS": address, "START_RAY_RUN_DIR": self.agreed.run_dir,
                    "START_RAY_NUM_NODES": str(len(nodes))})
        return ClusterInfo(address=address, nodes=nodes, run_dir=self.agreed.run_dir,
                           env=env, grace=self.agreed.plan.grace)

    def _stopping(self) -> bool:
        """During start-up a stopping signal, or a walltime warning, ends the
        job; so does a helper that ended twice."""
        self.inbox.raise_if_stopping(walltime_too=True)
        self.own.check_helpers("rank 0 started the Ray head")
        return False

    def _start_news(self) -> bool:
        """While the head finishes starting: the workers' news too."""
        self.read_news()
        return self._stopping()

    def log_dashboard(self, head: RayNode) -> None:
        port = raynode.option_value(head.command, "--dashboard-port")
        host = self.agreed.host
        self.log.info("Ray dashboard: http://127.0.0.1:%s on %s (bound to that host's "
                      "loopback only). From your own machine: ssh -N -L 8265:127.0.0.1:%s "
                      "%s, then open http://localhost:8265%s", port, host, port,
                      host, "; it asks for the job's token, which the driver finds "
                      "in $RAY_AUTH_TOKEN" if self.agreed.plan.auth_token else "")

    def wait_for_nodes(self, address: str) -> List[NodeInfo]:
        """Until every rank's node is alive in the GCS and every worker rank
        said its `ray start` is done, or the deadline.

        The node table is read every `table_interval` (longer as N grows);
        when the last worker says it joined, once more at once."""
        planned = self.agreed.nodes
        workers = len(planned) - 1
        if workers:
            self.log.info("waiting for %d worker node(s) to join%s (deadline %gs)", workers,
                          f", {self.slots.slots} at a time" if self.slots.slots < workers
                          else "", self.options.join_timeout)
        assert self.table is not None
        table = self.table
        poll = min(self.options.poll_interval, START_POLL)
        table.watch(address, table_interval(len(planned), poll))
        expected = set(self.agreed.node_ranks)
        alive: Dict[int, NodeInfo] = {}
        progress = Progress(len(planned), self.started, self.log)
        asked = False

        def all_alive() -> bool:
            nonlocal alive, asked
            self.read_news()
            self.inbox.raise_if_stopping(walltime_too=True)
            self.own.check_helpers("rank 0 waited for the nodes to join")
            if not asked and len(self.joins) == workers:
                asked = True
                table.look_now()
            alive = table.alive_ranks() or {}
            progress.show(len(expected & (alive.keys() | self.joins.keys())))
            # Alive in the GCS, and each `ray start` done: one still starting
            # does not heed SIGINT (a driver that ends at once would wait
            # out the stop timeout).
            return expected <= alive.keys() and len(self.joins) == workers

        if not wait_until(all_alive, poll, self.deadline):
            missing = sorted(expected - alive.keys())
            for rank in missing:
                if not self.timeline.noted(rank, "could not start its node"):
                    self.timeline.note(rank, "its node never joined")
            raise JobError(
                f"timed out after {self.options.join_timeout:g}s: {len(missing)} of "
                f"{len(expected)} Ray node(s) did not join: " + self.agreed.name_ranks(missing))
        nodes = [alive[rank] for rank in sorted(expected)]
        for rank in sorted(expected - {0}):  # the rank may say so itself later, or never
            self.timeline.joined(rank)
        self.check_addresses(nodes)
        table.watch(address, NODE_WATCH_INTERVAL)  # from now on, a look now and then
        self.log.info("Workers are all running! %d node(s) alive after %.1fs: %s",
                      len(nodes), time.monotonic() - self.started,
                      summarize(total_resources(nodes)))
        self.log_joins(table)
        for node in nodes:
            self.log.log(level_for(len(nodes)), "  node of rank %d on %s (%s): %s",
                         node.rank, node.hostname, node.ip, summarize(node.resources))
        for node in nodes:
            self.log.log(level_for(len(nodes)), "  ports of rank %d on %s: %s%s", node.rank,
                         node.hostname, self.head_ports(address) if node.rank == 0 else "",
                         node.describe_ports())
        return nodes

    def log_joins(self, table: NodeTable) -> None:
        """The slowest joins, how many joined at once at most, what a look cost."""
        slowest = sorted(self.joins.items(), key=lambda item: -item[1].took)[:SLOWEST_SHOWN]
        if len(self.joins) > 1:
            self.log.info("slowest joins: %s; at most %d node(s) joining at once", "; ".join(
                f"{self.agreed.name_ranks([rank])} {joined.took:.1f}s (attempt "
                f"{joined.attempt}, up {joined.elapsed:.1f}s after its start)"
                for rank, joined in slowest), self.slots.peak)
        if table.look_took is not None:
            self.log.debug("one look at the node table (%d nodes) took %.1f ms",
                           len(self.agreed.nodes), table.look_took * 1000)

    def grant_after(self, rank: int) -> None:
        """`rank`'s join ended: its slot goes to the next waiting rank(s)."""
        for granted in self.slots.finished(rank):
            self.channel.send(granted, Go())
            self.log.debug("join slot to rank %d (%d joining)", granted,
                           len(self.slots.in_flight))

    def head_ports(self, address: str) -> str:
        """The head's own ports besides the raylet's: GCS, client server, dashboard."""
        ports = [f"GCS {address.rpartition(':')[2]}"]
        node = self.own.node
        for name, option in (("client server", "--ray-client-server-port"),
                             ("dashboard", "--dashboard-port")):
            value = raynode.option_value(node.command, option) if node is not None else None
            if value:
                ports.append(f"{name} {value}")
        return ", ".join(ports) + ", "

    def check_addresses(self, nodes: List[NodeInfo]) -> None:
        """Every node registered with the address it was given: a node that
        Ray knows under another address strands its tasks."""
        wrong = [f"rank {node.rank} on {node.hostname}: {node.ip}, expected {plan.ip}"
                 for node, plan in zip(nodes, self.agreed.nodes)
                 if plan.ip_given and node.ip != plan.ip]
        if wrong:
            raise JobError("Ray node(s) registered with an unexpected address: " +
                           "; ".join(wrong))

    # ----------------------------------------------------------------- watch
    def read_news(self, act: bool = True) -> None:
        """Handle what the other ranks reported since the last look (in the
        teardown, `act=False`: only write it down)."""
        while True:
            news = self.channel.receive(REPORT)
            if news is None:
                return
            source, message = news
            self.record(source, message)
            if not act:
                continue
            where = self.agreed.name_ranks([source])
            if isinstance(message, Joined):
                self.joins[source] = message
                self.grant_after(source)
                self.log.debug("%s joined after %.1fs (attempt %d)", where,
                               message.elapsed, message.attempt)
            elif isinstance(message, Failed):
                self.grant_after(source)
                raise JobError(f"{where} could not start its Ray node: {message.error}"
                               if message.starting else f"{where} failed: {message.error}")
            elif isinstance(message, Lost):
                self.node_lost(source, message.error)

    def record(self, source: int, message: Message) -> None:
        """Write a rank's news into the timeline (and keep its Done)."""
        if isinstance(message, Joined):
            self.timeline.joined(source, message.attempt, message.elapsed)
        elif isinstance(message, Failed):
            self.timeline.note(source, f"could not start its node: {message.error}"
                               if message.starting else f"failed: {message.error}")
        elif isinstance(message, Lost):
            self.timeline.note(source, f"lost its node: {message.error}")
        elif isinstance(message, Done):  # also from a rank that stopped on its own
            self.reports[source] = message
            self.timeline.note(source, f"stopped; left: {message.left}" if message.left
                               else "stopped, none left")

    def keep_watch(self) -> None:
        """While the payload runs: news from the ranks, and every few seconds
        the GCS's word on the nodes (a rank that died, e.g. under `mpirun
        --enable-recovery`, reports nothing itself)."""
        self.read_news()
        self.own.check_helpers("the driver ran")
        if not self.head_alive():
            raise JobError("the Ray head's GCS server or raylet ended: the cluster is "
                           "gone, so the driver is stopped now")
        if self.table is None or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + NODE_WATCH_INTERVAL
        alive = self.table.alive_ranks()
        if alive is None:
            return
        for rank in sorted(set(self.agreed.node_ranks) - alive.keys() - self.lost):
            self.node_lost(rank, "the GCS reports its node dead")

    def head_alive(self) -> bool:
        """Whether the head's GCS server and raylet still run (cheap: /proc)."""
        return all(process.is_running() for process in self.head_core)

    def node_lost(self, rank: int, why: str) -> None:
        """Log a lost node once; stop the job if --fail-fast says so."""
        if rank in self.lost:
            return
        self.lost.add(rank)
        if not self.timeline.noted(rank, "lost its node"):
            self.timeline.note(rank, f"lost its node: {why}")
        where = self.agreed.name_ranks([rank])
        self.log.error("%s lost its Ray node: %s", where, why)
        if self.options.fail_fast:
            raise JobError(f"stopping the job (--fail-fast): {where} lost its Ray node")
        self.log.info("the job goes on with the remaining %d node(s) (--fail-fast would "
                      "stop it)", len(self.agreed.nodes) - len(self.lost))

    # -------------------------------------------------------------- teardown
    def stop_others(self, status: int, deadline: float) -> None:
        """Every other rank stops first, while the head is still up: a raylet
        whose GCS is already gone spends its whole stop timeout retrying to
        unregister. Then hear from every rank with a node that its processes
        are gone (the other ranks' Done is collected while the head stops:
        `report`)."""
        self.report_by = deadline
        if self.table is not None:
            self.own.close_node_table(self.table)
        if self.agreed.size == 1:
            return
        self.log.info("stopping Ray on all %d ranks", self.agreed.size)
        for rank in range(1, self.agreed.size):
            self.channel.send(rank, Stop(status, together=not self.lost))
        self.collect_done(deadline, set(self.agreed.node_ranks) - {0})

    def collect_done(self, deadline: float, ranks: Optional[Set[int]] = None) -> None:
        """The Done of `ranks` (all others by default), until the deadline.
        Ranks whose node was lost may be dead themselves: they get
        LOST_RANK_PATIENCE seconds."""
        lost_by = time.monotonic() + LOST_RANK_PATIENCE
        ranks = self.others() if ranks is None else ranks

        def heard_all() -> bool:
            self.read_news(act=False)  # a late Failed or Lost changes nothing now
            waiting = ranks - self.reports.keys()
            if time.monotonic() >= lost_by:
                waiting -= self.lost_ranks()
            return not waiting

        wait_until(heard_all, self.options.poll_interval, deadline)

    def others(self) -> Set[int]:
        return set(range(1, self.agreed.size))

    def lost_ranks(self) -> Set[int]:
        """The ranks served by lost nodes (a lost host takes all its ranks)."""
        return {rank for node in self.agreed.nodes if node.rank in self.lost
                for rank in node.ranks}

    def leave_by(self, latest: float) -> Optional[float]:
        """When every other rank reported its teardown and none was lost,
        they are all about to wait for rank 0: a short wait."""
        if self.agreed.size == 1 or self.lost or not self.reports.keys() >= self.others():
            return None
        return time.monotonic() + LOST_RANK_PATIENCE

    def report(self, teardown: Teardown) -> None:
        """One line on how the whole job's teardown went; then summary.txt."""
        self.collect_done(self.report_by)  # the ranks without a node
        silent = sorted(self.others() - self.reports.keys() - self.lost_ranks())
        dirty = [f"rank {rank}: {report.left}" for rank, report in sorted(self.reports.items())
                 if report.left] + (["rank 0"] if teardown.left else [])
        if silent:
            self.log.error("no teardown report from %s", self.agreed.name_ranks(silent))
        if dirty:
            self.log.error("processes left after teardown: %s", "; ".join(dirty))
        if not silent and not dirty:
            total = teardown.stopped + sum(report.stopped for report in self.reports.values())
            self.log.info("all Ray processes stopped (%d process(es) on %d rank(s), none "
                          "left) in %.1fs", total, self.agreed.size,
                          time.monotonic() - teardown.began)
        self.timeline.note(0, f"stopped; left: {', '.join(teardown.left)}" if teardown.left
                           else "stopped, none left")
        for rank in sorted(self.others() - self.reports.keys()):
            self.timeline.note(rank, "no teardown report")
        try:
            path = summary.write(self.timeline, teardown.status, teardown.cause)
        except Exception as err:  # the summary never changes the job's status
            self.log.error("could not write the run's summary: %s", err)
            return
        self.log.info("summary of the run: %s", path)
