"""How many Ray nodes register with the GCS at once (rank 0's grants).

Hundreds of raylets registering at the same moment have hung a GCS
(ray-project/ray#30113), and on a small machine parallel joins time out.
So at most SLOTS nodes are joining at any moment: the first SLOTS worker
nodes (in rank order) start at once without asking; each of the others
waits for rank 0's Go, which rank 0 sends when a join ends: the rank says
its node joined (`ray start` printed that it runs, which comes after the
GCS registered the node), or that it gave up. A rank keeps its slot through
its retries.

    workers:   first SLOTS join at once ... the rest wait for Go
    rank 0:    Joined/Failed from rank r  ->  Go to the next waiting rank

A rank whose node died asks again (Lost, rejoining) and, while the joins
are bounded (fewer slots than worker nodes), waits for its Go like any
other: a rejoin is a join.
"""

from __future__ import annotations

import collections
import math
from typing import Deque, List, Optional, Sequence, Set

# Below this many worker nodes every node joins at once.
ALL_AT_ONCE = 16
# Never more than this many at once.
MOST = 128


def default_slots(workers: int) -> int:
    """All of them up to 16; then 4 x sqrt(N), at most 128 (1,000 nodes:
    126 at a time, ~8 waves): the GCS sees a bounded burst while the
    waves stay few."""
    return max(1, min(workers, max(ALL_AT_ONCE, min(MOST, 4 * math.ceil(math.sqrt(workers))))))


def slots_for(workers: int, given: Optional[int]) -> int:
    return max(1, min(workers, given)) if given else default_slots(workers)


def first(worker_ranks: Sequence[int], slots: int) -> Set[int]:
    """The ranks that join without waiting: the first `slots` worker nodes."""
    return set(worker_ranks[:slots])


def needs_go(index: int, workers: int, slots: int, rejoin: bool) -> bool:
    """Whether the worker node at `index` among the job's `workers` worker
    nodes (0: the first after the head) waits for rank 0's Go before it
    joins: it is not among the first `slots`, or it rejoins while the joins
    are bounded. Every rank computes it alike from its own place."""
    if slots >= workers:
        return False
    return rejoin or index >= slots


class JoinSlots:
    """Rank 0's book of who may join: in flight, waiting."""

    def __init__(self, worker_ranks: Sequence[int], slots: int) -> None:
        self.slots = slots
        self.bounded = slots < len(worker_ranks)
        self.in_flight: Set[int] = first(worker_ranks, slots)
        self.waiting: Deque[int] = collections.deque(worker_ranks[slots:])
        self.peak = len(self.in_flight)

    def finished(self, rank: int) -> List[int]:
        """`rank`'s join ended (joined or failed): the ranks that may join
        now (rank 0 sends each a Go). A join that was not in flight (said
        twice) frees nothing."""
        if rank not in self.in_flight:
            return []
        self.in_flight.discard(rank)
        return self._grant()

    def request(self, rank: int) -> List[int]:
        """`rank` asks to join again (its node died: a rejoin): the ranks that
        may join now, `rank` among them if a slot is free (none asks while
        every node has a slot: needs_go)."""
        if not self.bounded:
            return []
        if rank not in self.in_flight and rank not in self.waiting:
            self.waiting.append(rank)
        return self._grant()

    def _grant(self) -> List[int]:
        granted = []
        while self.waiting and len(self.in_flight) < self.slots:
            nxt = self.waiting.popleft()
            self.in_flight.add(nxt)
            granted.append(nxt)
        self.peak = max(self.peak, len(self.in_flight))
        return granted
