"""Test driver: where the driver and the Ray node's processes may run, as
one line: AFFINITY {json} (the driver's CPUs, a task's, the raylet's, and
the CPUs the cluster offers)."""

import json
import os

import psutil
import ray


@ray.remote
def where() -> dict:
    raylet = next(proc for proc in psutil.Process().parents() if proc.name() == "raylet")
    return {"task": sorted(os.sched_getaffinity(0)), "raylet": raylet.cpu_affinity()}


ray.init()
found = ray.get(where.remote())
print("AFFINITY " + json.dumps({"driver": sorted(os.sched_getaffinity(0)), **found,
                                "cpus": ray.cluster_resources().get("CPU")}), flush=True)
