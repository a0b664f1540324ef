"""The life of one job, on every rank: start Ray, run the payload on rank 0,
stop exactly what was started. The command line and the Python API are thin
layers over `run`.

    rank 0                                   rank 1..N-1
    ------                                   -----------
    plan (run id, token, head IP) -- share -> plan
    probes (host, CPUs, IP) <-- allgather --> probes; the same placement on
                                             every rank: one node per host
    start head (ray start --head --block)
    head record (address | error) -- share -> head record
    wait until every node alive (GCS) <-- host leaders join (ray start
                                        --address --block), retried with
                                        backoff until the deadline
    payload (the driver) runs               wait quietly for STOP (all ranks)
    STOP ----------------------------------> stop own process tree
    stop own process tree
    collect DONE  <------------------------- DONE (what was stopped, what is left)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import random
import secrets
import socket
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import (auth, handshake, launcher, logs, network, placement, proctree, raynode,
               resources, tempdirs, watchdog)
from .cluster_state import NodeInfo, NodeTable, summarize
from .handshake import REPORT, STOP, Channel, Message, share, wait_until
from .options import Options, UsageError
from .placement import NodePlan
from .raynode import NodeError, RayNode
from .signals import Interrupted, SignalInbox, is_stopping

EXIT_USAGE = 2
EXIT_FAILURE = 1
# How often rank 0 asks the GCS about the nodes while the driver runs (~30 ms).
NODE_WATCH_INTERVAL = 2.0
# In the environment of every process a rank starts: finds any that escaped.
JOB_MARKER = "START_RAY_JOB"


class JobError(RuntimeError):
    """The job cannot go on (the cluster did not come up, or a node was lost
    under --fail-fast); the message says which rank and why."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Made by rank 0 before anything starts; the same on every rank."""

    run_id: str
    job_tag: str
    auth_token: Optional[str] = dataclasses.field(repr=False)  # None: auth off
    head_ip: str = ""
    grace: float = 30.0  # the driver's grace after SIGTERM, within Slurm's KillWait
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What the payload (the driver, or an API user's code) gets to know."""

    address: str
    nodes: List[NodeInfo]
    run_dir: str
    env: Dict[str, str] = dataclasses.field(repr=False)
    grace: float = 30.0  # seconds the driver gets after a stopping signal

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def resources(self) -> Dict[str, float]:
        return total_resources(self.nodes)


Payload = Callable[[ClusterInfo, SignalInbox, Callable[[], None]], int]


class JobFailed(RuntimeError):
    """The job could not start, or was stopped while starting; every rank
    has already stopped what it started. `status` is the exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def run(options: Options, payload: Payload, comm: Any = None,
        check: Callable[[], None] = lambda: None) -> int:
    """Run one job on this rank and return this rank's exit status: the
    cluster comes up, rank 0 runs `payload`, everything is stopped.

    `check` runs on rank 0 before anything starts and raises UsageError for
    bad input; the error then reaches every rank, which all exit with 2.
    """
    job = Job(options, comm if comm is not None else handshake.world())
    with SignalInbox([options.walltime_signal]) as inbox:
        try:
            info = job.start(inbox, check)
        except UsageError as err:
            job.say_usage_error(err)
            return EXIT_USAGE
        except JobFailed as failed:
            return failed.status
        if info is None:  # a worker rank: its whole part is done
            return job.status
        with job.guard():
            job.end(payload(info, inbox, job.keep_watch))
    return job.status


class Job:
    """One rank's part of the job, and everything it started."""

    def __init__(self, options: Options, comm: Any) -> None:
        self.options = options
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self.host = socket.gethostname()
        self.hosts: List[str] = [self.host]
        self.nodes: List[NodePlan] = []  # the placement: the same on every rank
        self.my_node: Optional[NodePlan] = None  # the node this rank starts
        self.channel = Channel(comm)
        self.log = logs.get()
        self.plan: Optional[Plan] = None
        self.run_dir = ""
        self.temp_dir: Optional[str] = None
        self.node: Optional[RayNode] = None
        self.started = time.monotonic()
        self.deadline = self.started + options.join_timeout
        self._stop: Optional[dict] = None  # rank 0's STOP message, once received
        self._ended = False
        self.status = EXIT_FAILURE  # this rank's exit status, once ended
        self.watchdog: Optional[watchdog.Watchdog] = None
        self.sessions: List[Tuple[int, int]] = []  # (leader, start time) of our children
        self.table: Optional[NodeTable] = None  # rank 0: the GCS's node table
        self.lost: set = set()  # ranks whose Ray node was lost
        self.head_core: list = []  # rank 0: the head's gcs_server and raylet
        self._next_look = 0.0
        self.failure: Optional[str] = None
        self.grace_note = ""

    # ----------------------------------------------------------------- begin
    def begin(self, check: Callable[[], None]) -> None:
        """Agree on the plan, then set up logs and the temp dir. Nothing runs yet."""
        plan = None
        if self.rank == 0:
            error, head_ip = None, ""
            try:
                check()
                self.preflight()
                head_ip, _ = network.choose_address(self.options.interface, None)
            except (UsageError, network.AddressError) as err:
                error = str(err)
            plan = Plan(run_id=logs.new_run_id(), job_tag=secrets.token_hex(4),
                        auth_token=None if self.options.no_auth else auth.new_token(),
                        head_ip=head_ip, grace=self.grace_within_kill_wait(), error=error)
        self.plan = share(self.comm, plan, self.options.poll_interval)
        if self.plan.error:
            raise UsageError(self.plan.error)
        self.place()
        self.run_dir = logs.run_dir(self.options.log_dir, self.plan.run_id)
        self.log = logs.setup(self.run_dir, self.rank, self.size)
        if self.rank == 0:
            self.log.info("run %s: %d rank(s) on %d host(s); logs in %s", self.plan.run_id,
                          self.size, len(set(self.hosts)), self.run_dir)
            self.log.info("started by %s%s", launcher.launcher_name(),
                          f" in {launcher.scheduler()}" if launcher.scheduler() else "")
            self.log_placement()
            if self.grace_note:
                self.log.info("%s", self.grace_note)
        if self.my_node is None:  # this rank starts nothing
            return
        proctree.become_subreaper()
        proctree.add_listener(self.started_session)
        self.watchdog = watchdog.Watchdog(
            JOB_MARKER, self.marker, logs.file_path(self.run_dir, self.rank, self.size),
            logs.label(self.rank, self.size))
        root, why = tempdirs.choose_root(self.options.temp_dir, self.plan.job_tag, self.rank)
        self.temp_dir = tempdirs.rank_dir(root, self.plan.job_tag, self.rank)
        tempdirs.create(self.temp_dir)
        self.log.debug("start_ray %s, python %s, pid %d, watchdog pid %d, temp dir %s (%s); %s",
                       _version(), sys.executable, os.getpid(), self.watchdog.pid,
                       self.temp_dir, why, resources.raise_open_files_limit())

    def grace_within_kill_wait(self) -> float:
        """Slurm SIGKILLs every process KillWait seconds after its SIGTERM
        (scancel): the driver's grace and the teardown must fit in it."""
        kill_wait = launcher.slurm_kill_wait()
        grace = self.options.grace
        if kill_wait is not None and grace + self.options.stop_timeout + 5 > kill_wait:
            grace = max(0.0, kill_wait - self.options.stop_timeout - 5)
            self.grace_note = (f"the driver's grace is {grace:g}s, not {self.options.grace:g}s: "
                               f"Slurm kills the job {kill_wait:g}s (KillWait) after SIGTERM")
        return grace

    def place(self) -> None:
        """Gather what every rank sees of its host; decide (identically on
        every rank) which ranks start Ray nodes and with what. A host without
        a usable address is a UsageError on every rank, before anything runs."""
        assert self.plan is not None
        mine = placement.probe(self.rank, self.options.interface,
                               self.plan.head_ip if self.rank else None)
        probes = self.comm.allgather(mine) if self.size > 1 else [mine]
        self.hosts = [p.host for p in probes]
        self.nodes = placement.place(probes, self.options)
        self.my_node = placement.node_of(self.rank, self.nodes)

    def log_placement(self) -> None:
        how = "one per rank (--node-per-rank)" if self.options.node_per_rank else "one per host"
        self.log.info("placement: %d Ray node(s), %s", len(self.nodes), how)
        for node in self.nodes:
            self.log.log(20 if len(self.nodes) <= 16 else 10, "  %s", node.describe())

    def preflight(self) -> None:
        """Rank 0's checks of the whole job's settings, before anything starts."""
        launcher.check_world(self.size)
        if self.options.temp_dir:
            tempdirs.check_explicit_root(self.options.temp_dir, "0" * 8, self.size - 1)
        auth.check(self.options.no_auth)
        if self.options.dashboard and importlib.util.find_spec("aiohttp") is None:
            raise UsageError("--dashboard needs Ray's dashboard, which this Python does "
                             "not have: pip install 'ray[default]'")

    def ray_env(self) -> Dict[str, str]:
        """Environment of every Ray process: no MPI variables, no inherited
        RAY_ADDRESS, and the same auth settings everywhere (a leftover
        ~/.ray/auth_token otherwise turns auth on for the head alone)."""
        assert self.plan is not None
        env = launcher.child_environment({JOB_MARKER: self.marker})
        env.pop("RAY_ADDRESS", None)
        return auth.apply(env, self.plan.auth_token)

    def start_node(self, role_args: List[str]) -> RayNode:
        assert self.temp_dir is not None and self.my_node is not None
        args = raynode.common_args(self.temp_dir, self.rank,
                                   self.my_node.ray_args() + self.options.ray_args)
        env = self.ray_env()
        if self.my_node.cuda_visible is not None:  # the GPUs of all its ranks
            env["CUDA_VISIBLE_DEVICES"] = self.my_node.cuda_visible
        # Ray's processes ignore the walltime signal: it is for the driver,
        # but Slurm hands it to every process of the job.
        self.node = RayNode(role_args + args, env, self.temp_dir, self.options.ray_command,
                            ignored_signals=[self.options.walltime_signal])
        return self.node

    @property
    def node_ranks(self) -> List[int]:
        """The ranks that start a Ray node (rank 0 first)."""
        return [node.rank for node in self.nodes]

    @property
    def marker(self) -> str:
        """`<job tag>/<rank>`: per rank, since ranks on one host stop concurrently."""
        assert self.plan is not None
        return f"{self.plan.job_tag}/{self.rank}"

    def stop_own_processes(self) -> list:
        """Stop every process this rank started (all but the watchdog, which
        outlives them) and return those still running: in our tree, or
        anywhere in our sessions or with our marker (see proctree)."""
        keep = {self.watchdog.pid} if self.watchdog else set()
        left = proctree.stop_descendants(self.options.stop_timeout, exclude=keep,
                                         leaders=self.node_pids())
        return left + [p for p in proctree.owned(JOB_MARKER, self.marker, self.sessions)
                       if p not in left]

    def started_session(self, leader: int, began: int) -> None:
        self.sessions.append((leader, began))

    def node_pids(self) -> List[int]:
        return [self.node.process.pid] if self.node is not None else []

    # ------------------------------------------------------------------ rank 0
    def start(self, inbox: SignalInbox,
              check: Callable[[], None] = lambda: None) -> Optional[ClusterInfo]:
        """Bring the cluster up. Rank 0 gets the cluster's description back;
        the other ranks do their whole part (join, wait for STOP, stop) and
        get None. Raises UsageError (nothing started) or JobFailed (whatever
        started is stopped again)."""
        with self.guard():
            self.begin(check)
            if self.rank == 0:
                return self.bring_up(inbox)
            self.end(self.follow(inbox))
            return None
        raise JobFailed(self.failure or "start-up failed", self.status)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Failures inside end the job on this rank: expected ones (start-up
        errors, signals) are logged and stop what was started; anything else
        also aborts the MPI job, so that no rank waits for this one forever."""
        try:
            yield
        except UsageError:
            raise
        except (JobError, NodeError) as err:
            self.log.error("%s", err)
            self.failure = str(err)
            self.end(EXIT_FAILURE)
        except Interrupted as err:
            self.log.error("%s during start-up: stopping the job", err)
            self.failure = str(err)
            self.end(128 + err.signum)
        except BaseException:
            self.log.exception("start_ray failed on this rank; stopping its Ray processes")
            self.end(EXIT_FAILURE)
            self.abort()
            raise

    def bring_up(self, inbox: SignalInbox) -> ClusterInfo:
        """Rank 0: the head, then every node, with a deadline."""
        try:
            self.log.info("starting the Ray head on %s", self.host)
            if self.options.no_auth:
                self.log.warning("authentication is OFF (--no-auth): anyone who can reach "
                                 "this job's ports can run code as you")
            head = self.start_node(raynode.head_args(self.options.dashboard))
            self.table = NodeTable(self.ray_env())
            head.wait_started(self.deadline, self.options.poll_interval, _stopping(inbox),
                              need_address=True)
            address = head.address()
        except BaseException as err:
            share(self.comm, {"error": f"{type(err).__name__}: {err}"}, self.options.poll_interval)
            raise
        share(self.comm, {"address": address}, self.options.poll_interval)
        self.log.info("Ray head is up at %s after %.1fs; Ray's own logs: %s",
                      address, time.monotonic() - self.started, head.session_dir())
        if self.options.dashboard:
            self.log_dashboard(head)
        assert self.plan is not None
        nodes = self.wait_for_nodes(address, inbox)
        self.head_core = head.core_processes()
        return ClusterInfo(address=address, nodes=nodes, run_dir=self.run_dir,
                           env=self.driver_env(address, len(nodes)), grace=self.plan.grace)

    def log_dashboard(self, head: RayNode) -> None:
        port = raynode.option_value(head.command, "--dashboard-port")
        self.log.info("Ray dashboard: http://127.0.0.1:%s on %s (bound to that host's "
                      "loopback only). From your own machine: ssh -N -L 8265:127.0.0.1:%s "
                      "%s, then open http://localhost:8265%s", port, self.host, port,
                      self.host, "; it asks for the job's token, which the driver finds "
                      "in $RAY_AUTH_TOKEN" if self.plan and self.plan.auth_token else "")

    def wait_for_nodes(self, address: str, inbox: SignalInbox) -> List[NodeInfo]:
        """Until every rank's node is alive in the GCS, or the deadline."""
        if len(self.nodes) > 1:
            self.log.info("waiting for %d worker node(s) to join (deadline %gs)",
                          len(self.nodes) - 1, self.options.join_timeout)
        assert self.table is not None
        table = self.table
        table.watch(address, self.options.poll_interval)
        expected = set(self.node_ranks)
        alive: Dict[int, NodeInfo] = {}

        def all_alive() -> bool:
            nonlocal alive
            self.read_news()
            inbox.raise_if_stopping(walltime_too=True)
            alive = table.alive_ranks() or {}
            return expected <= alive.keys()

        if not wait_until(all_alive, self.options.poll_interval, self.deadline):
            missing = sorted(expected - alive.keys())
            raise JobError(
                f"timed out after {self.options.join_timeout:g}s: {len(missing)} of "
                f"{len(expected)} Ray node(s) did not join: " + self.name_ranks(missing))
        nodes = [alive[rank] for rank in sorted(expected)]
        self.check_addresses(nodes)
        table.watch(address, NODE_WATCH_INTERVAL)  # from now on, a look now and then
        elapsed = time.monotonic() - self.started
        self.log.info("Workers are all running! %d node(s) alive after %.1fs: %s",
                      len(nodes), elapsed, summarize(total_resources(nodes)))
        for node in nodes:
            self.log.log(20 if len(nodes) <= 16 else 10, "  node of rank %d on %s (%s): %s",
                         node.rank, node.hostname, node.ip, summarize(node.resources))
        return nodes

    def check_addresses(self, nodes: List[NodeInfo]) -> None:
        """Every node registered with the address it was given: a node that
        Ray knows under another address strands its tasks."""
        wrong = [f"rank {node.rank} on {node.hostname}: {node.ip}, expected {plan.ip}"
                 for node, plan in zip(nodes, self.nodes)
                 if plan.ip_given and node.ip != plan.ip]
        if wrong:
            raise JobError("Ray node(s) registered with an unexpected address: " +
                           "; ".join(wrong))

    def read_news(self) -> None:
        """Handle what the other ranks reported since the last look."""
        while True:
            news = self.channel.receive(REPORT)
            if news is None:
                return
            source, message = news
            kind = message.get("kind")
            where = self.name_ranks([source])
            if kind == "joined":
                self.log.debug("%s joined after %.1fs (attempt %d)", where,
                               message["elapsed"], message["attempt"])
            elif kind == "failed":
                raise JobError(f"{where} could not start its Ray node: {message['error']}")
            elif kind == "lost":
                self.node_lost(source, message["error"])

    def keep_watch(self) -> None:
        """While the payload runs: news from the ranks, and every few seconds
        the GCS's word on the nodes (a rank that died, e.g. under `mpirun
        --enable-recovery`, reports nothing itself)."""
        self.read_news()
        if not self.head_alive():
            raise JobError("the Ray head's GCS server or raylet ended: the cluster is "
                           "gone, so the driver is stopped now")
        if self.table is None or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + NODE_WATCH_INTERVAL
        alive = self.table.alive_ranks()
        if alive is None:
            return
        for rank in sorted(set(self.node_ranks) - alive.keys() - self.lost):
            self.node_lost(rank, "the GCS reports its node dead")

    def head_alive(self) -> bool:
        """Whether the head's GCS server and raylet still run (cheap: /proc)."""
        return all(process.is_running() for process in self.head_core)

    def node_lost(self, rank: int, why: str) -> None:
        """Log a lost node once; stop the job if --fail-fast says so."""
        if rank in self.lost:
            return
        self.lost.add(rank)
        where = self.name_ranks([rank])
        self.log.error("%s lost its Ray node: %s", where, why)
        if self.options.fail_fast:
            raise JobError(f"stopping the job (--fail-fast): {where} lost its Ray node")
        self.log.info("the job goes on with the remaining %d node(s) (--fail-fast would "
                      "stop it)", len(self.nodes) - len(self.lost))

    def driver_env(self, address: str, num_nodes: int) -> Dict[str, str]:
        env = self.ray_env()
        env.update({"RAY_ADDRESS": address, "START_RAY_RUN_DIR": self.run_dir,
                    "START_RAY_NUM_NODES": str(num_nodes)})
        return env

    def name_ranks(self, ranks: List[int]) -> str:
        return ", ".join(f"rank {r} ({self.hosts[r] if r < len(self.hosts) else '?'})"
                         for r in ranks)

    # --------------------------------------------------------------- rank > 0
    def follow(self, inbox: SignalInbox) -> int:
        """Join the head, then stay out of the way until rank 0 says stop."""
        record = share(self.comm, None, self.options.poll_interval)
        if "error" in record:  # rank 0 says why on the console; no N copies
            self.log.info("exiting: the Ray head could not start on rank 0 (%s): %s",
                           self.hosts[0] if self.hosts else "?", record["error"])
            return EXIT_FAILURE
        if self.my_node is None:
            leader = next(node for node in self.nodes if self.rank in node.ranks)
            self.log.info("the Ray node of rank %d serves this rank too; waiting for the "
                          "end of the job", leader.rank)
            self.wait_for_stop(inbox)
            return 0
        try:
            self.check_reach(record["address"])
            node = self.join(record["address"], inbox)
        except NodeError as err:
            self.channel.send(0, REPORT, {"kind": "failed", "error": str(err)})
            self.log.error("could not join the cluster at %s: %s", record["address"], err)
            self.wait_for_stop(inbox)
            return EXIT_FAILURE
        if node is not None:
            self.wait_for_stop(inbox, node)
        return 0

    def check_reach(self, address: str) -> None:
        """A worker that cannot open a connection to the head fails at once,
        naming both ends: retrying would only hide a network mistake."""
        assert self.my_node is not None
        ip, _, port = address.rpartition(":")
        why = network.reach(ip, int(port), timeout=10.0)
        if why is not None:
            raise NodeError(
                f"cannot reach the Ray head at {address} (rank 0 on {self.hosts[0]}) "
                f"from {self.host} ({self.my_node.ip}, {self.my_node.ip_source}): {why}; "
                "choose the network with --interface")

    def join(self, address: str, inbox: SignalInbox) -> Optional[RayNode]:
        """Start a worker node; retry with backoff until the deadline.

        On a loaded machine a join can fail with Ray's "timed out during
        startup"; a second try then usually succeeds. None: rank 0 ended the
        job meanwhile (e.g. the driver was done before this node had said it
        was up, though the GCS already counted it); that is no failure, and
        exiting non-zero here would give mpirun the wrong exit status.
        """
        attempt, pause = 0, 1.0
        while True:
            attempt += 1
            node = self.start_node(raynode.worker_args(address))
            try:
                node.wait_started(self.deadline, self.options.poll_interval, self.told_to_stop)
                self.channel.send(0, REPORT, {"kind": "joined", "attempt": attempt,
                                              "elapsed": time.monotonic() - self.started})
                self.log.info("joined the cluster at %s (attempt %d)", address, attempt)
                return node
            except NodeError as err:
                if self._stop is not None:
                    self.log.info("rank 0 ended the job while this rank was joining")
                    return None
                left = self.stop_own_processes()
                retry_at = time.monotonic() + pause * random.uniform(0.5, 1.0)
                if retry_at >= self.deadline or left:
                    raise NodeError(f"attempt {attempt}: {err}") from None
                self.log.warning("attempt %d to join failed (%s); retrying", attempt, err)
                self.pause_until(retry_at)
                if self._stop is not None:
                    return None
                inbox.raise_if_stopping()
                pause = min(pause * 2, 30.0)

    def pause_until(self, when: float) -> None:
        """Back off before a retry, but not past a STOP from rank 0."""
        wait_until(lambda: self.told_to_stop() or time.monotonic() >= when,
                   self.options.poll_interval)

    @property
    def stop_message(self) -> Optional[dict]:
        """Rank 0's STOP message (with the job's status), once received."""
        return self._stop

    def told_to_stop(self) -> bool:
        if self._stop is None:
            news = self.channel.receive(STOP, source=0)
            if news is not None:
                self._stop = news[1]
        return self._stop is not None

    def wait_for_stop(self, inbox: SignalInbox, node: Optional[RayNode] = None) -> None:
        """Wait quietly for rank 0's STOP. Report a lost node once. A signal
        here (scancel hits every rank) does not stop us early: rank 0 forwards
        it to the driver and needs the cluster until the driver is done; we
        wait at most for the driver's grace and the teardown after it."""
        stop_by: Optional[float] = None
        reported = False

        def check() -> bool:
            nonlocal stop_by, reported
            signum = inbox.pop()
            if signum is not None and is_stopping(signum) and stop_by is None:
                grace = self.plan.grace if self.plan else self.options.grace
                stop_by = time.monotonic() + grace + self.options.stop_timeout + 15
                self.log.info("received a signal: waiting for rank 0 to stop the job")
            if node is not None and not node.alive() and not reported:
                reported = True
                error = f"`ray start` exited with status {node.process.poll()}: {node.last_words()}"
                self.channel.send(0, REPORT, {"kind": "lost", "error": error})
                self.log.error("the Ray node of this rank ended: %s", error)
            if stop_by is not None and time.monotonic() >= stop_by:
                self.log.error("no word from rank 0 after the signal: stopping on my own")
                return True
            return self.told_to_stop()

        wait_until(check, self.options.poll_interval)

    # ------------------------------------------------------------------- end
    def end(self, status: int) -> None:
        """Stop everything this rank started, confirm it, and tidy up.

        Worker nodes stop first, while the head is still up: a raylet whose
        GCS is already gone spends its whole stop timeout retrying to
        unregister. Idempotent."""
        if self._ended or self.plan is None or self.plan.error:
            return
        self._ended = True
        self.status = status
        if self.table is not None:
            self.table.close()
        began = time.monotonic()
        report_by = began + self.options.stop_timeout + 15
        reports: Dict[int, Message] = {}
        if self.rank == 0 and self.size > 1:
            self.log.info("stopping Ray on all %d ranks", self.size)
            for rank in range(1, self.size):
                self.channel.send(rank, STOP, {"status": status})
            reports = self.collect_done(report_by)
        stopped = len(proctree.descendants()) - (1 if self.watchdog else 0)
        left = self.stop_own_processes()
        if left:
            self.log.error("%d process(es) would not stop: %s", len(left), proctree.describe(left))
        else:
            self.log.debug("stopped %d process(es); none left", stopped)
        if self.rank == 0:
            self.summarize_teardown(reports, stopped, left, began)
        else:
            self.channel.send(0, REPORT, {"kind": "done", "stopped": stopped,
                                          "left": proctree.describe(left)})
        self.channel.flush(report_by, self.options.poll_interval)
        if self.watchdog is not None:  # nothing left for it to clean up
            self.watchdog.stop()
        proctree.remove_listener(self.started_session)
        self.tidy(status == 0 and not left)
        if self.rank == 0:
            self.log.info("exit status %d", status)

    def collect_done(self, deadline: float) -> Dict[int, Message]:
        """Rank 0: hear from every rank that its processes are gone. Ranks
        whose node was lost may be dead themselves: they get a few seconds."""
        reports: Dict[int, Message] = {}
        lost_by = time.monotonic() + 3.0

        def heard_all() -> bool:
            while True:
                news = self.channel.receive(REPORT)
                if news is None:
                    waiting = set(range(1, self.size)) - reports.keys()
                    if time.monotonic() >= lost_by:
                        waiting -= self.lost_ranks()
                    return not waiting
                source, message = news
                if message.get("kind") == "done":
                    reports[source] = message

        wait_until(heard_all, self.options.poll_interval, deadline)
        return reports

    def lost_ranks(self) -> set:
        """The ranks served by lost nodes (a lost host takes all its ranks)."""
        return {rank for node in self.nodes if node.rank in self.lost for rank in node.ranks}

    def summarize_teardown(self, reports: Dict[int, Message], stopped: int,
                           left: list, began: float) -> None:
        silent = sorted(set(range(1, self.size)) - reports.keys() - self.lost_ranks())
        dirty = [f"rank {rank}: {report['left']}" for rank, report in sorted(reports.items())
                 if report["left"]] + (["rank 0"] if left else [])
        if silent:
            self.log.error("no teardown report from %s", self.name_ranks(silent))
        if dirty:
            self.log.error("processes left after teardown: %s", "; ".join(dirty))
        if not silent and not dirty:
            total = stopped + sum(report["stopped"] for report in reports.values())
            self.log.info("all Ray processes stopped (%d process(es) on %d rank(s), none "
                          "left) in %.1fs", total, self.size, time.monotonic() - began)

    def tidy(self, clean: bool) -> None:
        if self.temp_dir is None:
            return
        if clean and not self.options.keep_temp_dir:
            tempdirs.remove(self.temp_dir)
        else:
            self.log.info("Ray's temp dir and session logs are kept in %s", self.temp_dir)

    # ----------------------------------------------------------------- errors
    def say_usage_error(self, err: UsageError) -> None:
        """Once per job: by MPI rank 0, and, where MPI saw singletons, only
        by the launcher's task 0."""
        if self.rank == 0 and (self.size > 1 or launcher.launcher_rank() == 0):
            print(f"start_ray: error: {err}", file=sys.stderr, flush=True)

    def abort(self) -> None:
        """After a local failure nothing may wait for this rank forever."""
        logs.close()
        if self.size > 1:
            self.comm.Abort(EXIT_FAILURE)


def _stopping(inbox: SignalInbox) -> Callable[[], bool]:
    def check() -> bool:
        inbox.raise_if_stopping(walltime_too=True)
        return False
    return check


def total_resources(nodes: List[NodeInfo]) -> Dict[str, float]:
    total: Dict[str, float] = {}
    for node in nodes:
        for key, value in node.resources.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _version() -> str:
    from . import __version__
    return __version__
