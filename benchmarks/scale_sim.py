"""Rank 0 at any scale, simulated: its real code against a simulated world.

    python benchmarks/scale_sim.py --hosts 10000 --ranks-per-host 128 --json out.json

Rank 0 runs start_ray's real lifecycle (lifecycle.job.Job: the agreement,
the placement's checks, join slots, the ledger, readiness, the watch while a
driver runs, the teardown's bookkeeping, the summary), in this process, on
a clock of its own (time.monotonic and time.sleep are virtual: a sleep moves
the clock and lets the world act). Every other rank is the world's: it
answers rank 0's collectives and sends the messages a host's leader and a
node rank send (HostReport, Joined, HostDone, Done), pickled as mpi4py would
pickle them, and rank 0 unpickles them (that is rank 0's work). The GCS's
node table is simulated too: a look is the JSON line the node-table helper
prints, which rank 0 parses (node/gcs_table.parse_look) as it does in a job.

What rank 0 does is measured; what the world does is not (it is timed
apart and subtracted): rank0_cpu_s is rank 0's CPU time from the plan to
the summary, per phase in `phases`. rank0_peak_mb is the growth of this
process's peak RSS over the simulation: rank 0 and the world's buffers
together, an upper bound for rank 0's.

Not simulated: Ray itself (a join takes --join-seconds; the GCS's own cost
per registration is docs/scale.md's to predict), MPI's transport, and
processes (no `ray start`, no helper processes: the owner and launcher are
stand-ins that start nothing).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import heapq
import io
import itertools
import json
import logging
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    FrozenSet,
    List,
    Optional,
    Sequence,
    Tuple,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from start_ray.lifecycle.agree import agreement  # noqa: E402
from start_ray.lifecycle.contracts import Running  # noqa: E402
from start_ray.lifecycle.head import join_slots  # noqa: E402
from start_ray.lifecycle.job import Job, Phase  # noqa: E402
from start_ray.mpi.messages import (  # noqa: E402
    GO,
    REPORT,
    Done,
    HeadRecord,
    HostDone,
    Joined,
    Message,
    Stop,
)
from start_ray.mpi.ranks import HostRanks, RankSet  # noqa: E402
from start_ray.node import gcs_table  # noqa: E402
from start_ray.node.gcs_table import NodeInfo, parse_look  # noqa: E402
from start_ray.options import Options, make_options  # noqa: E402
from start_ray.procs import helpers  # noqa: E402
from start_ray.procs.signals import SignalInbox  # noqa: E402

REAL_MONOTONIC, REAL_SLEEP = time.monotonic, time.sleep


class WorldTime:
    """CPU the world spends, kept apart from rank 0's."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._began = 0.0

    def __enter__(self) -> "WorldTime":
        if self._depth == 0:
            self._began = time.process_time()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.process_time() - self._began

    @contextlib.contextmanager
    def rank0(self) -> Any:
        """Rank 0's own work done while the world acts (its reader thread
        parsing a node-table look the clock made due): charged to rank 0."""
        if self._depth == 0:
            yield
            return
        paused = time.process_time()
        try:
            yield
        finally:
            self._began += time.process_time() - paused


class Clock:
    """Virtual time: `sleep` moves it and runs what the world has due."""

    def __init__(self, world: "World") -> None:
        self.now = 1000.0
        self.world = world
        self.queue: List[Tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (when, next(self._order), action))

    def sleep(self, seconds: float) -> None:
        until = self.now + max(seconds, 0.0)
        with self.world.clock_time:
            while self.queue and self.queue[0][0] <= until:
                when, _, action = heapq.heappop(self.queue)
                self.now = max(self.now, when)
                action()
        self.now = until


@dataclasses.dataclass
class Shape:
    hosts: int
    ranks_per_host: int
    join_seconds: float = 2.0  # one node's `ray start --address`, as seen here
    run_seconds: float = 60.0  # how long the driver runs
    stop_seconds: float = 2.0  # a host's teardown

    @property
    def size(self) -> int:
        return self.hosts * self.ranks_per_host

    def leader(self, host: int) -> int:
        return host * self.ranks_per_host

    def host_name(self, host: int) -> str:
        return f"nid{host:05d}"

    def ip(self, host: int) -> str:
        n = host + 1
        return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


