"""Test program for the Python API. Every rank writes what happened to it to
OUTDIR/rank-<world rank>.json before it exits.

    mpirun -np 3 python api_program.py OUTDIR [--fail] [--split] [--with]
        [--hold] [--fail-fast]

--fail:      the body raises.
--split:     only world ranks 0 and 1 form the cluster (a sub-communicator),
             while ranks 2.. keep using MPI among themselves; at the end all
             world ranks meet in one allreduce.
--with:      the `with start_ray.cluster()` form instead of execute().
--hold:      the body writes OUTDIR/ready, then waits (in short sleeps, up to
             120 s) for OUTDIR/until or the walltime warning; it records
             whether the warning came, and runs a task on every node after.
--fail-fast: the cluster is made with fail_fast=True.
--unguarded: the `with` body calls Ray on every rank, as a body written for
             start_ray 0.1 did (its own rank 0 only, then): the other ranks
             record what their Ray call did.
"""

import argparse
import json
import os
import sys
import time

from mpi4py import MPI

import start_ray


def body(info, args, outcome):
    import ray
    outcome.update(body_ran=True, nodes=info.num_nodes,
                   alive=len([n for n in ray.nodes() if n["Alive"]]))
    if args.fail:
        raise RuntimeError("the body failed on purpose")
    if args.hold:
        open(os.path.join(args.outdir, "ready"), "w").close()
        until = os.path.join(args.outdir, "until")
        deadline = time.monotonic() + 120
        while not os.path.exists(until) and time.monotonic() < deadline:
            if info.walltime_warning.is_set():
                outcome["walltime_warning"] = True
                break
            time.sleep(0.2)
        outcome["tasks_after"] = sum(ray.get([ray.remote(lambda: 1).remote()
                                              for _ in range(info.num_nodes)]))
    return "result of rank 0"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--split", action="store_true")
    parser.add_argument("--with", dest="with_form", action="store_true")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--fail-fast", action="store_true")
    parser.add_argument("--unguarded", action="store_true")
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    outcome = {"rank": rank, "body_ran": False, "walltime_warning": False}
    in_cluster = not args.split or rank < 2
    comm = world.Split(0 if in_cluster else 1, rank) if args.split else world
    settings = dict(comm=comm, num_cpus=1, fail_fast=args.fail_fast)
    try:
        if not in_cluster:
            # The ranks outside the cluster keep using MPI meanwhile.
            outcome["side_sum"] = sum(comm.allreduce(i) for i in range(200))
        elif args.with_form:
            with start_ray.cluster(**settings) as info:
                if info:
                    outcome["result"] = body(info, args, outcome)
                elif args.unguarded:
                    began = time.monotonic()
                    try:
                        import ray
                        ray.get(ray.put(1))
                        outcome["stray_ray"] = True
                    except start_ray.ClusterError as err:
                        outcome["refused"] = str(err)
                    outcome["ray_call_seconds"] = time.monotonic() - began
        else:
            outcome["result"] = start_ray.execute(body, args, outcome, **settings)
        outcome["error"] = None
    except BaseException as err:
        outcome["error"] = type(err).__name__
        outcome["message"] = str(err)
        if isinstance(err, SystemExit):  # the API's own exit status (75: not done)
            outcome["exit_status"] = err.code
    outcome["world_sum"] = world.allreduce(1)  # every rank is back in MPI
    with open(os.path.join(args.outdir, f"rank-{rank}.json"), "w") as handle:
        json.dump(outcome, handle)
    return outcome.get("exit_status") or (1 if outcome["error"] else 0)


if __name__ == "__main__":
    sys.exit(main())
