"""Benchmark driver for the peers' comparison: connect to the cluster
(RAY_ADDRESS, or Ray's own discovery), wait until --nodes nodes are alive,
write when that was (epoch seconds) to --report, and exit 0."""

import argparse
import json
import time


def main() -> int:
    started = time.time()
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    import ray
    ray.init(log_to_driver=False)
    deadline = time.monotonic() + args.timeout
    alive = 0
    while time.monotonic() < deadline:
        alive = sum(1 for node in ray.nodes() if node["Alive"])
        if alive >= args.nodes:
            break
        time.sleep(0.05)
    connected = time.time()
    with open(args.report, "w") as handle:
        json.dump({"started": started, "connected": connected, "nodes": alive}, handle)
    return 0 if alive >= args.nodes else 1


if __name__ == "__main__":
    raise SystemExit(main())
