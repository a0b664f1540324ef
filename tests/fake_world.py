"""An MPI job in one process, for the protocol tests: threads act as ranks,
a FakeChannel carries the messages (pickled, as MPI would), and FakeNodes
stand in for `ray start` with a behaviour each test scripts per rank.

The lifecycle code under test is the real one (lifecycle.Job, the roles,
the agreement, the placement); only the three seams it was built with are
replaced: the channel, the owned processes, and the logger's name. Every
wait here has a timeout, so a protocol bug fails a test instead of hanging.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
import socket
import threading
import time
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from start_ray.errors import NodeError
from start_ray.lifecycle import contracts
from start_ray.lifecycle.job import Job, Phase
from start_ray.mpi.messages import STOP
from start_ray.node.gcs_table import NodeInfo
from start_ray.options import Options
from start_ray.procs import helpers
from start_ray.procs.signals import SignalInbox
from start_ray.record import logs

WAIT = 10.0  # no fake wait lasts longer: a hang fails the test
_worlds = itertools.count()


class Aborted(BaseException):
    """MPI_Abort in the fake world: every rank's next call to the channel dies."""


@dataclasses.dataclass
class Script:
    """How one rank's fake `ray start` behaves."""

    failed_starts: int = 0  # the first N starts end with Ray's error
    hangs: bool = False  # never says it started (until told to give up)
    hang_attempts: Tuple[int, ...] = ()  # only these starts hang (1: the first)
    mute_after_loss: bool = False  # once its node is lost, the rank sends nothing
    start_seconds: float = 0.0  # how long each start takes
    store_fails: bool = False  # a head started with the GCS store fails
    gcs_fails_again: bool = False  # the head's GCS, started again, ends at once


class FakeNode:
    """A `ray start --block` as the roles see it."""

    pids = itertools.count(1000)

    def __init__(self, world: "World", rank: int, attempt: int, head: bool) -> None:
        self.world, self.rank, self.attempt, self.head = world, rank, attempt, head
        self.command = ["ray", "start", "--head" if head else "--address", "--block"]
        self.process = self
        self.pid = next(self.pids)
        self.up = False
        self.returncode: Optional[int] = None
        self.gcs_store = False  # the head's GCS keeps its state (start_node)
        self.gcs_dead = False
        self.gcs_dies_after_this_look = False
        self.gcs_restarts = 0

    # the part of subprocess.Popen the roles use
    def poll(self) -> Optional[int]:
        return self.returncode

    def end(self, returncode: int = 1) -> None:
        """The node dies (e.g. its raylet crashed), and with it, if the
        script says so, the rank (it says nothing from then on)."""
        self.returncode = returncode
        if self.world.scripts.get(self.rank, Script()).mute_after_loss:
            self.world.muted.add(self.rank)
        self.world.event(self.rank, "node ended")

    def wait_started(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None,
                     need_address: bool = False) -> None:
        script = self.world.scripts.get(self.rank, Script())
        if self.attempt <= script.failed_starts:
            self.returncode = 1
            self.world.event(self.rank, f"attempt {self.attempt} failed")
            raise NodeError("`ray start` exited with status 1: ConnectionError: "
                            "(fake) timed out during startup")
        until = min(deadline, time.monotonic() + WAIT)
        started_at = time.monotonic() + script.start_seconds
        while (script.hangs or self.attempt in script.hang_attempts
               or time.monotonic() < started_at):
            look()  # raises when the start must be given up
            if time.monotonic() >= until:
                self.returncode = 1
                raise NodeError("`ray start` did not report the node as started")
            time.sleep(min(interval, max(0.0, started_at - time.monotonic())) or interval)
        self.up = True
        self.world.event(self.rank, "node up")

    def wait_address(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None,
                     ip: Optional[str] = None) -> str:
        """The GCS serves at once; a head scripted to fail or hang does so
        before its GCS serves."""
        script = self.world.scripts.get(self.rank, Script())
        if script.failed_starts >= self.attempt or script.hangs:
            self.wait_started(deadline, interval, look)
        if self.gcs_store and script.store_fails:  # `ray start` ends before the GCS serves
            self.returncode = 1
            self.world.event(self.rank, "start with the store failed")
            raise NodeError("`ray start` exited with status 1: (fake) the GCS store failed")
        self.world.event(self.rank, "address known")
        return self.address()

    @property
    def started(self) -> bool:
        return self.up

    def alive(self) -> bool:
        return self.returncode is None

    def last_words(self, lines: int = 4) -> str:
        return "(fake) raylet died"

    def address(self) -> str:
        """A port that accepts connections (the workers check they reach it)."""
        return "127.0.0.1:%d" % self.world.gcs_port

    def session_dir(self) -> str:
        return "/nonexistent/session_fake"

    def gone(self, but_gcs: bool = False) -> Optional[str]:
        if not self.alive():
            return "(fake) `ray start` exited"
        if self.gcs_dead and not (self.gcs_store and but_gcs):
            return "its gcs_server ended"
        return None

    # the head's GCS (a test kills it: kill_gcs)
    def keep_gcs(self, port: int) -> bool:
        return self.gcs_store

    def kill_gcs(self) -> None:
        self.gcs_dead = True
        self.world.event(self.rank, "gcs killed")

    def gcs_ended(self) -> Optional[str]:
        if self.gcs_dies_after_this_look:  # it dies between this look and the next
            self.gcs_dies_after_this_look, self.gcs_dead = False, True
            return None
        return "gcs_server was killed by SIGKILL" if self.gcs_dead and self.gcs_store else None

    def restart_gcs(self, deadline: float, number: int) -> float:
        script = self.world.scripts.get(self.rank, Script())
        if script.gcs_fails_again:
            raise NodeError("gcs_server started again exited with status 1 at once: (fake)")
        self.gcs_dead = False
        self.gcs_restarts += 1
        assert number == self.gcs_restarts, "the keeper counts as the node does"
        self.world.event(self.rank, "gcs restarted")
        return 0.5

    def kill(self) -> None:
        self.returncode = -9

    def store_failed(self) -> bool:
        return self.world.scripts.get(self.rank, Script()).store_fails

    block = True

    def stop_in_order(self, timeout: float) -> None:
        raise AssertionError("a fake node is stopped by its owner")


