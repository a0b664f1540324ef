"""What the MPI launcher and the batch scheduler tell a process through its
environment, read without initialising MPI (so `--help` and usage errors are
instant), and the environment that the processes start_ray starts get."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

# Rank variables set by the launchers users have: Open MPI, PMIx, MPICH/Hydra
# and Cray PMI, Slurm's srun, Cray ALPS' aprun, Flux's `flux run`, LSF's jsrun.
_RANK_VARIABLES = (
    "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", "ALPS_APP_PE",
    "FLUX_TASK_RANK", "JSM_NAMESPACE_RANK",
)

# Launcher variables that must not leak into the driver or into Ray: a Python
# process that sees them may try to join the job's MPI world (and hang or
# abort), and Ray workers forked by the raylet would inherit them.
# Open MPI and PMIx (OMPI_, OPAL_, PMIX_, PRTE_); MPICH's and Intel MPI's Hydra
# (HYDI_, HYDRA_, I_MPI_HYDRA_) and the PMI it speaks (PMI_, also Cray PMI's
# PMI_CONTROL_PORT etc.); Hydra's and Intel MPI's per-process MPI_LOCALRANKID
# and MPI_LOCALNRANKS; Cray PALS (PALS_) and ALPS (ALPS_APP_).
_MPI_PREFIXES = ("OMPI_", "OPAL_", "PMIX_", "PRTE_", "PMI_", "HYDI_", "HYDRA_",
                 "I_MPI_HYDRA_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PALS_", "ALPS_APP_")

_JOB_ID_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "COBALT_JOBID", "LSB_JOBID", "FLUX_JOB_ID")


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


_SCHEDULERS = (("SLURM_JOB_ID", "Slurm"), ("PBS_JOBID", "PBS"), ("COBALT_JOBID", "Cobalt"),
               ("LSB_JOBID", "LSF"), ("FLUX_JOB_ID", "Flux"))


def scheduler(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """`Slurm job 123` (the batch system around us), or None."""
    env = os.environ if environ is None else environ
    for variable, name in _SCHEDULERS:
        if env.get(variable):
            return f"{name} job {env[variable].split('.')[0]}"
    return None


def launcher_name(environ: Optional[Mapping[str, str]] = None) -> str:
    """Which program started this process, from the variables it set."""
    env = os.environ if environ is None else environ
    if "FLUX_TASK_RANK" in env:
        return "flux run"
    if "JSM_NAMESPACE_RANK" in env:
        return "LSF jsrun"
    if "PRTE_LAUNCHED" in env or env.get("OMPI_TOOL_NAME") in ("mpirun", "mpiexec"):
        return "mpirun"
    if "ALPS_APP_PE" in env:
        return "Cray ALPS aprun"
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        return "srun"
    if "PALS_RANKID" in env:
        return "Cray PALS mpiexec"
    if "HYDI_CONTROL_FD" in env or any(name.startswith("I_MPI_HYDRA_") for name in env):
        return "Hydra mpiexec"
    if "PMI_RANK" in env:
        return "a PMI launcher"
    if "PMIX_RANK" in env:
        return "a PMIx launcher"
    return "no launcher (a single process)"


# What MPI_Get_library_version's first line starts with -> a short name.
_LIBRARIES = (
    (re.compile(r"Open MPI v?([\d.]+)"), "Open MPI"),
    (re.compile(r"CRAY MPICH version ([\d.]+)", re.I), "Cray MPICH"),
    (re.compile(r"Intel\(R\) MPI Library ([\d.]+)"), "Intel MPI"),
    (re.compile(r"MVAPICH2? Version\s*:\s*([\w.]+)"), "MVAPICH"),
    (re.compile(r"MPICH Version:\s*([\w.]+)"), "MPICH"),
)


def library_name(version_text: str) -> str:
    """`MPICH 5.0.2` from MPI_Get_library_version()'s text ('' if none)."""
    for pattern, name in _LIBRARIES:
        found = pattern.search(version_text)
        if found:
            return f"{name} {found.group(1)}"
    return version_text.strip().splitlines()[0][:60] if version_text.strip() else ""


def launched_tasks(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """How many tasks the launcher says it started, when it says."""
    env = os.environ if environ is None else environ
    names = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PALS_SIZE", "FLUX_JOB_SIZE",
             "JSM_NAMESPACE_SIZE"]
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        names[:0] = ["SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"]
    for name in names:
        if env.get(name, "").isdigit():
            return int(env[name])
    return None


# This task's number among the tasks on its host (Open MPI, Hydra and Intel
# MPI, Slurm, Cray PALS, Flux, LSF's jsrun).
_LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                         "PALS_LOCAL_RANKID", "FLUX_TASK_LOCAL_ID", "JSM_NAMESPACE_LOCAL_RANK")


