"""The simulated world of benchmarks/scale_sim.py: every rank but 0 (their
collectives and messages, pickled as mpi4py would), the GCS's node table
(the helper's JSON lines), a virtual clock, and the owner and launcher that
start nothing. Rank 0's real Job runs against it through the seams the
protocol tests use (Job's channel, `own`, `launch`, `log_name`)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import heapq
import itertools
import json
import os
import pickle
import sys
import time
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from start_ray.lifecycle.agree import agreement  # noqa: E402
from start_ray.lifecycle.head import join_slots  # noqa: E402
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
from start_ray.node.gcs_table import NodeInfo  # noqa: E402
from start_ray.options import Options  # noqa: E402

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
        self.table: Optional[Any] = None  # sim_nodes.SimTable, once rank 0 made it
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
