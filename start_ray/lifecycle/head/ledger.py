"""Rank 0's books, shared by its three parts (bring-up, watch, teardown): who
joined and how, whose node was lost, which hosts reported their teardown,
and the timeline of events (record/events.py) the summary is made of.

Everything the other ranks say reaches it through `record`; what rank 0
sees itself (the GCS's word, a deadline) through `note`. Its size and every
question asked of it grow with the nodes and the events, never with the
ranks: idle ranks (those a host's node serves) have no entries until
something happens to one of them, and events are indexed by rank (a look
at one rank's events was a scan of all of them, once per node: quadratic).
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Set, Type

from start_ray.lifecycle.agree.agreement import Layout
from start_ray.mpi.messages import Done, Failed, HostDone, Joined, Lost, Message
from start_ray.mpi.ranks import RankSet
from start_ray.record.events import (
    Event,
    JoinedLate,
    JoinFailed,
    NodeJoined,
    NodeLost,
    NodeRejoined,
    NoReport,
    RankFailed,
    Stopped,
)


class Ledger:
    """What rank 0 knows of every rank, and when it learned it."""

    def __init__(self, layout: Layout, started: float) -> None:
        self.layout = layout
        self.started = started  # time.monotonic() when the job began on rank 0
        self.attempt_started = started  # ... and this attempt (--restarts)
        self.attempt_first = 0  # this attempt's first event (earlier ones: the timeline's)
        self.joins: Dict[int, Joined] = {}  # what each worker rank said when it joined
        self.lost: Set[int] = set()  # ranks whose Ray node is lost (until it rejoins)
        self.failed: Set[int] = set()  # ranks whose node could not start at all
        self.members: Set[int] = set()  # node ranks counted in the cluster (once it is up)
        self.counted_at: Dict[int, float] = {}  # time.monotonic() when each was counted in
        self.rejoins: Dict[int, int] = {}  # how often each rank's node came back
        self.ready = False  # the cluster is up: a join now is a late join or a rejoin
        self.reports: Dict[int, HostDone] = {}  # teardown reports, by the host's leader
        self.events: List[Event] = []  # the timeline, in order
        self._of: Dict[int, List[int]] = {}  # rank -> its events' places in the timeline
        # each leader's node ranks (its host's), for the teardown reports; by
        # the host's ranks, not its name: hosts of one name (a Flux test
        # instance's brokers, under --node-per-rank) are still MPI's hosts
        on_host: Dict[str, List[int]] = {}
        for node in layout.nodes:
            on_host.setdefault(node.host, []).append(node.rank)
        self.node_ranks_of: Dict[int, List[int]] = {}
        for host in layout.hosts:
            self.node_ranks_of.setdefault(host.leader, []).extend(
                rank for rank in on_host.get(host.name, ()) if rank in host.ranks)

    def since_start(self) -> float:
        return time.monotonic() - self.started

    def since_attempt(self) -> float:
        """What the console's "up after" times count: this attempt's own."""
        return time.monotonic() - self.attempt_started

    def note(self, event: Event) -> None:
        self._of.setdefault(event.rank, []).append(len(self.events))
        self.events.append(event)

    def of(self, rank: int) -> List[Event]:
        return [self.events[i] for i in self._of.get(rank, ())]

    def has(self, rank: int, *kinds: Type[Event]) -> bool:
        """Whether an event of one of `kinds` happened to `rank` (in this attempt)."""
        return any(isinstance(self.events[i], kinds) for i in self._this_attempt(rank))

    def _this_attempt(self, rank: int) -> List[int]:
        return [i for i in self._of.get(rank, ()) if i >= self.attempt_first]

    def joined(self, rank: int, attempt: Optional[int] = None,
               at: Optional[float] = None) -> None:
        """A worker node joined: seen alive in the GCS (no attempt), or said
        so by its rank, which is more precise and takes the GCS's place."""
        at = self.since_start() if at is None else at
        for i in self._this_attempt(rank):
            if isinstance(self.events[i], NodeJoined):
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
        elif isinstance(message, HostDone):
            self.host_done(source, message)
        elif isinstance(message, Done):  # a rank of rank 0's own host: host 0's report
            self.host_done(0, HostDone(message.stopped, (f"rank {source}: {message.left}",)
                                       if message.left else (), RankSet.of([source]),
                                       RankSet()))

    def host_done(self, leader: int, done: HostDone) -> None:
        """A host's teardown: its node ranks' Stopped, its silent ranks'
        NoReport (rank 0's own host arrives rank by rank: merged here)."""
        before = self.reports.get(leader)
        if before is not None:
            done = HostDone(before.stopped + done.stopped, before.left + done.left,
                            RankSet.of([*before.reported, *done.reported]),
                            RankSet.of([*before.silent, *done.silent]))
        self.reports[leader] = done
        now = self.since_start()
        for rank in self.node_ranks_of.get(leader, ()):
            if rank in done.reported and not self.has(rank, Stopped):
                left = [entry.split(": ", 1)[1] for entry in done.left
                        if entry.startswith(f"rank {rank}: ")]
                self.note(Stopped(rank, now, "; ".join(left)))
        for rank in done.silent:
            if not self.has(rank, NoReport):
                self.note(NoReport(rank, now))

    def reported(self, rank: int) -> bool:
        """Whether `rank`'s teardown report came (a leader speaks for its host)."""
        return any(rank in done.reported for done in self.reports.values())

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

    def other_leaders(self) -> List[int]:
        return [leader for leader in self.layout.leaders if leader != 0]

    def hosts_with_lost_nodes(self) -> Set[int]:
        """The leaders of hosts whose node (or a node) was lost: they may be
        dead themselves, or wait in vain for a dead rank."""
        return {leader for leader, ranks in self.node_ranks_of.items()
                if self.lost.intersection(ranks)}
