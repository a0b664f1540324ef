"""Who a rank is, in which run: what the low layers (procs, node, record)
are given instead of the Agreement, which is the lifecycle's."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Identity:
    """One rank of one run."""

    run_dir: str  # the run folder, on storage every host sees
    rank: int
    size: int
    host: str
    job_tag: str  # random, per job: names its temp dirs and marks its processes

    @property
    def marker(self) -> str:
        """`<job tag>/<rank>`: per rank, since ranks on one host stop concurrently."""
        return f"{self.job_tag}/{self.rank}"
