"""Test driver: what the job's Ray node offers and what GPU tasks on it see.
One actor per GPU (all alive at once, so each holds its own), each reporting
Ray's GPU ids and the vendors' variables; prints `GPU_INFO {...}`."""

import json
import os

import ray

VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
             "ZE_AFFINITY_MASK", "ONEAPI_DEVICE_SELECTOR", "GLOO_SOCKET_IFNAME",
             "NCCL_SOCKET_IFNAME")


def seen() -> dict:
    return {name: os.environ.get(name) for name in VARIABLES}


@ray.remote(num_gpus=1, num_cpus=0)
class OnOneGpu:
    def report(self) -> dict:
        return {"gpu_ids": [str(i) for i in ray.get_gpu_ids()], **seen()}


def main() -> None:
    ray.init(log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = [OnOneGpu.remote() for _ in range(gpus)]
    tasks = sorted(ray.get([actor.report.remote() for actor in actors]),
                   key=lambda task: task["gpu_ids"])
    print("GPU_INFO " + json.dumps({"gpus": gpus, "tasks": tasks, "driver": seen()}),
          flush=True)


if __name__ == "__main__":
    main()
