"""Every rank must run the same software, checked before anything starts.

A job whose ranks run different Rays (a module loaded on one host and not on
another, a venv that is not on the shared file system) does not fail, it
hangs: the odd rank's `ray start` retries "Could not read 'temp_dir' from GCS"
until the join deadline. So every rank reports what it would run, and a
difference is one usage error naming the odd ranks, their hosts and what
differs (exit 2, nothing started).
"""

from __future__ import annotations

import dataclasses
import platform
from typing import Dict, List, Optional, Sequence, Tuple

from start_ray import __version__
from start_ray.mpi.ranks import RankSet
from start_ray.node import compat

# (field, how a message names it)
_FIELDS = (("python", "Python"), ("ray", "Ray"), ("start_ray", "start_ray"),
           ("ray_command", "the `ray` command"))


@dataclasses.dataclass(frozen=True)
class Software:
    python: str  # 3.11.2
    ray: str  # 2.60.0, or "none"
    start_ray: str
    ray_command: str  # the `ray` this rank's nodes would run, or "not found"


def this_rank() -> Software:
    from start_ray.errors import NodeError
    from start_ray.node.raynode import ray_executable
    try:
        command = ray_executable()
    except NodeError:
        command = "not found"
    return Software(python=platform.python_version(), ray=compat.ray_version() or "none",
                    start_ray=__version__, ray_command=command)


# What one host's ranks run: each distinct Software with its ranks (one
# group, normally), so that rank 0 compares O(hosts) of them, not O(ranks).
Group = Tuple[Software, RankSet, str]


def host_groups(runs: Sequence[Software], ranks: Sequence[int],
                hosts: Sequence[str]) -> List[Group]:
    """A leader's ranks grouped by what they run (and by host name)."""
    found: Dict[Tuple[Software, str], List[int]] = {}
    for one, rank, host in zip(runs, ranks, hosts):
        found.setdefault((one, host), []).append(rank)
    return [(one, RankSet.of(group), host) for (one, host), group in found.items()]


def differences(groups: Sequence[Group]) -> Optional[str]:
    """None if every rank runs the same; else one message that says, per
    thing that differs, which ranks (on which hosts) run what."""
    parts = []
    for field, name in _FIELDS:
        by_value: Dict[str, List[Tuple[RankSet, str]]] = {}
        for one, ranks, host in groups:
            by_value.setdefault(getattr(one, field), []).append((ranks, host))
        if len(by_value) > 1:
            parts.append(f"{name}: " + "; ".join(
                f"{value} on {_where(where)}" for value, where in by_value.items()))
    if not parts:
        return None
    return ("the ranks do not all run the same software, so their Ray nodes could not "
            "form one cluster (a differing rank would hang in `ray start`): "
            + " | ".join(parts) + ". Make the same environment (venv, module, conda env) "
            "active on every host before the launcher starts the ranks")


def _where(where: List[Tuple[RankSet, str]], most: int = 3) -> str:
    """`rank 1 (host-b)` / `ranks 0,2-3 (host-a, host-c)`."""
    ranks = RankSet.of(rank for group, _ in where for rank in group)  # a failing job only
    on = sorted({host for _, host in where})
    named = ", ".join(on[:most]) + (f" and {len(on) - most} more host(s)" if len(on) > most
                                    else "")
    label = "rank" if len(ranks) == 1 else "ranks"
    return f"{label} {ranks.text()} ({named})"
