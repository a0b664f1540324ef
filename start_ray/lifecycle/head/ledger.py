"""Rank 0's books on the other ranks, shared by its three parts (bring-up,
watch, teardown): who joined and how, whose node was lost, who reported its
teardown, and the timeline of events (events.py) the summary is made of.

Everything the other ranks say reaches it through `record`; what rank 0
sees itself (the GCS's word, a deadline) through `note`.
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Set, Type

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.mpi.messages import Done, Failed, Joined, Lost, Message
from start_ray.record.events import (
    Event,
    JoinedLate,
    JoinFailed,
    NodeJoined,
    NodeLost,
    NodeRejoined,
    RankFailed,
    ServedByNode,
    Stopped,
)


class Ledger:
    """What rank 0 knows of every rank, and when it learned it."""

    def __init__(self, agreed: Agreement, started: float) -> None:
        self.agreed = agreed
        self.started = started  # time.monotonic() when the job began on rank 0
        self.joins: Dict[int, Joined] = {}  # what each worker rank said when it joined
        self.lost: Set[int] = set()  # ranks whose Ray node is lost (until it rejoins)
        self.failed: Set[int] = set()  # ranks whose node could not start at all
        self.members: Set[int] = set()  # node ranks counted in the cluster (once it is up)
        self.counted_at: Dict[int, float] = {}  # time.monotonic() when each was counted in
        self.rejoins: Dict[int, int] = {}  # how often each rank's node came back
        self.ready = False  # the cluster is up: a join now is a late join or a rejoin
        self.reports: Dict[int, Done] = {}  # teardown reports by rank
        self.events: List[Event] = [ServedByNode(rank, None) for node in agreed.nodes
                                    for rank in node.ranks if rank != node.rank]

    def since_start(self) -> float:
        return time.monotonic() - self.started

    def note(self, event: Event) -> None:
        self.events.append(event)

    def has(self, rank: int, *kinds: Type[Event]) -> bool:
        """Whether an event of one of `kinds` happened to `rank`."""
        return any(event.rank == rank and isinstance(event, kinds) for event in self.events)

    def of(self, rank: int) -> List[Event]:
        return [event for event in self.events if event.rank == rank]

    def joined(self, rank: int, attempt: Optional[int] = None,
               at: Optional[float] = None) -> None:
        """A worker node joined: seen alive in the GCS (no attempt), or said
        so by its rank, which is more precise and takes the GCS's place."""
        at = self.since_start() if at is None else at
        for i, event in enumerate(self.events):
            if event.rank == rank and isinstance(event, NodeJoined):
                if attempt is not None:
                    self.events[i] = NodeJoined(rank, at, attempt)
                return
        self.note(NodeJoined(rank, at, attempt))

    def record(self, source: int, message: Message) -> None:
        """A rank's news, into the books and the timeline (a join once the
        cluster is up is the watch's to book: a late join or a rejoin)."""
        if isinstance(message, Joined):
            if not self.ready:
                self.joins[source] = message
                self.joined(source, message.attempt, message.elapsed)
        elif isinstance(message, Failed):
            if message.starting:
                self.failed.add(source)
            self.note(JoinFailed(source, self.since_start(), message.error) if message.starting
                      else RankFailed(source, self.since_start(), message.error))
        elif isinstance(message, Lost):
            self.lose(source, message.error)
        elif isinstance(message, Done):  # also from a rank that stopped on its own
            self.reports[source] = message
            self.note(Stopped(source, self.since_start(), message.left))

    def up(self, ranks: Iterable[int]) -> None:
        """The cluster is up with these nodes (less any lost meanwhile:
        counted in when they rejoin)."""
        self.count_in(set(ranks) - self.lost)
        self.ready = True

    def count_in(self, ranks: Iterable[int]) -> None:
        now = time.monotonic()
        for rank in ranks:
            self.members.add(rank)
            self.counted_at[rank] = now

    def joined_late(self, rank: int) -> None:
        self.count_in([rank])
        self.note(JoinedLate(rank, self.since_start()))

    def lose(self, rank: int, why: str) -> bool:
        """Count a node as lost (an event each time it goes down); False if
        it was counted lost already."""
        if rank in self.lost:
            return False
        self.lost.add(rank)
        self.members.discard(rank)
        self.note(NodeLost(rank, self.since_start(), why))
        return True

    def rejoined(self, rank: int) -> int:
        """A lost node came back; how many times it has now."""
        self.lost.discard(rank)
        self.count_in([rank])
        self.rejoins[rank] = self.rejoins.get(rank, 0) + 1
        self.note(NodeRejoined(rank, self.since_start(), self.rejoins[rank]))
        return self.rejoins[rank]

    def others(self) -> Set[int]:
        return set(range(1, self.agreed.size))

    def lost_ranks(self) -> Set[int]:
        """The ranks served by lost nodes (a lost host takes all its ranks)."""
        return {rank for node in self.agreed.nodes if node.rank in self.lost
                for rank in node.ranks}
