"""Rank 0's short account of the run: LOG_DIR/<run-id>/summary.txt for
people, summary.json (the same events as records) for programs.

    the cause of a failure, first
    a timeline per rank with news: head up, joined (after k attempts), lost,
        stopped, anything left; ranks whose stories read alike share one line,
        and the ranks a host's node serves are one line for the whole job, so
        that a job of a million ranks still reads in a screenful
    for each lost or failed node, the first error lines of its Ray logs as
        collected into ray/ (collect.py)

It is made from plain facts (`Facts`: the hosts, the nodes, the events of
rank 0's ledger), in time and memory that grow with the hosts and the
events, not with the ranks.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from start_ray.mpi.ranks import HostRanks, RankSet
from start_ray.record import collect, events, logs

JSON = "summary.json"
# The logs whose error lines the summary quotes, most telling first.
TELLING_LOGS = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out",
                "ray-start-*.out")


@dataclasses.dataclass(frozen=True)
class Node:
    rank: int
    host: str
    ip: str
    ranks: RankSet  # the ranks it serves


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the summary is made of."""

    run_id: str
    run_dir: str
    size: int
    hosts: Sequence[HostRanks]
    nodes: Sequence[Node]
    events: Sequence[events.Event]

    @functools.cached_property
    def _node_hosts(self) -> Dict[int, str]:
        return {node.rank: node.host for node in self.nodes}

    def host_of(self, rank: int) -> str:
        """A node rank's host at once; any other rank's by a look at each
        host (rare: only a rank that starts no node and has news)."""
        host = self._node_hosts.get(rank)
        if host is not None:
            return host
        return next((host.name for host in self.hosts if rank in host.ranks), "?")


def lines(facts: Facts) -> List[str]:
    """The timeline: one line per group of ranks whose stories read alike;
    one line for the ranks served by their host's node that have no news."""
    by_rank: Dict[int, List[events.Event]] = {}
    for event in facts.events:
        by_rank.setdefault(event.rank, []).append(event)
    node_ranks = {node.rank for node in facts.nodes}
    stories: Dict[Tuple[str, ...], List[int]] = {}
    for rank in sorted(by_rank.keys() | node_ranks):
        story = tuple(events.describe(event) for event in by_rank.get(rank, [])) or ("no news",)
        stories.setdefault(story, []).append(rank)
    out = []
    for story, ranks in sorted(stories.items(), key=lambda item: item[1][0]):
        parts = []
        for i, what in enumerate(story):
            times = [by_rank[r][i].at for r in ranks if r in by_rank]
            parts.append(what + _when([t for t in times if t is not None]))
        out.append(f"{_name(ranks, facts)}: " + "; ".join(parts))
    served = _served_quietly(facts, by_rank.keys() | node_ranks)
    if served:
        count, hosts = served
        out.append(f"{count} other rank(s) on {len(hosts)} host(s) "
                   f"({logs.hostlist(hosts)}): served by their host's node, with it "
                   "to the end")
    return out


def _served_quietly(facts: Facts, with_news: Set[int]) -> Optional[Tuple[int, List[str]]]:
    """How many ranks start no node and have no news, and on which hosts:
    each host's ranks (a few spans) less its ranks with news."""
    news_by_host: Dict[str, List[int]] = {}
    for rank in with_news:
        news_by_host.setdefault(facts.host_of(rank), []).append(rank)
    count, hosts = 0, []
    for host in facts.hosts:
        quiet = host.ranks.without(news_by_host.get(host.name, ()))
        if quiet:
            count += len(quiet)
            hosts.append(host.name)
    return (count, hosts) if count else None


def troubled(facts: Facts) -> List[int]:
    """The node ranks whose Ray logs explain a failure."""
    trouble = {event.rank for event in facts.events if isinstance(event, events.TROUBLE)}
    return [node.rank for node in facts.nodes if node.rank in trouble]


