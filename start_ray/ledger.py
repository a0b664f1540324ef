"""Rank 0's books on the other ranks, shared by its three parts (bring-up,
watch, teardown): who joined and how, whose node was lost, who reported its
teardown, and the timeline of events (events.py) the summary is made of.

Everything the other ranks say reaches it through `record`; what rank 0
sees itself (the GCS's word, a deadline) through `note`.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Set, Type

from .agreement import Agreement
from .events import (Event, JoinFailed, NodeJoined, NodeLost, RankFailed, ServedByNode,
                     Stopped)
from .messages import Done, Failed, Joined, Lost, Message


class Ledger:
    """What rank 0 knows of every rank, and when it learned it."""

    def __init__(self, agreed: Agreement, started: float) -> None:
        self.agreed = agreed
        self.started = started  # time.monotonic() when the job began on rank 0
        self.joins: Dict[int, Joined] = {}  # what each worker rank said when it joined
        self.lost: Set[int] = set()  # ranks whose Ray node was lost
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
        """A rank's news, into the books and the timeline."""
        if isinstance(message, Joined):
            self.joins[source] = message
            self.joined(source, message.attempt, message.elapsed)
        elif isinstance(message, Failed):
            self.note(JoinFailed(source, self.since_start(), message.error) if message.starting
                      else RankFailed(source, self.since_start(), message.error))
        elif isinstance(message, Lost):  # the watch decides what it means (lose)
            if not self.has(source, NodeLost):
                self.note(NodeLost(source, self.since_start(), message.error))
        elif isinstance(message, Done):  # also from a rank that stopped on its own
            self.reports[source] = message
            self.note(Stopped(source, self.since_start(), message.left))

    def lose(self, rank: int, why: str) -> bool:
        """Count a node as lost; False if it was counted already."""
        if rank in self.lost:
            return False
        self.lost.add(rank)
        if not self.has(rank, NodeLost):
            self.note(NodeLost(rank, self.since_start(), why))
        return True

    def others(self) -> Set[int]:
        return set(range(1, self.agreed.size))

    def lost_ranks(self) -> Set[int]:
        """The ranks served by lost nodes (a lost host takes all its ranks)."""
        return {rank for node in self.agreed.nodes if node.rank in self.lost
                for rank in node.ranks}
