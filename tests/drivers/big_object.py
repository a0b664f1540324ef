"""Test driver: an object larger than /dev/shm through Ray's object store.
Puts --megabytes of data, reads it back in a task on every node, and prints
BIG_OBJECT {json} with what it saw (sizes, /dev/shm, the store's place)."""

import argparse
import json
import shutil
import sys

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=0)
def checksum(data: np.ndarray) -> int:
    return int(data[::4096].sum())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    ray.init(log_to_driver=False)
    data = np.arange(args.megabytes * 2**20 // 8, dtype=np.int64)
    ref = ray.put(data)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    sums = ray.get([checksum.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False)).remote(ref) for node in nodes])
    print("BIG_OBJECT " + json.dumps({
        "bytes": int(data.nbytes), "shm_bytes": shutil.disk_usage("/dev/shm").total,
        "nodes": len(nodes), "sums_equal": len(set(sums)) == 1,
        "right": sums[0] == int(data[::4096].sum()),
        "store_bytes": [node["Resources"].get("object_store_memory") for node in ray.nodes()
                        if node["Alive"]]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