def write(facts: Facts, status: int, cause: Optional[str]) -> str:
    """Write summary.txt and summary.json into the run folder; the first's path."""
    text = [f"start_ray run {facts.run_id}: exit status {status}; {facts.size} "
            f"rank(s) on {len(facts.hosts)} host(s), {len(facts.nodes)} Ray node(s)"]
    if status != 0 or cause:
        text.append(f"cause: {cause or 'unknown (see the rank logs)'}")
    again = [event for event in facts.events if isinstance(event, events.Restarted)]
    if again:
        text.append(f"attempt {again[-1].restart + 1}: the cluster was started again "
                    f"{again[-1].restart} time(s) (--restarts) after: {again[-1].after}")
    comebacks = gcs_restarts(facts)
    if comebacks:
        text.append(f"the head's GCS died and came back in place {comebacks} time(s)")
    text += ["", "timeline (seconds since rank 0 started):"]
    text += [f"  {line}" for line in lines(facts)]
    trouble = troubled(facts)
    if trouble:
        text += ["", "first error lines in the Ray logs of the nodes in trouble "
                 "(copies under ray/):"]
        for rank in trouble:
            text += [f"  {_name([rank], facts)}:"] + [
                f"    {line}" for line in _errors_of(facts, rank)]
    with open(os.path.join(facts.run_dir, JSON), "w") as handle:
        handle.write(readable_json(record(facts, status, cause)))
    path = os.path.join(facts.run_dir, "summary.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(text) + "\n")
    return path


def record(facts: Facts, status: int, cause: Optional[str]) -> Dict[str, Any]:
    """summary.json: the run, its outcome and every event, for programs."""
    return {
        "run_id": facts.run_id, "status": status, "cause": cause, "ranks": facts.size,
        "hosts": [{"name": host.name, "leader": host.leader, "ranks": host.ranks.text(10**9)}
                  for host in facts.hosts],
        "nodes": [{"rank": node.rank, "host": node.host, "ip": node.ip,
                   "ranks": node.ranks.text(10**9)} for node in facts.nodes],
        "gcs_restarts": gcs_restarts(facts),
        "events": [event.record() for event in facts.events],
    }


def gcs_restarts(facts: Facts) -> int:
    return sum(isinstance(event, events.GcsRestarted) for event in facts.events)


def readable_json(record: Dict[str, Any]) -> str:
    """JSON with each host, node and event on a line of its own: readable,
    and written by json's C encoder (an indented dump is Python's own,
    ~10x slower: half a second for a job of 10,000 nodes)."""
    parts = []
    for key, value in record.items():
        if isinstance(value, list):
            items = ",\n  ".join(json.dumps(item) for item in value)
            parts.append(f'"{key}": [\n  {items}\n ]' if value else f'"{key}": []')
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def _errors_of(facts: Facts, rank: int, per_file: int = 3) -> List[str]:
    folder = logs.ray_logs_dir(facts.run_dir, rank, facts.size, facts.host_of(rank))
    if not os.path.isdir(folder):
        return ["(no Ray logs were collected from this node: its rank did not copy them)"]
    sessions = sorted(glob.glob(os.path.join(folder, "session_2*")))
    found = []
    for pattern in TELLING_LOGS:
        where = sessions[-1:] if not pattern.startswith("ray-start") else [folder]
        for path in sorted(p for base in where for p in glob.glob(os.path.join(base, pattern))):
            for line in collect.error_lines(path, per_file):
                found.append(f"{os.path.relpath(path, facts.run_dir)}: {line[:300]}")
    if found:
        return found
    started = sorted(glob.glob(os.path.join(folder, "ray-start-*.out")), key=os.path.getmtime)
    if started:  # no error anywhere: what `ray start` said last is the best clue
        with open(started[-1], errors="replace") as handle:
            last = [line.strip() for line in handle if line.strip()][-3:]
        return [f"(no error lines) {os.path.relpath(started[-1], facts.run_dir)} ends: "
                + " / ".join(last)[:300]]
    return ["(no error lines in raylet, GCS or `ray start` output)"]


def _when(times: List[float]) -> str:
    if not times:
        return ""
    low, high = min(times), max(times)
    return f" at {low:.1f}s" if high - low < 0.05 else f" at {low:.1f}-{high:.1f}s"


def _name(ranks: List[int], facts: Facts) -> str:
    hosts = sorted({facts.host_of(r) for r in ranks})
    where = hosts[0] if len(hosts) == 1 else f"{len(hosts)} hosts"
    label = "rank" if len(ranks) == 1 else "ranks"
    return f"{label} {RankSet.of(ranks).text()} ({where})"
