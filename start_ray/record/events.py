"""What happened to each rank, as typed records (rank 0's timeline).

Rank 0 writes these into its ledger as it learns them (ledger.py); the
summary renders them (summary.txt) and stores them (summary.json). Code and
tests ask for an event by its type, never by the words a log line uses: the
words are made here, in `describe`, and nowhere else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Optional, Tuple, Type


@dataclasses.dataclass(frozen=True)
class Event:
    """Something that happened to `rank`, `at` seconds after rank 0 started
    (None: no moment). The ranks a host's node serves have no events unless
    something happens to one of them: the summary speaks of them per host."""

    kind: ClassVar[str] = ""
    rank: int
    at: Optional[float]

    def record(self) -> Dict[str, Any]:
        """The event as summary.json stores it: {"event": kind, fields...}
        (its fields are plain values: no deep copy needed)."""
        return {"event": self.kind,
                **{field.name: getattr(self, field.name) for field in dataclasses.fields(self)}}


@dataclasses.dataclass(frozen=True)
class HeadUp(Event):
    kind: ClassVar[str] = "head_up"


@dataclasses.dataclass(frozen=True)
class NodeJoined(Event):
    """A worker node joined: said so by its rank (`attempt`), or seen alive
    in the GCS (attempt None; the rank's own word replaces it)."""

    kind: ClassVar[str] = "joined"
    attempt: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class JoinFailed(Event):
    kind: ClassVar[str] = "join_failed"
    error: str = ""


@dataclasses.dataclass(frozen=True)
class NeverJoined(Event):
    kind: ClassVar[str] = "never_joined"


@dataclasses.dataclass(frozen=True)
class NodeLost(Event):
    kind: ClassVar[str] = "node_lost"
    why: str = ""


@dataclasses.dataclass(frozen=True)
class NodeRejoined(Event):
    """A lost worker node came back: its rank started it anew (`rejoin` of
    them, 1 for the first)."""

    kind: ClassVar[str] = "rejoined"
    rejoin: int = 1


@dataclasses.dataclass(frozen=True)
class GivenUp(Event):
    """A node that kept dying: its rank stopped bringing it back."""

    kind: ClassVar[str] = "given_up"
    rejoins: int = 0


@dataclasses.dataclass(frozen=True)
class GcsRestarted(Event):
    """The head's GCS died and was started again in place (`restart` of
    them), serving again `took` seconds later."""

    kind: ClassVar[str] = "gcs_restarted"
    how: str = ""
    restart: int = 1
    took: float = 0.0


@dataclasses.dataclass(frozen=True)
class Restarted(Event):
    """The cluster was started again (`restart` of them, --restarts) after
    the head was lost: `after` says how."""

    kind: ClassVar[str] = "restarted"
    restart: int = 1
    after: str = ""


@dataclasses.dataclass(frozen=True)
class NotJoinedYet(Event):
    """Missing at the join deadline, the driver started without it (--min-nodes)."""

    kind: ClassVar[str] = "not_joined_yet"


@dataclasses.dataclass(frozen=True)
class JoinedLate(Event):
    """Joined after the driver started (--min-nodes), and counted in."""

    kind: ClassVar[str] = "joined_late"


@dataclasses.dataclass(frozen=True)
class RankFailed(Event):
    """A rank could not go on (a helper it relies on was gone)."""

    kind: ClassVar[str] = "rank_failed"
    error: str = ""


@dataclasses.dataclass(frozen=True)
class Stopped(Event):
    """A rank's teardown: what it left running ("" when none)."""

    kind: ClassVar[str] = "stopped"
    left: str = ""


@dataclasses.dataclass(frozen=True)
class NoReport(Event):
    """Rank 0 heard nothing of this rank's teardown."""

    kind: ClassVar[str] = "no_report"


# The events that send a reader to the node's Ray logs.
TROUBLE: Tuple[Type[Event], ...] = (JoinFailed, NeverJoined, NodeLost, NotJoinedYet)
KINDS: Dict[str, Type[Event]] = {cls.kind: cls for cls in (
    HeadUp, NodeJoined, JoinFailed, NeverJoined, NodeLost, NodeRejoined,
    GivenUp, GcsRestarted, Restarted, NotJoinedYet, JoinedLate, RankFailed, Stopped, NoReport)}


def describe(event: Event) -> str:
    """The words for an event in summary.txt (the one place they are made)."""
    if isinstance(event, HeadUp):
        return "head up"
    if isinstance(event, NodeJoined):
        return "joined" if event.attempt is None else f"joined (attempt {event.attempt})"
    if isinstance(event, JoinFailed):
        return f"could not start its node: {event.error}"
    if isinstance(event, NeverJoined):
        return "its node never joined"
    if isinstance(event, NodeLost):
        return f"lost its node: {event.why}"
    if isinstance(event, NodeRejoined):
        return f"rejoined (rejoin {event.rejoin})"
    if isinstance(event, GivenUp):
        return f"given up after {event.rejoins} rejoin(s)"
    if isinstance(event, GcsRestarted):
        return (f"its GCS ({event.how}) started again in place (restart {event.restart}), "
                f"serving after {event.took:.1f}s")
    if isinstance(event, Restarted):
        return f"the cluster started again (restart {event.restart}) after: {event.after}"
    if isinstance(event, NotJoinedYet):
        return "not joined at the start (--min-nodes)"
    if isinstance(event, JoinedLate):
        return "joined late"
    if isinstance(event, RankFailed):
        return f"failed: {event.error}"
    if isinstance(event, Stopped):
        return f"stopped; left: {event.left}" if event.left else "stopped, none left"
    if isinstance(event, NoReport):
        return "no teardown report"
    return event.kind.replace("_", " ")


def from_record(record: Dict[str, Any]) -> Event:
    """An event back from its summary.json record."""
    fields = dict(record)
    return KINDS[fields.pop("event")](**fields)
