"""Test driver for signals: writes --ready once attached, then waits. On a
signal it records it, proves the cluster still works (a Ray task on every
node), pretends to checkpoint for --checkpoint-seconds, and exits with
--exit-code. With --ignore-term it ignores SIGTERM (to test the grace
period's end), with --ignore-warning SIGUSR1 (to meet the walltime itself). Every event goes to --events, one line each."""

import argparse
import os
import signal
import sys
import time

import ray


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--checkpoint-seconds", type=float, default=1.0)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--ignore-warning", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()

    def event(text: str) -> None:
        with open(args.events, "a") as handle:
            handle.write(text + "\n")

    ray.init(log_to_driver=False)
    # After ray.init(), which installs a SIGTERM handler of its own.
    received = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, lambda s, f: received.append(s))
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.ignore_warning:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    with open(args.ready + ".tmp", "w") as handle:
        handle.write(f"{len(nodes)}\n")
    os.rename(args.ready + ".tmp", args.ready)
    deadline = time.monotonic() + args.max_seconds
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    if not received:
        event("no signal")
        return 1
    event(f"signal {signal.Signals(received[0]).name}")
    strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy
    alive = ray.get([ray.remote(num_cpus=0)(lambda: 1).options(
        scheduling_strategy=strategy(node, soft=False)).remote() for node in nodes])
    event(f"tasks ran on {sum(alive)} nodes after the signal")
    time.sleep(args.checkpoint_seconds)
    event("checkpointed")
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
