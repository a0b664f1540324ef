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
from typing import Dict, List, Optional, Sequence

from start_ray import __version__
from start_ray.node import compat
from start_ray.record import logs

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


def differences(software: Sequence[Software], hosts: Sequence[str]) -> Optional[str]:
    """None if every rank runs what rank 0 runs; else one message that
    says, per thing that differs, which ranks (on which hosts) run what."""
    parts = []
    for field, name in _FIELDS:
        by_value: Dict[str, List[int]] = {}
        for rank, found in enumerate(software):
            by_value.setdefault(getattr(found, field), []).append(rank)
        if len(by_value) > 1:
            parts.append(f"{name}: " + "; ".join(
                f"{value} on {_where(ranks, hosts)}" for value, ranks in by_value.items()))
    if not parts:
        return None
    return ("the ranks do not all run the same software, so their Ray nodes could not "
            "form one cluster (a differing rank would hang in `ray start`): "
            + " | ".join(parts) + ". Make the same environment (venv, module, conda env) "
            "active on every host before the launcher starts the ranks")


def _where(ranks: List[int], hosts: Sequence[str], most: int = 3) -> str:
    """`rank 1 (host-b)` / `ranks 0,2-3 (host-a, host-c)`."""
    on = sorted({hosts[rank] for rank in ranks})
    named = ", ".join(on[:most]) + (f" and {len(on) - most} more host(s)" if len(on) > most
                                    else "")
    label = "rank" if len(ranks) == 1 else "ranks"
    return f"{label} {logs.compact(ranks)} ({named})"
