"""start_ray: turn an MPI allocation into a private Ray cluster, run a driver
on it, and leave the nodes clean.

Command line: `mpirun -np N python -m start_ray DRIVER [ARGS]`.
Python API:   `start_ray.execute(fn)` or `with start_ray.cluster() as info:`
              (see start_ray.entry.api).

The layers, each a subpackage (docs/design.md; tests/test_layers.py holds
the rule of what each may import):

    entry/      the command line, the Python API, serve, attach/stop, batch tools
    lifecycle/  a job's phases and its one loop; agree/, head/ (rank 0), worker/
    batch/      the scheduler around a job, a job step, chains of jobs
    node/       one Ray node: `ray start`, the GCS's node table, Ray's versions
    procs/      the processes a rank owns: tree, watchdog, helpers, signals, driver
    host/       one host: placement, resources, GPUs, network, temp dirs
    record/     what a run leaves: logs, events, summary, Ray's logs, the card
    mpi/        the MPI channel, its messages, the launcher's environment
    errors, options, identity, polling   the vocabulary every layer shares
"""

from typing import Any

__version__ = "0.3.0"
__all__ = ["cluster", "execute", "ClusterError", "ClusterInfo", "UsageError", "__version__"]

# Imported on first use: `python -m start_ray --help` and the helper processes
# (`python -m start_ray.procs.watchdog`) need none of the lifecycle.
_EXPORTS = {"cluster": "start_ray.entry.api", "execute": "start_ray.entry.api",
            "ClusterError": "start_ray.errors", "ClusterInfo": "start_ray.lifecycle.contracts",
            "UsageError": "start_ray.errors"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
