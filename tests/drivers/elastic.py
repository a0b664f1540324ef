"""Test driver for a cluster whose members change (tests/test_elastic.py).

Writes the nodes it sees at its start to --ready; then waits until a node
of every rank below --ranks is alive, those in --replaced by a node other
than at the start (one that rejoined), runs a task pinned to each of those
nodes, and writes what it saw as JSON to --out. Exit 1 if that never came
within --timeout seconds.
"""

import argparse
import json
import os
import sys
import time
from typing import Dict, List

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

RANK_LABEL = "start_ray.rank"  # what start_ray labels each node with


def alive_by_rank() -> Dict[int, List[str]]:
    """The alive nodes' IDs, by the rank that started them."""
    found: Dict[int, List[str]] = {}
    for node in ray.nodes():
        label = (node.get("Labels") or {}).get(RANK_LABEL)
        if node["Alive"] and label is not None:
            found.setdefault(int(label), []).append(node["NodeID"])
    return found


@ray.remote(num_cpus=0)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


def write(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as handle:
        handle.write(json.dumps(data) + "\n")
    os.rename(path + ".tmp", path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ranks", type=int, required=True)
    parser.add_argument("--replaced", type=int, nargs="*", default=[])
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    ray.init(log_to_driver=False)
    began = time.monotonic()
    start = alive_by_rank()
    write(args.ready, {"start": start})
    chosen: Dict[int, str] = {}
    while time.monotonic() < began + args.timeout:
        now = alive_by_rank()
        chosen = {}
        for rank in range(args.ranks):
            new = [node for node in now.get(rank, [])
                   if rank not in args.replaced or node not in start.get(rank, [])]
            if new:
                chosen[rank] = new[0]
        if len(chosen) == args.ranks:
            break
        time.sleep(0.2)
    else:
        write(args.out, {"start": start, "end": alive_by_rank(), "timed_out": True})
        return 1
    waited = time.monotonic() - began
    cpus = {node["NodeID"]: node["Resources"].get("CPU") for node in ray.nodes()}
    ran = ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id, soft=False)).remote() for _, node_id in sorted(chosen.items())], timeout=60)
    write(args.out, {"start": start, "end": {str(r): n for r, n in chosen.items()},
                     "cpus": {str(r): cpus.get(n) for r, n in chosen.items()},
                     "waited": waited, "tasks_ran_on": ran, "timed_out": False})
    return 0


if __name__ == "__main__":
    sys.exit(main())
