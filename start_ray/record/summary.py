"""Rank 0's short account of the run: LOG_DIR/<run-id>/summary.txt for
people, summary.json (the same events as records) for programs.

    the cause of a failure, first
    a timeline per rank: head up, joined (after k attempts), lost, stopped,
        anything left; ranks that behaved alike share one line, so that a job
        of 1,000 ranks still reads in a screenful
    for each lost or failed node, the first error lines of its Ray logs as
        collected into ray/ (collect.py)

Rank 0 hears everything it needs over the protocol anyway (Joined, Failed,
Lost, Done); its ledger writes it down as typed events (events.py).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.head.ledger import Ledger
from start_ray.record import collect, events, logs

JSON = "summary.json"
# The logs whose error lines the summary quotes, most telling first.
TELLING_LOGS = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out",
                "ray-start-*.out")


def lines(ledger: Ledger) -> List[str]:
    """The timeline, one line per group of ranks whose stories read alike."""
    agreed = ledger.agreed
    by_rank: Dict[int, List[events.Event]] = {rank: [] for rank in range(agreed.size)}
    for event in ledger.events:
        by_rank.setdefault(event.rank, []).append(event)
    groups: Dict[Tuple[str, ...], List[int]] = {}
    for rank in range(agreed.size):
        story = tuple(events.describe(event) for event in by_rank[rank]) or ("no news",)
        groups.setdefault(story, []).append(rank)
    out = []
    for story, ranks in sorted(groups.items(), key=lambda item: item[1][0]):
        parts = []
        for i, what in enumerate(story):
            times = [by_rank[r][i].at for r in ranks if by_rank[r]]
            parts.append(what + _when([t for t in times if t is not None]))
        out.append(f"{_name(ranks, agreed)}: " + "; ".join(parts))
    return out


def troubled(ledger: Ledger) -> List[int]:
    """The node ranks whose Ray logs explain a failure."""
    return [rank for rank in ledger.agreed.node_ranks if ledger.has(rank, *events.TROUBLE)]


def write(ledger: Ledger, status: int, cause: Optional[str]) -> str:
    """Write summary.txt and summary.json into the run folder; the first's path."""
    agreed = ledger.agreed
    text = [f"start_ray run {agreed.plan.run_id}: exit status {status}; {agreed.size} "
            f"rank(s) on {len(set(agreed.hosts))} host(s), {len(agreed.nodes)} Ray node(s)"]
    if status != 0 or cause:
        text.append(f"cause: {cause or 'unknown (see the rank logs)'}")
    text += ["", "timeline (seconds since rank 0 started):"]
    text += [f"  {line}" for line in lines(ledger)]
    trouble = troubled(ledger)
    if trouble:
        text += ["", "first error lines in the Ray logs of the nodes in trouble "
                 "(copies under ray/):"]
        for rank in trouble:
            text += [f"  {agreed.name_ranks([rank])}:"] + [
                f"    {line}" for line in _errors_of(agreed, rank)]
    with open(os.path.join(agreed.run_dir, JSON), "w") as handle:
        json.dump(record(ledger, status, cause), handle, indent=1)
    path = os.path.join(agreed.run_dir, "summary.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(text) + "\n")
    return path


def record(ledger: Ledger, status: int, cause: Optional[str]) -> Dict[str, Any]:
    """summary.json: the run, its outcome and every event, for programs."""
    agreed = ledger.agreed
    return {
        "run_id": agreed.plan.run_id, "status": status, "cause": cause,
        "ranks": agreed.size, "hosts": list(agreed.hosts),
        "nodes": [{"rank": node.rank, "host": node.host, "ip": node.ip,
                   "ranks": list(node.ranks)} for node in agreed.nodes],
        "events": [event.record() for event in ledger.events],
    }


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
