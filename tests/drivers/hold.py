"""Test driver: attach with a plain ray.init(), write the cluster's address
to --ready, and keep the cluster until the file --until exists (the test's
signal); then prove the cluster still works and exit. With --warnings FILE
it acts on the walltime warning (SIGUSR1) as a driver should, and goes on:
each one it gets is a line in FILE."""

import argparse
import os
import signal
import sys
import time

import ray


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True)
    parser.add_argument("--until", required=True)
    parser.add_argument("--max-seconds", type=float, default=180)
    parser.add_argument("--warnings")
    args = parser.parse_args()
    if args.warnings:
        def warned(signum: int, frame: object) -> None:
            with open(args.warnings, "a") as handle:
                handle.write("warned\n")
        signal.signal(signal.SIGUSR1, warned)
    ray.init(log_to_driver=False)
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    with open(args.ready + ".tmp", "w") as handle:
        handle.write(f"{ray.get_runtime_context().gcs_address} {nodes}\n")
    os.rename(args.ready + ".tmp", args.ready)
    deadline = time.monotonic() + args.max_seconds
    while not os.path.exists(args.until):
        if time.monotonic() > deadline:
            print("HOLD TIMED OUT", flush=True)
            return 1
        time.sleep(0.2)
    print(f"STILL WORKS {ray.get(ray.remote(lambda: 1).remote())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
