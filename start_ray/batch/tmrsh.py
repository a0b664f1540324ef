"""MPI's remote launch through PBS's moms: `pbs_tmrsh`, made to take what an
rsh/ssh launcher gives it.

On a PBS without a TM-aware MPI (PyPI's MPICH and Open MPI, most source
builds), mpiexec starts its remote daemons with ssh: those processes are not
the job's, so `qdel` and the walltime kill do not reach them, and a host
without ssh keys refuses them. OpenPBS ships `pbs_tmrsh`, an rsh through the
moms (tm_spawn): what it starts belongs to the job on that host. But
pbs_tmrsh runs its arguments as a program's argv, while Hydra (and Open MPI's
ssh agent) hand an rsh a command line quoted for the remote shell, as ssh
runs it. So this wrapper takes `[rsh options] HOST WORD...` and runs
`pbs_tmrsh HOST /bin/sh -c "WORD..."` (the words joined by spaces, as ssh
joins them), which is what an ssh launcher expects:

    mpiexec -launcher rsh -launcher-exec "$(command -v start-ray-tmrsh)" ...  # MPICH
    PRTE_MCA_plm_ssh_agent=start-ray-tmrsh mpirun ...                         # Open MPI
"""

from __future__ import annotations

import os
import shutil
from typing import List, Mapping, Optional, Sequence, Tuple

from start_ray.errors import UsageError

# rsh and ssh options with a value (ssh's that Open MPI's agent may pass too)
WITH_VALUE = {"-l", "-o", "-p", "-i", "-F", "-E", "-J"}
PBS_CONF = "/etc/pbs.conf"


def host_and_command(args: Sequence[str]) -> Tuple[str, str]:
    """(host, remote command line) from an rsh/ssh-style argument list."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in WITH_VALUE and rest:
            rest.pop(0)
    if len(rest) < 2:
        raise UsageError("usage: start-ray-tmrsh [rsh options] HOST COMMAND... (an rsh for "
                         "mpiexec's launcher inside a PBS job)")
    return rest[0], " ".join(rest[1:])


def pbs_tmrsh(environ: Mapping[str, str], conf: str = PBS_CONF) -> str:
    """pbs_tmrsh: on PATH, else PBS_EXEC/bin from pbs.conf (PBS_CONF_FILE)."""
    found = shutil.which("pbs_tmrsh", path=environ.get("PATH"))
    if found:
        return found
    path = environ.get("PBS_CONF_FILE") or conf
    exec_dir = _conf_value(path, "PBS_EXEC") or environ.get("PBS_EXEC")
    candidate = os.path.join(exec_dir, "bin", "pbs_tmrsh") if exec_dir else None
    if candidate and os.access(candidate, os.X_OK):
        return candidate
    raise UsageError(f"pbs_tmrsh not found on PATH nor in PBS_EXEC/bin ({path}): is this a "
                     "PBS job on a PBS with pbs_tmrsh (OpenPBS, PBS Pro)?")


def _conf_value(path: str, key: str) -> Optional[str]:
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.strip().partition("=")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        return None
    return None


def command(args: Sequence[str], environ: Mapping[str, str]) -> List[str]:
    """The pbs_tmrsh command line that runs what the launcher asked for."""
    if not environ.get("PBS_JOBID"):
        raise UsageError("start-ray-tmrsh runs inside a PBS job (PBS_JOBID is not set): "
                         "it starts processes through the job's moms")
    host, line = host_and_command(args)
    return [pbs_tmrsh(environ), host, "/bin/sh", "-c", line]