class World:
    """Every rank but 0, and the GCS, as rank 0 meets them."""

    def __init__(self, shape: Shape, options: Options) -> None:
        self.shape, self.options = shape, options
        self.time = WorldTime()  # everything the world does, rank 0's waits included
        self.clock_time = self.time
        self.clock = Clock(self)
        # to rank 0, by tag: (source, pickled); taken in order, as MPI's matched probe does
        self.inbox: Dict[int, Deque[Tuple[int, bytes]]] = collections.defaultdict(
            collections.deque)
        self.messages_to_rank0 = 0
        self.messages_from_rank0 = 0
        self.looks_parsed = 0  # node-table looks rank 0 parsed (charged to it)
        # what rank 0's code took out of its inbox, by kind: rank 0 decides it
        self.read_by_rank0: Dict[str, int] = collections.Counter()
        # rank -> its node's row in the GCS, as the helper prints it (text: the
        # world's rows add nothing to the heap rank 0's garbage collector scans)
        self.alive: Dict[int, str] = {}
        self.head: Optional[Any] = None  # rank 0's node plan, once its host reported
        self.slots = 0
        self.table: Optional["SimTable"] = None
        self.stopping = False

    # ------------------------------------------------------------ collectives
    def host_reports(self, mine: agreement.HostReport) -> List[bytes]:
        """Every other leader's report, pickled (as each leader sends it):
        rank 0's own host's, made new for every host."""
        shape = self.shape
        node, = mine.nodes
        runs, = mine.runs
        self.head = node  # rank 0's own plan: its host and address
        out = []
        for host in range(1, shape.hosts):
            name, leader = shape.host_name(host), shape.leader(host)
            ranks = RankSet.span(leader, leader + shape.ranks_per_host)
            report = agreement.HostReport(
                hosts=(HostRanks(name, leader, ranks),),
                nodes=(dataclasses.replace(node, rank=leader, host=name, ip=shape.ip(host),
                                           ranks=ranks),),
                runs=((runs[0], ranks, name),))
            out.append(pickle.dumps(report))
        return out

    def head_serves(self) -> None:
        """The HeadRecord reached every rank: the first `slots` worker nodes
        join at once; the others wait for their Go."""
        workers = self.shape.hosts - 1
        self.slots = join_slots.slots_for(workers, self.options.join_slots)
        for host in range(1, min(workers, self.slots) + 1):
            self.join(self.shape.leader(host))

    def join(self, rank: int) -> None:
        began = self.clock.now
        done_at = began + self.shape.join_seconds * (1.0 + (rank * 7919 % 100) / 400)

        def joined() -> None:
            host = rank // self.shape.ranks_per_host
            self.alive[rank] = json.dumps(dataclasses.asdict(NodeInfo(
                node_id=f"{rank:056x}", ip=self.shape.ip(host), hostname=self.shape.host_name(host),
                alive=True, rank=rank, resources={"CPU": float(self.shape.ranks_per_host),
                                                  "memory": 2e11, "object_store_memory": 6e10},
                ports={"NodeManager": 40000 + host % 20000, "ObjectManager": 41000})))
            if not self.stopping:
                self.send(REPORT, rank, Joined(1, self.clock.now - 1000.0,
                                               self.clock.now - began))
        self.clock.at(done_at, joined)

    def send(self, tag: int, source: int, message: Message) -> None:
        self.inbox[tag].append((source, pickle.dumps(message)))
        self.messages_to_rank0 += 1

    # ------------------------------------------------------------ from rank 0
    def received(self, dest: int, message: Message) -> None:
        """Rank 0 sent `message` to `dest`."""
        self.messages_from_rank0 += 1
        if message.tag == GO:
            self.join(dest)

    def stop_came(self) -> None:
        """Rank 0's Stop: every host's leader stops its node and hears its
        host's ranks, then sends one HostDone; rank 0's own host's ranks
        send Done."""
        self.stopping = True
        shape = self.shape
        when = self.clock.now + shape.stop_seconds
        for host in range(1, shape.hosts):
            leader = shape.leader(host)
            done = HostDone(14, (), RankSet.span(leader, leader + shape.ranks_per_host),
                            RankSet())
            self.clock.at(when, lambda leader=leader, done=done: self.send(REPORT, leader, done))
        for rank in range(1, shape.ranks_per_host):
            self.clock.at(when, lambda rank=rank: self.send(REPORT, rank, Done(0, "")))

    def look(self) -> str:
        """The node-table helper's line for a look now (the world prints it)."""
        assert self.head is not None
        rows = [json.dumps({"node_id": "0" * 56, "ip": self.head.ip, "hostname": self.head.host,
                            "alive": True, "rank": 0, "resources": {"CPU": 0.0}, "ports": {}})]
        rows += self.alive.values()
        return json.dumps({"alive": [0, *self.alive], "rows": f"[{', '.join(rows)}]",
                           "took": 0.002 * (1 + len(rows) / 500)})


