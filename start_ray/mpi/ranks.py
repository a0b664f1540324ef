"""Sets of MPI ranks kept as ranges: a host's 128 ranks are one range
(`0-127`, or `5-1275 every 10` when the launcher deals ranks round-robin),
so that rank 0 holds O(hosts), not O(ranks), of them at any job size."""

from __future__ import annotations

import bisect
import dataclasses
from typing import Iterable, Iterator, List, Tuple

Span = Tuple[int, int, int]  # range(start, stop, step)


@dataclasses.dataclass(frozen=True)
class RankSet:
    """Ranks in increasing order, as ranges of a constant step."""

    spans: Tuple[Span, ...] = ()

    @classmethod
    def of(cls, ranks: Iterable[int]) -> "RankSet":
        """From any ranks (sorted and made unique here)."""
        ordered = sorted(set(ranks))
        spans: List[Span] = []
        i = 0
        while i < len(ordered):
            start = ordered[i]
            if i + 1 == len(ordered):
                spans.append((start, start + 1, 1))
                break
            step = ordered[i + 1] - start
            j = i + 1
            while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == step:
                j += 1
            if j == i + 1 and step != 1 and j + 1 < len(ordered):
                spans.append((start, start + 1, 1))  # a lone rank: the next may start a run
                i += 1
                continue
            spans.append((start, ordered[j] + 1, step))
            i = j + 1
        return cls(tuple(spans))

    @classmethod
    def span(cls, start: int, stop: int) -> "RankSet":
        return cls(((start, stop, 1),) if stop > start else ())

    def __iter__(self) -> Iterator[int]:
        for start, stop, step in self.spans:
            yield from range(start, stop, step)

    def __len__(self) -> int:
        return sum(len(range(*span)) for span in self.spans)

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __contains__(self, rank: object) -> bool:
        """Spans are runs of the sorted ranks, so they never interleave: the
        one whose start is the nearest below is the only one to look at."""
        if not isinstance(rank, int):
            return False
        i = bisect.bisect_right(self.spans, (rank, float("inf"), 0)) - 1
        if i < 0:
            return False
        start, stop, step = self.spans[i]
        return rank < stop and (rank - start) % step == 0

    @property
    def first(self) -> int:
        return self.spans[0][0]

    def without(self, ranks: Iterable[int]) -> "RankSet":
        """These ranks less a few (a host's node ranks): each dropped rank
        splits its span, so the cost grows with the ranks dropped, not with
        the ranks kept."""
        spans = list(self.spans)
        for rank in sorted(set(ranks)):
            i = bisect.bisect_right(spans, (rank, float("inf"), 0)) - 1
            if i < 0:
                continue
            start, stop, step = spans[i]
            if rank >= stop or (rank - start) % step:
                continue
            pieces = [(start, rank, step), (rank + step, stop, step)]
            spans[i:i + 1] = [piece for piece in pieces if len(range(*piece))]
        return RankSet(tuple(spans))

    def text(self, width: int = 60) -> str:
        """`0-3,8`; `4-996 every 4`; a long list shortened, with its count."""
        parts = []
        for start, stop, step in self.spans:
            last = start + (len(range(start, stop, step)) - 1) * step
            if last == start:
                parts.append(str(start))
            elif step == 1:
                parts.append(f"{start}-{last}")
            elif last == start + step:
                parts.append(f"{start},{last}")
            else:
                parts.append(f"{start}-{last} every {step}")
        text = ",".join(parts)
        if len(text) <= width:
            return text
        return f"{','.join(parts[:3])},...,{parts[-1]} ({len(self)} ranks)"


@dataclasses.dataclass(frozen=True)
class HostRanks:
    """One host of the job: its name, its leader (its lowest rank) and its ranks."""

    name: str
    leader: int
    ranks: RankSet