def local_rank(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """This task's number on its host, when the launcher says (before MPI)."""
    env = os.environ if environ is None else environ
    for name in _LOCAL_RANK_VARIABLES:
        if env.get(name, "").isdigit():
            return int(env[name])
    return None


def launcher_rank(environ: Optional[Mapping[str, str]] = None) -> int:
    """The launcher's own number for this task (MPI may disagree, see below)."""
    env = os.environ if environ is None else environ
    for name in ("SLURM_PROCID", "PMI_RANK", "ALPS_APP_PE", "PALS_RANKID", "FLUX_TASK_RANK",
                 "JSM_NAMESPACE_RANK"):
        if env.get(name, "").isdigit():
            return int(env[name])
    return rank_from_environment(env)


def check_world(mpi_size: int, environ: Optional[Mapping[str, str]] = None) -> None:
    """Refuse a launcher that started N tasks whose MPI each sees a world of
    one (Open MPI under `srun --mpi=pmi2`): each would start its own one-node
    Ray cluster and train alone, and the job would 'succeed' N times."""
    tasks = launched_tasks(environ)
    if mpi_size == 1 and tasks is not None and tasks > 1:
        from start_ray.errors import UsageError
        env = os.environ if environ is None else environ
        if "FLUX_TASK_RANK" in env:  # Flux speaks its own PMI (MPICH's), not PMIx
            advice = ("Under Flux, use an MPICH-family MPI (MPICH, Cray MPICH, Intel MPI, "
                      "MVAPICH: Flux's PMI serves them as it is); Open MPI needs PMIx, which "
                      "Flux gives only through its flux-pmix plugin (`flux run -o pmi=pmix`)")
        else:
            advice = ("Use the PMI your MPI was built for (Open MPI: `srun --mpi=pmix`; "
                      "MPICH: `srun --mpi=pmi2`; `srun --mpi=list` shows what Slurm has), or "
                      "start the tasks with this MPI's own mpirun/mpiexec")
        raise UsageError(
            f"{launcher_name(environ)} started {tasks} tasks, but MPI sees a world of 1 "
            "process in each: this MPI library does not speak the launcher's process "
            "management interface (e.g. Open MPI under `srun --mpi=pmi2` or `flux run`), "
            f"so every task would make its own one-node cluster. {advice}")


def kill_wait(environ: Optional[Mapping[str, str]] = None) -> Optional[Tuple[float, str]]:
    """How long after SIGTERM (a cancel, the walltime) the scheduler SIGKILLs
    every process of the job, and what the scheduler calls it: Slurm's
    KillWait, PBS's kill_delay (of the job's queue). None outside both, or
    if unknown."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        command, pattern, name = (["scontrol", "show", "config"], r"^KillWait\s*=\s*(\d+)",
                                  "Slurm's KillWait")
    elif env.get("PBS_JOBID") and env.get("PBS_QUEUE"):
        command, pattern, name = (["qstat", "-Qf", env["PBS_QUEUE"]],
                                  r"^\s*kill_delay\s*=\s*(\d+)", "PBS's kill_delay")
    else:
        return None
    try:
        shown = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(pattern, shown, re.M)
    if found:
        return float(found.group(1)), name
    # PBS's default when the queue sets none (qstat shows only what is set)
    return (10.0, "PBS's kill_delay (its default)") if env.get("PBS_JOBID") else None


def is_mpi_variable(name: str) -> bool:
    return name.startswith(_MPI_PREFIXES)


def child_environment(extra: Mapping[str, Optional[str]],
                      environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment for Ray processes and the driver: ours, without the MPI
    launcher's variables, plus `extra` (None: without that variable)."""
    env = os.environ if environ is None else environ
    clean = {key: value for key, value in env.items() if not is_mpi_variable(key)}
    for key, value in extra.items():
        if value is None:
            clean.pop(key, None)
        else:
            clean[key] = value
    return clean


# Hydra's flag, as `mpiexec -h` spells it (a double dash is read alike).
_NO_AUTO_CLEANUP = re.compile(r"^--?disable[-_]auto[-_]cleanup$")


def hydra_without_auto_cleanup(ancestors: Optional[Sequence[Sequence[str]]] = None) -> bool:
    """Whether this rank runs under MPICH's `mpiexec -disable-auto-cleanup`
    (Hydra then tells the surviving ranks of a failure with SIGUSR1). Found
    in the command lines of this process's ancestors, so only where mpiexec
    runs on this host and started its proxy itself (not through srun or
    ssh): nothing else in a rank says so."""
    lines = ancestor_commands() if ancestors is None else ancestors
    return any(any(_NO_AUTO_CLEANUP.match(arg) for arg in line[1:])
               for line in lines if line and os.path.basename(line[0]).startswith("mpiexec"))


def ancestor_commands() -> List[List[str]]:
    """The command lines of this process's ancestors, nearest first."""
    found: List[List[str]] = []
    pid = os.getppid()
    while pid > 1 and len(found) < 32:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                found.append([arg.decode(errors="replace")
                              for arg in handle.read().split(b"\0") if arg])
            with open(f"/proc/{pid}/stat", "rb") as handle:
                pid = int(handle.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found
