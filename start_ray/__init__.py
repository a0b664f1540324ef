"""start_ray: turn an MPI allocation into a private Ray cluster, run a driver
on it, and leave the nodes clean.

Command line: `mpirun -np N python -m start_ray DRIVER [ARGS]`.
Python API:   `start_ray.execute(fn)` or `with start_ray.cluster() as info:`
              (see start_ray.api).
"""

from typing import Any

__version__ = "0.2.0"
__all__ = ["cluster", "execute", "ClusterError", "ClusterInfo", "UsageError", "__version__"]

# Imported on first use: `python -m start_ray --help` and the watchdog
# (`python -m start_ray.watchdog`) need none of the lifecycle.
_EXPORTS = {"cluster": "api", "execute": "api", "ClusterError": "errors",
            "ClusterInfo": "cluster_state", "UsageError": "errors"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