class SimChannel:
    """Rank 0's end of the channel (mpi/channel.Channel), over the world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rank, self.size = 0, world.shape.size
        self.host_rank, self.leader = 0, 0

    @property
    def is_leader(self) -> bool:
        return True

    def share(self, value: Any) -> Any:
        pickle.dumps(value)  # a bcast pickles the value once
        if isinstance(value, HeadRecord) and value.address:
            with self.world.time:
                self.world.head_serves()
        return value

    def gather_host(self, value: Any) -> Optional[List[Any]]:
        with self.world.time:
            others = [pickle.dumps((dataclasses.replace(value[0], rank=rank), value[1]))
                      for rank in range(1, self.world.shape.ranks_per_host)]
        return [value] + [pickle.loads(data) for data in others]

    def gather_leaders(self, value: Any) -> Optional[List[Any]]:
        with self.world.time:
            others = self.world.host_reports(value)
        return [value] + [pickle.loads(data) for data in others]

    def scatter_leaders(self, values: Optional[List[Any]]) -> Any:
        assert values is not None
        for value in values[1:]:
            pickle.dumps(value)
        return values[0]

    def share_host(self, value: Any) -> Any:
        pickle.dumps(value)
        return value

    def expect_stop(self) -> None:
        pass

    def stop_all(self, stop: Stop, direct_to: Sequence[int] = ()) -> None:
        for dest in direct_to:
            self.send(dest, stop)
        with self.world.time:
            self.world.stop_came()

    def stop_news(self) -> Optional[Stop]:
        return None

    def send(self, dest: int, message: Message) -> None:
        pickle.dumps(message)
        with self.world.time:
            self.world.received(dest, message)

    def receive(self, tag: int, source: Optional[int] = None) -> Optional[Tuple[int, Any]]:
        waiting = self.world.inbox[tag]  # rank 0 takes any source: the first
        if not waiting:
            return None
        sender, data = waiting.popleft()
        message = pickle.loads(data)
        self.world.read_by_rank0[type(message).__name__] += 1
        return sender, message

    def flush(self, deadline: float) -> bool:
        return True

    def part(self, deadline: float) -> bool:
        return True

    def abort(self, status: int) -> None:
        raise RuntimeError(f"rank 0 aborted the simulated job ({status})")

    def mpi_library(self) -> str:
        return "simulated"

    def threads_ok(self) -> bool:
        return True


class SimNode:
    """The head's `ray start`, up at once."""

    command = ["ray", "start", "--head", "--block"]

    def __init__(self, world: World) -> None:
        self.world = world
        self.process = self
        self.pid = 1

    def poll(self) -> Optional[int]:
        return None

    @property
    def started(self) -> bool:
        return True

    def wait_started(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None,
                     need_address: bool = False) -> None:
        look()

    def wait_address(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None, ip: Optional[str] = None) -> str:
        look()
        assert self.world.head is not None
        return f"{self.world.head.ip}:6379"

    def alive(self) -> bool:
        return True

    def last_words(self, lines: int = 4) -> str:
        return ""

    def session_dir(self) -> str:
        return "/nonexistent/session_sim"

    def gone(self, but_gcs: bool = False) -> Optional[str]:
        return None

    # its GCS never dies here (the store costs the real head, not the protocol)
    block = True

    def keep_gcs(self, port: int) -> bool:
        return True

    def gcs_ended(self) -> Optional[str]:
        return None

    def restart_gcs(self, deadline: float) -> float:
        raise AssertionError("the simulated GCS never dies")

    def store_failed(self) -> bool:
        return False

    def kill(self) -> None:
        pass

    def stop_in_order(self, timeout: float) -> None:
        pass


