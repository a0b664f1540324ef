"""start_ray: turn an MPI allocation into a private Ray cluster, run a driver
on it, and leave the nodes clean."""

__version__ = "0.1.0"
