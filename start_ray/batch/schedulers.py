"""Which batch scheduler a job runs under, from its variables."""

from __future__ import annotations

import os
from typing import Mapping, Optional

from start_ray.batch.flux import Flux
from start_ray.batch.lsf import Lsf
from start_ray.batch.pbs import Pbs
from start_ray.batch.scheduler import Scheduler
from start_ray.batch.slurm import Slurm


def around(environ: Optional[Mapping[str, str]] = None) -> Optional[Scheduler]:
    """The scheduler whose job this process runs in, if any."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        return Slurm(env)
    if env.get("PBS_JOBID"):
        return Pbs(env)
    if env.get("LSB_JOBID"):
        return Lsf(env)
    if env.get("FLUX_URI"):  # a batch script in a Flux instance (no FLUX_JOB_ID there)
        return Flux(env)
    return None
