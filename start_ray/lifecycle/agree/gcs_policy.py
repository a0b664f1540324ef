"""Whether the head's GCS comes back in place when it dies: decided once,
from the options and the Ray every rank runs, into the Agreement. The
preflight says it; the head's GcsKeeper (lifecycle/head/gcs_keeper.py) acts
on it and is the only one to count the GCS's comebacks."""

from __future__ import annotations

import dataclasses
from typing import Optional

from start_ray.node import compat
from start_ray.options import Options


@dataclasses.dataclass(frozen=True)
class GcsPolicy:
    in_place: bool  # the GCS keeps its state in a store and is started again
    limit: int  # at most this many times (--gcs-restarts)
    why: str  # the plan's words for it

    @classmethod
    def of(cls, options: Options, ray_version: Optional[str]) -> "GcsPolicy":
        later = (f"a GCS death re-forms the cluster (--restarts {options.restarts})"
                 if options.restarts else "a GCS death ends the job")
        limit = options.gcs_restarts
        if not limit:
            return cls(False, 0, f"the GCS keeps its state in memory (--gcs-restarts 0): {later}")
        if options.ray_command:
            return cls(False, 0, "the GCS keeps its state in memory (Ray runs through "
                       f"--ray-command, where start_ray cannot start the GCS again): {later}")
        if not compat.gcs_store(ray_version):
            return cls(False, 0, f"the GCS keeps its state in memory (Ray {ray_version} has no "
                       f"GCS store; Ray {compat.show(compat.GCS_STORE_SINCE)}+ does): {later}")
        return cls(True, limit, "the GCS keeps its state in RocksDB in the head's temp dir and "
                   f"is started again in place if it dies, at most {limit} time(s) "
                   "(--gcs-restarts; 0: off)")