class FakeHelper:
    """A helper process (helpers.Helper) that a test can kill."""

    def __init__(self, world: "World", rank: int, what: str) -> None:
        self.world, self.rank, self.what = world, rank, what
        self.pid = next(FakeNode.pids)
        self.code: Optional[int] = None

    def returncode(self) -> Optional[int]:
        return self.code

    def kill(self) -> None:
        self.code = -9
        self.world.event(self.rank, f"{self.what} killed")

    def restart(self) -> None:
        self.code, self.pid = None, next(FakeNode.pids)
        self.world.event(self.rank, f"{self.what} restarted")


class FakeTable(FakeHelper):
    """The GCS's node table: the nodes that said they were up and still run.
    While its helper is dead it answers nothing new (as the real one)."""

    def __init__(self, world: "World") -> None:
        super().__init__(world, 0, "the fake node table")

    look_took = None

    @property
    def looked_at(self) -> float:
        return time.monotonic()  # it looks at the world when asked

    @property
    def version(self) -> int:
        return next(self.world.looks)  # every question is a new look

    def watch(self, address: str, interval: float) -> None:
        pass

    def look_now(self) -> None:
        pass

    def alive(self) -> FrozenSet[int]:
        return frozenset(self.nodes())

    def nodes(self) -> Dict[int, NodeInfo]:
        if self.code is not None:
            return {}
        return {rank: NodeInfo(node_id=f"n{rank}", ip=self.world.plans[rank].ip,
                               hostname="fake", alive=True, rank=rank,
                               resources={"CPU": 1.0})
                for rank, node in self.world.latest_nodes().items()
                if node.up and node.alive()}

    def close(self) -> None:
        self.world.event(0, "table closed")


