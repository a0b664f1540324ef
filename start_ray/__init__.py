"""start_ray: turn an MPI allocation into a private Ray cluster, run a driver
on it, and leave the nodes clean.

Command line: `mpirun -np N python -m start_ray DRIVER [ARGS]`.
Python API:   `with start_ray.cluster() as info: ...` (see start_ray.api).
"""

__version__ = "0.1.0"

from .api import ClusterError, cluster  # noqa: E402
from .lifecycle import ClusterInfo  # noqa: E402
from .options import UsageError  # noqa: E402

__all__ = ["cluster", "ClusterError", "ClusterInfo", "UsageError", "__version__"]