class SimTable:
    """The GCS's node table as rank 0 reads it: the helper's lines, parsed
    here (node/gcs_table.parse_look), one per look, on the helper's clock."""

    what = "the simulated node-table helper"
    pid = 2
    look_took: Optional[float] = None
    looked_at: Optional[float] = None

    def __init__(self, world: World) -> None:
        self.world = world
        self.version = 0
        self._look: Optional[gcs_table.Look] = None
        self._nodes: Optional[Dict[int, NodeInfo]] = None
        self._generation = 0  # a new watch() cancels the looks planned before

    def returncode(self) -> Optional[int]:
        return None

    def restart(self) -> None:
        pass

    def watch(self, address: str, interval: float) -> None:
        """A look now, then one every `interval` (the looks planned before go)."""
        self._generation += 1
        self._every(self._generation, interval)

    def _every(self, generation: int, interval: float) -> None:
        if generation == self._generation:
            self.look_now()
            self.world.clock.at(time.monotonic() + interval,
                                lambda: self._every(generation, interval))

    def look_now(self) -> None:
        with self.world.time:
            line = self.world.look()
        with self.world.time.rank0():  # rank 0's reader thread parses it
            look = parse_look(line)
            self.world.looks_parsed += 1
        assert look is not None
        self._look, self._nodes, self.look_took = look, None, look.took
        self.looked_at = time.monotonic()
        self.version += 1

    def alive(self) -> Optional[FrozenSet[int]]:
        return self._look.alive if self._look is not None else None

    def nodes(self) -> Dict[int, NodeInfo]:
        if self._nodes is None:
            self._nodes = self._look.nodes() if self._look is not None else {}
        return self._nodes

    def close(self) -> None:
        self._generation += 1


class SimOwner:
    """procs/owner.ProcessOwner that starts nothing."""

    def __init__(self, me: Any, options: Options, log: logging.Logger) -> None:
        self.helpers = helpers.Helpers(log)
        self.temp_dir: Optional[str] = None

    def set_up(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="sim-")

    def popen(self, cmd: Sequence[str], ignored_signals: Sequence[int] = (),
              walltime_warning: bool = False, **kwargs: Any) -> Any:
        raise AssertionError("the simulation starts no process")

    def adopt(self, pid: int) -> None:
        pass

    def watch_helper(self, helper: Any) -> None:
        self.helpers.add(helper)

    def forget_helper(self, helper: Any) -> None:
        self.helpers.remove(helper)

    def check_helpers(self, doing: str) -> None:
        self.helpers.check(doing)

    def stop(self, node: Optional[Any]) -> Tuple[int, List[str]]:
        return (14 if node is not None else 0), []

    def finish(self, clean: bool) -> None:
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


class SimLauncher:
    """node/starter.NodeLauncher whose `ray start` is a SimNode."""

    def __init__(self, world: World, me: Any, plan: Any, token: Optional[str],
                 options: Options, log: logging.Logger, owner: SimOwner) -> None:
        self.world, self.owner = world, owner
        self.node: Optional[SimNode] = None

    def ray_env(self) -> Dict[str, str]:
        return {}

    def adopt(self, ready: Any) -> None:
        pass

    def prepare(self) -> None:
        pass

    def start_node(self, role_args: List[str], gcs_store: bool = False) -> SimNode:
        self.node = SimNode(self.world)
        return self.node

    def node_table(self) -> SimTable:
        table = SimTable(self.world)
        self.world.table = table
        self.owner.watch_helper(table)
        return table

    def close_node_table(self, table: Any) -> None:
        self.owner.forget_helper(table)
        table.close()


def driver(world: World, interval: float) -> Callable[[Running], int]:
    """The payload: a driver that runs for the shape's run_seconds, the watch
    ticking between polls as it does around a real driver."""
    def run(running: Running) -> int:
        until = time.monotonic() + world.shape.run_seconds
        while time.monotonic() < until:
            time.sleep(interval)
            running.tick()
        return 0
    return run


