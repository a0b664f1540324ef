"""A tiny driver: attach to the job's cluster with a plain `ray.init()`, run
one task on every node, print what it saw (as JSON, for tests and smoke runs).

    mpirun -np 4 python -m start_ray drivers/cluster_info.py [--exit-code N] [--out FILE]
"""

import argparse
import json
import os
import resource
import socket
import sys

import ray

# Variables that MPI launchers set in each rank (Open MPI/PMIx, MPICH/Intel
# Hydra and PMI, Cray PALS/ALPS): the driver and Ray's workers must see none.
LAUNCHER_PREFIXES = ("OMPI_", "OPAL_", "PMIX_", "PRTE_", "PMI_", "HYDI_", "HYDRA_",
                     "I_MPI_HYDRA", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PALS_", "ALPS_APP")


def launcher_variables() -> list:
    return sorted(k for k in os.environ if k.startswith(LAUNCHER_PREFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-address", default=None,
                        help="cluster address (default: RAY_ADDRESS, as start_ray sets it)")
    parser.add_argument("--exit-code", type=int, default=0, help="exit with this status")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    args = parser.parse_args()

    ray.init(address=args.ray_address, log_to_driver=False)
    nodes = [node for node in ray.nodes() if node["Alive"]]

    @ray.remote(num_cpus=0)
    def where() -> dict:
        return {"host": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "mpi_vars": launcher_variables()}

    strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
    seen = ray.get([where.options(scheduling_strategy=strategy(node["NodeID"], soft=False))
                    .remote() for node in nodes])
    report = {
        "address": ray.get_runtime_context().gcs_address,
        "env_ray_address": os.environ.get("RAY_ADDRESS"),
        "alive_nodes": len(nodes),
        "ranks": sorted(int(n["Labels"].get("start_ray.rank", -1)) for n in nodes),
        "cpus": ray.cluster_resources().get("CPU", 0),
        "tasks_ran_on": sorted(s["node_id"] for s in seen),
        "task_ips": sorted(s["ip"] for s in seen),
        "task_hosts": sorted(s["host"] for s in seen),
        "task_open_files": sorted(s["open_files"] for s in seen),
        "driver_mpi_vars": launcher_variables(),
        "worker_mpi_vars": sorted({v for s in seen for v in s["mpi_vars"]}),
        "argv": sys.argv[1:],
    }
    ray.shutdown()
    text = json.dumps(report, sort_keys=True)
    print("CLUSTER_INFO " + text, flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
