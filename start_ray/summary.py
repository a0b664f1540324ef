"""Rank 0's short account of the run: LOG_DIR/<run-id>/summary.txt.

    the cause of a failure, first
    a timeline per rank: head up, joined (after k attempts), lost, stopped,
        anything left; ranks that behaved alike share one line, so that a job
        of 1,000 ranks still reads in a screenful
    for each lost or failed node, the first error lines of its Ray logs as
        collected into ray/ (collect.py)

Rank 0 hears everything it needs over the protocol anyway (Joined, Failed,
Lost, Done); the timeline only writes it down.
"""

from __future__ import annotations

import glob
import os
import time
from typing import Dict, List, Optional, Tuple

from . import collect, logs
from .agreement import Agreement

# Events that make a rank's node worth a look in its Ray logs.
TROUBLE = ("could not start its node", "its node never joined", "lost its node")
# The logs whose error lines the summary quotes, most telling first.
TELLING_LOGS = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out",
                "ray-start-*.out")


class Timeline:
    """What happened to each rank, in seconds since rank 0 started."""

    def __init__(self, agreed: Agreement, started: float) -> None:
        self.agreed = agreed
        self.started = started
        self.events: Dict[int, List[Tuple[str, Optional[float]]]] = {
            rank: [] for rank in range(agreed.size)}
        for node in agreed.nodes:
            for rank in node.ranks:
                if rank != node.rank:  # the same words for all: such ranks group
                    self.events[rank].append(("served by its host's node", None))

    def note(self, rank: int, what: str, at: Optional[float] = None) -> None:
        """`what` happened to `rank`; `at` seconds since start (None: now)."""
        if at is None:
            at = time.monotonic() - self.started
        self.events.setdefault(rank, []).append((what, at))

    def joined(self, rank: int, attempt: Optional[int] = None,
               at: Optional[float] = None) -> None:
        """A worker node joined: seen alive in the GCS (no attempt count), or
        said so itself (which is more precise and takes the GCS's place)."""
        events = self.events.setdefault(rank, [])
        what = "joined" if attempt is None else f"joined (attempt {attempt})"
        seen = [i for i, (event, _) in enumerate(events) if event.startswith("joined")]
        if seen and attempt is None:
            return
        if seen:
            events[seen[0]] = (what, at)
        else:
            self.note(rank, what, at)

    def noted(self, rank: int, what: str) -> bool:
        return any(event.startswith(what) for event, _ in self.events.get(rank, []))

    def lines(self) -> List[str]:
        """One line per group of ranks whose stories read alike."""
        groups: Dict[Tuple[str, ...], List[int]] = {}
        for rank in range(self.agreed.size):
            story = tuple(what for what, _ in self.events[rank]) or ("no news",)
            groups.setdefault(story, []).append(rank)
        out = []
        for story, ranks in sorted(groups.items(), key=lambda item: item[1][0]):
            parts = []
            for i, what in enumerate(story):
                times = [self.events[r][i][1] for r in ranks if self.events[r]]
                parts.append(what + _when([t for t in times if t is not None]))
            out.append(f"{_name(ranks, self.agreed)}: " + "; ".join(parts))
        return out

    def troubled(self) -> List[int]:
        return [rank for rank in self.agreed.node_ranks
                if any(self.noted(rank, what) for what in TROUBLE)]


def write(timeline: Timeline, status: int, cause: Optional[str]) -> str:
    """Write summary.txt into the run folder; its path."""
    agreed = timeline.agreed
    lines = [f"start_ray run {agreed.plan.run_id}: exit status {status}; {agreed.size} "
             f"rank(s) on {len(set(agreed.hosts))} host(s), {len(agreed.nodes)} Ray node(s)"]
    if status != 0 or cause:
        lines.append(f"cause: {cause or 'unknown (see the rank logs)'}")
    lines += ["", "timeline (seconds since rank 0 started):"]
    lines += [f"  {line}" for line in timeline.lines()]
    troubled = timeline.troubled()
    if troubled:
        lines += ["", "first error lines in the Ray logs of the nodes in trouble "
                  "(copies under ray/):"]
        for rank in troubled:
            lines += [f"  {agreed.name_ranks([rank])}:"] + [
                f"    {line}" for line in _errors_of(agreed, rank)]
    path = os.path.join(agreed.run_dir, "summary.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _errors_of(agreed: Agreement, rank: int, per_file: int = 3) -> List[str]:
    folder = logs.ray_logs_dir(agreed.run_dir, rank, agreed.size, agreed.hosts[rank])
    if not os.path.isdir(folder):
        return ["(no Ray logs were collected from this node: its rank did not copy them)"]
    sessions = sorted(glob.glob(os.path.join(folder, "session_2*")))
    found = []
    for pattern in TELLING_LOGS:
        where = sessions[-1:] if not pattern.startswith("ray-start") else [folder]
        for path in sorted(p for base in where for p in glob.glob(os.path.join(base, pattern))):
            for line in collect.error_lines(path, per_file):
                found.append(f"{os.path.relpath(path, agreed.run_dir)}: {line[:300]}")
    if found:
        return found
    started = sorted(glob.glob(os.path.join(folder, "ray-start-*.out")), key=os.path.getmtime)
    if started:  # no error anywhere: what `ray start` said last is the best clue
        with open(started[-1], errors="replace") as handle:
            last = [line.strip() for line in handle if line.strip()][-3:]
        return [f"(no error lines) {os.path.relpath(started[-1], agreed.run_dir)} ends: "
                + " / ".join(last)[:300]]
    return ["(no error lines in raylet, GCS or `ray start` output)"]


def _when(times: List[float]) -> str:
    if not times:
        return ""
    low, high = min(times), max(times)
    return f" at {low:.1f}s" if high - low < 0.05 else f" at {low:.1f}-{high:.1f}s"


def _name(ranks: List[int], agreed: Agreement) -> str:
    hosts = sorted({agreed.hosts[r] for r in ranks})
    where = hosts[0] if len(hosts) == 1 else f"{len(hosts)} hosts"
    label = "rank" if len(ranks) == 1 else "ranks"
    return f"{label} {logs.compact(ranks)} ({where})"