class FakeOwner:
    """procs/owner.ProcessOwner without processes: records what the rank asks."""

    def __init__(self, world: "World", me: Any, options: Options, log: Any) -> None:
        self.world, self.rank = world, me.rank
        self.helpers = helpers.Helpers(log)
        self.watchdog = FakeHelper(world, self.rank, "the fake watchdog")
        self.temp_dir: Optional[str] = None

    def set_up(self) -> None:
        self.helpers.add(self.watchdog)
        self.temp_dir = "/nonexistent/fake-temp"
        self.world.event(self.rank, "set up")

    def popen(self, cmd: Sequence[str], ignored_signals: Sequence[int] = (),
              walltime_warning: bool = False, **kwargs: Any) -> Any:
        raise AssertionError("the fake world starts no process")

    def adopt(self, pid: int) -> None:
        self.world.event(self.rank, f"adopted {pid}")

    def watch_helper(self, helper: helpers.Helper) -> None:
        self.helpers.add(helper)

    def forget_helper(self, helper: helpers.Helper) -> None:
        self.helpers.remove(helper)

    def check_helpers(self, doing: str) -> None:
        self.helpers.check(doing)

    def stop(self, node: Optional[Any]) -> Tuple[int, List[str]]:
        nodes = self.world.launchers[self.rank].nodes
        for each in nodes:
            if each.alive():
                each.returncode = 0
        self.world.event(self.rank, "stopped own")
        return len(nodes), []

    def finish(self, clean: bool) -> None:
        self.world.event(self.rank, f"finished clean={clean}")


class FakeLauncher:
    """node/starter.NodeLauncher with FakeNodes."""

    def __init__(self, world: "World", me: Any, plan: Any, token: Optional[str],
                 options: Options, log: Any, owner: FakeOwner) -> None:
        self.world, self.rank, self.owner = world, me.rank, owner
        world.plans[self.rank] = plan
        self.nodes: List[FakeNode] = []
        self.table: Optional[FakeTable] = None
        world.launchers[self.rank] = self

    @property
    def node(self) -> Optional[FakeNode]:
        return self.nodes[-1] if self.nodes else None

    def ray_env(self) -> Dict[str, str]:
        return {"FAKE_RAY_ENV": "1"}

    def adopt(self, ready: Any) -> None:
        raise AssertionError("the fake world imports no Ray ahead")

    def prepare(self) -> None:
        self.world.event(self.rank, "prepared")

    def start_head(self, role_args: List[str], gcs_store: bool) -> FakeNode:
        return self.start_node(role_args, gcs_store)

    def start_node(self, role_args: List[str], gcs_store: bool = False) -> FakeNode:
        node = FakeNode(self.world, self.rank, len(self.nodes) + 1, "--head" in role_args)
        node.gcs_store = gcs_store
        self.nodes.append(node)
        self.world.event(self.rank, f"start attempt {node.attempt}")
        return node

    def node_table(self) -> FakeTable:
        self.table = FakeTable(self.world)
        self.owner.watch_helper(self.table)
        return self.table

    def close_node_table(self, table: contracts.Table) -> None:
        self.owner.forget_helper(table)
        table.close()