def simulate(shape: Shape, log_dir: str) -> Dict[str, Any]:
    """One run of rank 0 in a world of `shape`; what it cost."""
    options = make_options(environ={}, log_dir=log_dir, sync_logs=0, collect_logs="never",
                           join_timeout=max(600.0, shape.hosts / 5), no_auth=False)
    world = World(shape, options)
    time.monotonic, time.sleep = world.clock.monotonic, world.clock.sleep  # type: ignore
    phases: Dict[str, float] = {}
    try:
        job = Job(options, SimChannel(world), SignalInbox(),  # type: ignore[arg-type]
                  payload=driver(world, options.poll_interval),
                  own=SimOwner, launch=lambda *args: SimLauncher(world, *args),
                  log_name="start_ray.sim")
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        went = job.go

        def timed_go(outcome: Any) -> None:
            spent = time.process_time() - marks[0] - (world.time.seconds - marks[1])
            phases[job.phase.value] = phases.get(job.phase.value, 0.0) + spent
            went(outcome)
            marks[:] = [time.process_time(), world.time.seconds]

        job.go = timed_go  # type: ignore[method-assign]
        began_cpu, began_world = time.process_time(), world.time.seconds
        marks = [began_cpu, began_world]
        virtual_began = time.monotonic()
        status = job.advance(Phase.DONE)
        total = time.process_time() - began_cpu - (world.time.seconds - began_world)
        virtual = time.monotonic() - virtual_began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        time.monotonic, time.sleep = REAL_MONOTONIC, REAL_SLEEP  # type: ignore
    assert job.agreed is not None
    with open(os.path.join(job.agreed.run_dir, "summary.json")) as handle:
        record = json.load(handle)
    kinds: Dict[str, int] = {}
    for event in record["events"]:
        kinds[event["event"]] = kinds.get(event["event"], 0) + 1
    return {
        "hosts": shape.hosts, "ranks": shape.size, "ranks_per_host": shape.ranks_per_host,
        "status": status, "rank0_cpu_s": round(total, 3),
        "rank0_peak_mb": round(max(0, peak - baseline) / 1024, 1),
        "phases": {name: round(seconds, 3) for name, seconds in phases.items()},
        "world_cpu_s": round(world.time.seconds, 3),
        "virtual_seconds": round(virtual, 1),
        "messages_to_rank0": world.messages_to_rank0,
        "messages_from_rank0": world.messages_from_rank0,
        "read_by_rank0": dict(world.read_by_rank0),
        "unread_by_rank0": sum(len(queue) for queue in world.inbox.values()),
        "looks_parsed": world.looks_parsed,
        "events": kinds, "nodes": len(record["nodes"]),
        "summary_lines": sum(1 for _ in open(os.path.join(job.agreed.run_dir, "summary.txt"))),
        "run_dir": job.agreed.run_dir,
    }


