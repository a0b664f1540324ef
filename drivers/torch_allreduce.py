"""Check the job's network the way distributed training uses it: an unmodified
Ray Train TorchTrainer with one worker per Ray node (gloo by default), an
all-reduce across them, then a few DistributedDataParallel steps. Prints what
every worker saw as one JSON line (`ALLREDUCE {...}`) and exits 0 when the sum
is right.

    mpirun -np 3 python -m start_ray --interface ib0 drivers/torch_allreduce.py
    mpirun -np 3 python -m start_ray drivers/torch_allreduce.py --backend nccl --use-gpu

A host with several networks is where this fails without start_ray's help:
gloo binds to the address the host name resolves to, and NCCL picks an
interface by name, whatever network the Ray nodes use. start_ray exports
GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME for the interface of each node's
address (docs/networking.md).
"""

import argparse
import json
import os
import socket
import sys
import tempfile
from typing import Any, Dict

import ray

REPORT = "allreduce.json"


def interfaces() -> Dict[str, Any]:
    """The interfaces this process's collectives were told to use."""
    return {name: os.environ.get(name) for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")}


def train_loop(config: Dict[str, Any]) -> None:
    import torch
    import torch.distributed as dist
    from ray import train
    from ray.train.torch import prepare_model

    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)  # 1 + 2 + ... + world on every worker
    model = prepare_model(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(config["steps"]):
        loss = model(torch.randn(16, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
    mine = {"rank": rank, "host": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
            "sum": total.item(), "loss": loss.item(), **interfaces()}
    everyone = [None] * world
    dist.all_gather_object(everyone, mine)
    # Ray Train keeps reported metrics with a checkpoint (Train V2): rank 0
    # saves the report as one, on the run's (shared) storage.
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            with open(os.path.join(folder, REPORT), "w") as handle:
                json.dump({"workers": everyone, "world": world}, handle)
            checkpoint = train.Checkpoint.from_directory(folder)
        train.report({"world": world}, checkpoint=checkpoint)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=0,
                        help="training workers, one per node (default: every alive node)")
    parser.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--steps", type=int, default=3, help="DDP steps")
    args = parser.parse_args()

    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ray.init(log_to_driver=False)
    workers = args.workers or len([n for n in ray.nodes() if n["Alive"]])
    storage = os.environ.get("START_RAY_RUN_DIR") or os.path.abspath("logs")
    trainer = TorchTrainer(
        train_loop, train_loop_config={"steps": args.steps},
        torch_config=TorchConfig(backend=args.backend),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=args.use_gpu,
                                     resources_per_worker={"CPU": 1},
                                     placement_strategy="STRICT_SPREAD"),
        run_config=RunConfig(name="torch_allreduce", storage_path=storage,
                             failure_config=FailureConfig(max_failures=0)))
    result = trainer.fit()
    with result.checkpoint.as_directory() as folder:
        with open(os.path.join(folder, REPORT)) as handle:
            report = json.load(handle)
    report["expected_sum"] = workers * (workers + 1) / 2
    report["driver"] = interfaces()
    print("ALLREDUCE " + json.dumps(report), flush=True)
    right = all(w["sum"] == report["expected_sum"] for w in report["workers"])
    return 0 if right and report["world"] == workers else 1


if __name__ == "__main__":
    sys.exit(main())