class FakeChannel:
    """mpi/channel.Channel over the world's shared mailboxes. Every rank is
    on one host, whose leader is rank 0 (like the ranks of a laptop)."""

    def __init__(self, world: "World", rank: int) -> None:
        self.world, self.rank, self.size = world, rank, world.size
        self.host_rank, self.leader = rank, 0
        self._shares = 0
        self._gathers = 0

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def _check(self) -> None:
        if self.world.aborted is not None:
            raise Aborted(f"rank {self.rank}: the job was aborted")

    def _wait(self, ready: Callable[[], bool]) -> None:
        with self.world.lock:
            if not self.world.lock.wait_for(
                    lambda: ready() or self.world.aborted is not None, WAIT):
                raise TimeoutError(f"rank {self.rank}: a collective call never completed")
        self._check()

    def mpi_library(self) -> str:
        return ""

    def threads_ok(self) -> bool:
        return True  # the mailboxes have a lock

    def share(self, value: Any) -> Any:
        self._check()
        index, self._shares = self._shares, self._shares + 1
        with self.world.lock:
            if self.rank == 0:
                self.world.shares.append(pickle.dumps(value))
                self.world.lock.notify_all()
        self._wait(lambda: len(self.world.shares) > index)
        return pickle.loads(self.world.shares[index])

    def gather_leaders(self, value: Any) -> Optional[List[Any]]:
        return [value]  # rank 0 is the only leader

    def scatter_leaders(self, values: Optional[List[Any]]) -> Any:
        return values[0] if values else None

    def share_host(self, value: Any) -> Any:
        return self.share(value)  # one host, led by rank 0

    def expect_stop(self) -> None:
        """A Stop finds its mailbox at any moment; a restart's attempt
        forgets the last one."""
        with self.world.lock:
            self.world.stops.pop(self.rank, None)

    def stop_all(self, stop: Any, direct_to: Sequence[int] = ()) -> None:
        for rank in range(1, self.size):
            self.send(rank, stop)

    def stop_news(self) -> Optional[Any]:
        news = self.receive(STOP, source=0)
        if news is not None:
            self.world.stops[self.rank] = news[1]
        return self.world.stops.get(self.rank)

    def gather_host(self, value: Any) -> Optional[List[Any]]:
        self._check()
        index, self._gathers = self._gathers, self._gathers + 1
        with self.world.lock:
            self.world.gathers.setdefault(index, {})[self.rank] = pickle.dumps(value)
            self.world.lock.notify_all()
        if self.rank != 0:
            return None
        self._wait(lambda: len(self.world.gathers[index]) == self.size)
        return [pickle.loads(self.world.gathers[index][r]) for r in range(self.size)]

    def send(self, dest: int, message: Any) -> None:
        self._check()
        if self.rank in self.world.muted:
            return
        self.world.event(self.rank, f"send {type(message).__name__} to {dest}")
        with self.world.lock:
            self.world.mail.setdefault((dest, message.tag), []).append(
                (self.rank, pickle.dumps(message)))

    def receive(self, tag: int, source: Optional[int] = None) -> Optional[Tuple[int, Any]]:
        self._check()
        with self.world.lock:
            box = self.world.mail.get((self.rank, tag), [])
            for i, (sender, data) in enumerate(box):
                if source is None or sender == source:
                    del box[i]
                    return sender, pickle.loads(data)
        return None

    def flush(self, deadline: float) -> bool:
        return True

    def part(self, deadline: float) -> bool:
        """A barrier (each attempt of a restarted job parts once)."""
        with self.world.lock:
            self.world.parting[self.rank] = times = self.world.parting.get(self.rank, 0) + 1
            self.world.lock.notify_all()
            return self.world.lock.wait_for(
                lambda: (len(self.world.parting) == self.size and
                         min(self.world.parting.values()) >= times)
                or self.world.aborted is not None,
                min(WAIT, max(0.0, deadline - time.monotonic())))

    def abort(self, status: int) -> None:
        with self.world.lock:
            self.world.aborted = status
            self.world.lock.notify_all()


