"""Test driver: an actor counts, and a task runs on every node, in turn, until
the file --until exists; each call's pause is timed. Writes --ready after the
first round, its count after each round to --progress (if given), then at
the end one JSON line to --out: the count (an actor
that lost its state would count from 1 again: the driver checks every
answer is the one before plus one), the longest pause, the errors, and the
nodes alive. Exits 1 if any call failed or the count went back."""

import argparse
import json
import os
import sys
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.count = 0

    def add(self) -> int:
        self.count += 1
        return self.count


@ray.remote(num_cpus=0)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True)
    parser.add_argument("--until", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--progress", default=None)
    parser.add_argument("--max-seconds", type=float, default=180)
    args = parser.parse_args()
    ray.init(log_to_driver=False)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    counter = Counter.options(num_cpus=0).remote()
    count, worst, errors, rounds = 0, 0.0, [], 0
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        try:
            answer = ray.get(counter.add.remote(), timeout=60)
            for node in nodes:
                strategy = NodeAffinitySchedulingStrategy(node, soft=False)
                assert ray.get(where.options(scheduling_strategy=strategy).remote(),
                               timeout=60) == node
        except Exception as err:  # noqa: BLE001 - every failure is reported
            errors.append(f"{type(err).__name__}: {err}"[:300])
            break
        worst = max(worst, time.monotonic() - began)
        if answer != count + 1:
            errors.append(f"the count went from {count} to {answer}")
            break
        count, rounds = answer, rounds + 1
        if args.progress:
            with open(args.progress + ".tmp", "w") as handle:
                handle.write(f"{count}\n")
            os.replace(args.progress + ".tmp", args.progress)
        if rounds == 1:
            with open(args.ready + ".tmp", "w") as handle:
                handle.write(f"{len(nodes)}\n")
            os.rename(args.ready + ".tmp", args.ready)
        if os.path.exists(args.until):
            break
        time.sleep(0.05)
    alive = len([n for n in ray.nodes() if n["Alive"]])
    with open(args.out, "w") as handle:
        json.dump({"count": count, "worst_pause": round(worst, 2), "errors": errors,
                   "nodes": len(nodes), "alive": alive}, handle)
    return 1 if errors or time.monotonic() >= deadline else 0


if __name__ == "__main__":
    sys.exit(main())
