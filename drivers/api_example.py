"""The Python API, worked: an MPI program that brings up a Ray cluster over
its ranks, uses it from rank 0, and carries on with MPI afterwards.

    mpirun -np 3 python drivers/api_example.py [--fail]

`start_ray.execute(main)` runs `main(info)` on rank 0 only, with ray.init()
already connected to the job's private cluster; the other ranks serve as Ray
worker nodes meanwhile. Every rank continues after it once the cluster is
stopped; rank 0 gets main's result, the others None. With --fail the body
raises: rank 0 re-raises the error and the other ranks raise
start_ray.ClusterError, so every rank exits non-zero.
"""

import argparse
import json
import socket

import ray
from mpi4py import MPI

import start_ray


@ray.remote(num_cpus=1)
def square(x: int) -> tuple:
    return x * x, ray.get_runtime_context().get_node_id()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fail", action="store_true", help="raise inside the body")
    parser.add_argument("--num-cpus", type=float, default=1)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD

    def body(info: start_ray.ClusterInfo) -> int:
        results = ray.get([square.remote(i) for i in range(12)])
        report = {"nodes": info.num_nodes, "address": info.address,
                  "cpus": info.resources.get("CPU"), "sum": sum(r[0] for r in results),
                  "host": socket.gethostname()}
        print("API_BODY " + json.dumps(report), flush=True)
        if args.fail:
            raise RuntimeError("the body failed on purpose")
        return report["sum"]

    total = start_ray.execute(body, comm=comm, num_cpus=args.num_cpus)

    # Every rank is back, the cluster is gone, MPI works as before.
    ranks = comm.allreduce(1)
    if comm.Get_rank() == 0:
        print(f"API_AFTER ranks={ranks} sum={total}", flush=True)


if __name__ == "__main__":
    main()
