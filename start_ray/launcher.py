"""What the MPI launcher and the batch scheduler tell a process through its
environment, read without initialising MPI (so `--help` and usage errors are
instant), and the environment that the processes start_ray starts get."""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

# Rank variables set by the launchers users have: Open MPI, PMIx, MPICH/Hydra
# and Cray PMI, Slurm's srun, Cray ALPS' aprun.
_RANK_VARIABLES = (
    "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", "ALPS_APP_PE",
)

# Launcher variables that must not leak into the driver or into Ray: a Python
# process that sees them may try to join the job's MPI world (and hang or
# abort), and Ray workers forked by the raylet would inherit them.
_MPI_PREFIXES = ("OMPI_", "PMIX_", "PRTE_", "PMI_", "MPI_LOCAL", "HYDRA_", "I_MPI_HYDRA")

_JOB_ID_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "COBALT_JOBID", "LSB_JOBID")


def rank_from_environment(environ: Optional[Mapping[str, str]] = None) -> int:
    """This process's rank as the launcher announced it (0 when launched alone)."""
    env = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def under_launcher(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when an MPI launcher or srun/aprun started this process."""
    env = os.environ if environ is None else environ
    return any(name in env for name in _RANK_VARIABLES)


def job_id(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The batch scheduler's job id, when there is one."""
    env = os.environ if environ is None else environ
    for name in _JOB_ID_VARIABLES:
        if env.get(name):
            return env[name].split(".")[0]
    return None


def is_mpi_variable(name: str) -> bool:
    return name.startswith(_MPI_PREFIXES)


def child_environment(extra: Mapping[str, str],
                      environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment for Ray processes and the driver: ours, without the MPI
    launcher's variables, plus `extra`."""
    env = os.environ if environ is None else environ
    clean = {key: value for key, value in env.items() if not is_mpi_variable(key)}
    clean.update(extra)
    return clean