class World:
    """N ranks as threads, their mailboxes, their scripts, and a log of events."""

    def __init__(self, size: int, scripts: Optional[Dict[int, Script]] = None) -> None:
        self.size = size
        self.scripts = scripts or {}
        self.name = f"start_ray.fake{next(_worlds)}"
        self.lock = threading.Condition()
        self.shares: List[bytes] = []
        self.gathers: Dict[int, Dict[int, bytes]] = {}
        self.mail: Dict[Tuple[int, int], List[Tuple[int, bytes]]] = {}
        self.aborted: Optional[int] = None
        self.muted: Set[int] = set()
        self.parting: Dict[int, int] = {}  # how often each rank came to Channel.part
        self.events: List[Tuple[float, int, str]] = []
        self.plans: Dict[int, Any] = {}  # each rank's node plan
        self.identities: Dict[int, Any] = {}  # each rank's start_ray.identity.Identity
        self.stops: Dict[int, Any] = {}  # rank 0's Stop, as each rank received it
        self.looks = itertools.count()
        self.owned: Dict[int, FakeOwner] = {}
        self.launchers: Dict[int, FakeLauncher] = {}
        self.inboxes = {rank: SignalInbox() for rank in range(size)}
        self.statuses: Dict[int, Any] = {}
        self.jobs: Dict[int, Job] = {}
        self._gcs = socket.create_server(("127.0.0.1", 0))  # closed by run()
        self.gcs_port: int = self._gcs.getsockname()[1]

    def event(self, rank: int, what: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), rank, what))
            self.lock.notify_all()

    def said(self, rank: int, what: str) -> bool:
        return any(r == rank and w == what for _, r, w in self.events)

    def index(self, rank: int, what: str) -> int:
        """Where (rank, what) first happened in the order of events."""
        return next(i for i, (_, r, w) in enumerate(self.events) if r == rank and w == what)

    def wait_for(self, rank: int, what: str) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.said(rank, what), WAIT), (rank, what)

    def own(self, me: Any, options: Options, log: Any) -> FakeOwner:
        owner = FakeOwner(self, me, options, log)
        self.owned[me.rank] = owner
        self.identities[me.rank] = me
        return owner

    def launch(self, me: Any, plan: Any, token: Optional[str], options: Options, log: Any,
               owner: FakeOwner) -> FakeLauncher:
        return FakeLauncher(self, me, plan, token, options, log, owner)

    def latest_nodes(self) -> Dict[int, FakeNode]:
        return {rank: launcher.nodes[-1] for rank, launcher in list(self.launchers.items())
                if launcher.nodes}

    def job(self, rank: int, options: Options) -> Job:
        """Rank `rank`'s Job: the real lifecycle over the fake seams (mypy
        checks each fake against its Protocol in start_ray.contracts here)."""
        return Job(options, FakeChannel(self, rank), self.inboxes[rank], own=self.own,
                   launch=self.launch, log_name=f"{self.name}.rank{rank}")

    def run(self, options: Optional[Options], payload: Callable[..., int],
            on_rank: Optional[Callable[[int], Any]] = None) -> Dict[int, Any]:
        """Every rank's whole job with `payload` (or `on_rank(rank)`) in a
        thread of its own: each rank's exit status, or the exception it ended with."""
        def rank_main(rank: int) -> None:
            try:
                if on_rank is not None:
                    self.statuses[rank] = on_rank(rank)
                else:
                    assert options is not None
                    job = self.job(rank, options)
                    job.payload = payload
                    self.jobs[rank] = job
                    self.statuses[rank] = job.advance(Phase.DONE)
            except BaseException as err:  # the test looks at it
                self.statuses[rank] = err
            finally:
                logs.close(f"{self.name}.rank{rank}")

        threads = [threading.Thread(target=rank_main, args=(rank,), daemon=True,
                                    name=f"fake-rank-{rank}") for rank in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
        self._gcs.close()
        assert not any(thread.is_alive() for thread in threads), \
            f"ranks still running; events: {self.events}"
        return dict(self.statuses)

    def ledger_events(self, kind: type) -> List[Any]:
        """Rank 0's ledger: the events of one type (start_ray.events)."""
        return [event for event in self.jobs[0].role.ledger.events  # type: ignore[union-attr]
                if isinstance(event, kind)]

    def log_text(self, rank: int) -> str:
        me = self.identities[rank]
        with open(logs.file_path(me.run_dir, rank, self.size)) as handle:
            return handle.read()


def tick_until(on_tick: Callable[[], None], done: Callable[[], bool], after: float = 0.0) -> int:
    """A payload's loop: on_tick (the watch) until `done()`, then `after`
    seconds more; 0, the payload's status."""
    until = time.monotonic() + WAIT
    while not done() and time.monotonic() < until:
        on_tick()
        time.sleep(0.005)
    assert done(), "the payload waited in vain"
    stop_at = time.monotonic() + after
    while time.monotonic() < stop_at:
        on_tick()
        time.sleep(0.005)
    return 0


def options(tmp_path: Any, **given: Any) -> Options:
    """Quick settings for fake jobs: one node per rank, fast polls, logs in tmp."""
    from start_ray.options import make_options
    given.setdefault("join_timeout", 5)
    given.setdefault("stop_timeout", 0.1)
    return make_options(environ={}, node_per_rank=True, poll_interval=0.01,
                        log_dir=os.path.join(str(tmp_path), "logs"), num_cpus=1, **given)
