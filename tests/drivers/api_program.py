"""Test program for the Python API. Every rank writes what happened to it to
OUTDIR/rank-<world rank>.json before it exits.

    mpirun -np 3 python api_program.py OUTDIR [--fail] [--split]

--fail:  the body raises.
--split: only world ranks 0 and 1 form the cluster (a sub-communicator),
         while ranks 2.. keep using MPI among themselves; at the end all
         world ranks meet in one allreduce.
"""

import argparse
import json
import os
import sys

from mpi4py import MPI

import start_ray


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--split", action="store_true")
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    outcome = {"rank": rank, "body_ran": False}
    in_cluster = not args.split or rank < 2
    comm = world.Split(0 if in_cluster else 1, rank) if args.split else world
    try:
        if in_cluster:
            with start_ray.cluster(comm=comm, num_cpus=1) as info:
                import ray
                outcome.update(body_ran=True, nodes=info.num_nodes,
                               alive=len([n for n in ray.nodes() if n["Alive"]]))
                if args.fail:
                    raise RuntimeError("the body failed on purpose")
        else:
            # The ranks outside the cluster keep using MPI meanwhile.
            outcome["side_sum"] = sum(comm.allreduce(i) for i in range(200))
        outcome["error"] = None
    except BaseException as err:
        outcome["error"] = type(err).__name__
    outcome["world_sum"] = world.allreduce(1)  # every rank is back in MPI
    with open(os.path.join(args.outdir, f"rank-{rank}.json"), "w") as handle:
        json.dump(outcome, handle)
    return 1 if outcome["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
