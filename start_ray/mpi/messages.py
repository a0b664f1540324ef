"""What travels between the ranks, as small typed records.

    rank 0 -> all (collective)     Plan (agreement.py), then HeadRecord
    node rank -> rank 0 (REPORT)   Joined | Failed | Lost
    rank 0 -> node rank (GO)       Go (a join slot: join_slots.py)
    rank 0 -> all (broadcast)      Stop, through the leaders (channel.py);
                                   point to point to a leader (STOP) when a
                                   rank is lost
    rank -> its leader (REPORT)    Done, at the end
    leader -> rank 0 (REPORT)      HostDone: its host's Done, in one

Each point-to-point message names its tag, so the channel needs no table;
mpi4py pickles them (every rank runs the same start_ray).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Tuple, Union

from start_ray.mpi.ranks import RankSet

# Message tags.
REPORT = 71   # rank > 0 -> rank 0: joined / failed / lost / done
STOP = 72     # rank 0 -> rank > 0: tear down now
GO = 73       # rank 0 -> rank > 0: join now


@dataclasses.dataclass(frozen=True)
class HeadRecord:
    """Rank 0's word after starting the head: its address, or why it failed."""

    address: str = ""
    error: str = ""


@dataclasses.dataclass(frozen=True)
class Joined:
    """This rank's worker node is up."""

    tag: ClassVar[int] = REPORT
    attempt: int
    elapsed: float  # seconds since the rank started
    took: float = 0.0  # seconds from its first `ray start` (after its join slot)


@dataclasses.dataclass(frozen=True)
class Failed:
    """This rank's worker node could not start (`starting`), or the rank
    cannot go on (a helper it relies on is gone): the job ends."""

    tag: ClassVar[int] = REPORT
    error: str
    starting: bool = True


@dataclasses.dataclass(frozen=True)
class Lost:
    """This rank's worker node ended while the job ran; `rejoining`: the rank
    starts it anew and waits for a join slot (Go) to rejoin."""

    tag: ClassVar[int] = REPORT
    error: str
    rejoining: bool = False


@dataclasses.dataclass(frozen=True)
class Done:
    """This rank's teardown: how many processes it stopped, and which are left."""

    tag: ClassVar[int] = REPORT
    stopped: int
    left: str  # "" when none


@dataclasses.dataclass(frozen=True)
class HostDone:
    """A leader's report of its host's teardown: the processes its ranks
    stopped, what they left (`rank 5: 4711 raylet`), which ranks reported
    and which said nothing."""

    tag: ClassVar[int] = REPORT
    stopped: int
    left: Tuple[str, ...]
    reported: RankSet
    silent: RankSet


@dataclasses.dataclass(frozen=True)
class Go:
    """Rank 0 to a waiting worker rank: a join slot is free, join now."""

    tag: ClassVar[int] = GO


@dataclasses.dataclass(frozen=True)
class Stop:
    """Rank 0 to every other rank: tear down now; the job ends with `status`,
    or, `restart` > 0, every rank starts the cluster again (--restarts)."""

    tag: ClassVar[int] = STOP
    status: int
    together: bool = True  # every rank is there to leave together (Channel.part)
    restart: int = 0  # the attempt that follows (1: the first restart), or 0


Report = Union[Joined, Failed, Lost, Done, HostDone]
Message = Union[Joined, Failed, Lost, Done, HostDone, Go, Stop]