def table(rows: List[Dict[str, Any]]) -> str:
    phases = sorted({name for row in rows for name in row["phases"]},
                    key=[p.value for p in Phase].index)
    head = ["hosts", "ranks", "rank 0 CPU s", *[f"{p} s" for p in phases], "peak MB",
            "msgs to 0", "msgs from 0", "summary lines", "wall s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        cells = [f"{row['hosts']:,}", f"{row['ranks']:,}", f"{row['rank0_cpu_s']:.2f}",
                 *[f"{row['phases'].get(p, 0.0):.2f}" for p in phases],
                 f"{row['rank0_peak_mb']:.0f}", f"{row['messages_to_rank0']:,}",
                 f"{row['messages_from_rank0']:,}", str(row["summary_lines"]),
                 f"{row['wall_s']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def growth(rows: List[Dict[str, Any]]) -> str:
    """How rank 0's CPU grows with the hosts, size to size (linear: x10 for
    ten times the hosts)."""
    steps = [f"{a['hosts']:,} -> {b['hosts']:,} hosts: x{b['rank0_cpu_s'] / a['rank0_cpu_s']:.1f}"
             for a, b in zip(rows, rows[1:]) if a["rank0_cpu_s"]]
    return "\n\nRank 0's CPU, size to size: " + "; ".join(steps) + "." if steps else ""


# The targets (docs/scale.md): rank 0's CPU from the plan to the summary, its
# memory, and how the CPU grows from 1,000 to 10,000 hosts.
LIMITS = {"cpu_s": 10.0, "peak_mb": 2048.0, "growth_1k_10k": 12.0}
COMPARE = os.path.join(ROOT, "benchmarks", "results", "compare.json")


def idle_per_minute(path: str = COMPARE) -> Optional[Tuple[float, str]]:
    """Rank 0's CPU seconds a minute while it waits for the driver (its own
    process and the node-table helper), measured in a real job by
    benchmarks/compare.py (the largest rank count there): not simulated here,
    so added to the simulated CPU. None when that file is missing."""
    try:
        with open(path) as handle:
            ranks = json.load(handle)["raw"]["ranks"]
    except (OSError, KeyError, ValueError):
        return None
    most = max(ranks, key=int)
    held = [run for run in ranks[most].get("held", []) if run.get("rank0")]
    if not held:
        return None
    kinds = held[0]["cpu_by_kind"]
    return (kinds.get("rank", 0.0) + kinds.get("helper", 0.0),
            f"benchmarks/results/compare.json, {most} ranks")


def verdict(rows: List[Dict[str, Any]]) -> str:
    """Whether the targets hold, each with its figure."""
    lines = []
    idle = idle_per_minute()
    largest = max(rows, key=lambda row: row["hosts"])
    cpu = largest["rank0_cpu_s"]
    if idle is not None:
        run_minutes = largest["run_seconds"] / 60
        cpu += idle[0] * run_minutes
        lines.append(f"rank 0 idle while the driver runs: {idle[0]:.2f} CPU-s a minute "
                     f"(measured in a real job: {idle[1]}), {idle[0] * run_minutes:.2f} s for "
                     f"the simulated {largest['run_seconds']:.0f} s run")
    ok = cpu <= LIMITS["cpu_s"]
    lines.append(f"CPU at {largest['hosts']:,} hosts: {cpu:.2f} s (simulated + idle) <= "
                 f"{LIMITS['cpu_s']:g} s: {'holds' if ok else 'FAILS'}")
    memory = largest["rank0_peak_mb"]
    lines.append(f"memory at {largest['hosts']:,} hosts: {memory:.0f} MB <= "
                 f"{LIMITS['peak_mb']:.0f} MB: "
                 f"{'holds' if memory <= LIMITS['peak_mb'] else 'FAILS'}")
    by_hosts = {row["hosts"]: row["rank0_cpu_s"] for row in rows}
    if by_hosts.get(1000) and 10000 in by_hosts:
        growth_x = by_hosts[10000] / by_hosts[1000]
        lines.append(f"growth from 1,000 to 10,000 hosts: x{growth_x:.1f} <= "
                     f"x{LIMITS['growth_1k_10k']:g}: "
                     f"{'holds' if growth_x <= LIMITS['growth_1k_10k'] else 'FAILS'}")
    return "\n\nTargets:\n" + "\n".join(f"- {line}" for line in lines)


def one(shape: Shape) -> Dict[str, Any]:
    """One size in this process (fresh: a size measured after another would
    pay for the collection of the other's garbage)."""
    logging.getLogger("start_ray.sim").propagate = False
    log_dir = tempfile.mkdtemp(prefix="scale-sim-")
    wall = REAL_MONOTONIC()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # rank 0's console lines
            row = simulate(shape, log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    row["wall_s"] = round(REAL_MONOTONIC() - wall, 1)
    del row["run_dir"]
    return row


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", required=True,
                        help="hosts of the simulated job (several: one run each, each in a "
                             "process of its own)")
    parser.add_argument("--ranks-per-host", type=int, default=128)
    parser.add_argument("--join-seconds", type=float, default=2.0)
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per size; the row is the one with the median CPU")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--publish", metavar="NAME",
                        help="publish the table as benchmarks/results/NAME.md (and .json)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child: one size, its row as JSON on stdout
        print(json.dumps(one(Shape(args.hosts[0], args.ranks_per_host, args.join_seconds,
                                   args.run_seconds))))
        return 0
    rows = []
    for hosts in args.hosts:
        runs = []
        for _ in range(args.repeat):
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--one", "--hosts", str(hosts),
                 "--ranks-per-host", str(args.ranks_per_host), "--join-seconds",
                 str(args.join_seconds), "--run-seconds", str(args.run_seconds)],
                capture_output=True, text=True, timeout=1800)
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                return 1
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        runs.sort(key=lambda run: run["rank0_cpu_s"])
        row = runs[len(runs) // 2]
        row["rank0_cpu_s_runs"] = [run["rank0_cpu_s"] for run in runs]
        rows.append(row)
        print(f"{hosts} hosts x {args.ranks_per_host}: rank 0 {row['rank0_cpu_s']:.2f} s CPU "
              f"(runs: {row['rank0_cpu_s_runs']}), {row['rank0_peak_mb']:.0f} MB, "
              f"{row['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
    for row in rows:
        row["run_seconds"] = args.run_seconds
    print(table(rows) + verdict(rows))
    if args.publish:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import evidence
        evidence.publish(args.publish, "Rank 0 at scale, simulated (benchmarks/scale_sim.py)",
                         f"{args.ranks_per_host} ranks per host; per size, the run with the "
                         f"median CPU of {args.repeat}. Rank 0's CPU includes the "
                         "node-table looks its reader thread parses.\n\n" + table(rows) +
                         growth(rows) + verdict(rows),
                         rows, "bench-scale")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"command": " ".join(["python", "benchmarks/scale_sim.py",
                                            *(argv if argv is not None else sys.argv[1:])]),
                       "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
