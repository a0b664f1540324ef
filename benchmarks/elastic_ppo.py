"""RLlib through a lost node: PPO on 3 Ray nodes (one per rank); once
training is under way, the raylet of the node that runs the algorithm's own
actor is SIGKILLed (rank 1's when that actor is on the head, which cannot
come back). Prints per run how long the node took to rejoin, RLlib's healthy
env runners and their restarts, Tune's trial restarts (train_ppo.py's
--max-failures) and the iterations done; publishes the table as
benchmarks/results/elastic_ppo.md, with each run in elastic_ppo.json. Exit 1 if a
run failed, a node did not come back, or RLlib did not get its env runners
back.

    python benchmarks/elastic_ppo.py [--runs 2] [--iterations 10] [--kill-after 3]

About 4 minutes a run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import os
import re
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests"), HERE]

import evidence  # noqa: E402
import leftovers as found_by  # noqa: E402

from jobs import Jobs, Running, node_process  # noqa: E402

OUT = os.path.join(ROOT, "logs", "benchmarks")
HEALTHY, RESTARTS = "num_healthy_workers", "num_remote_worker_restarts"


def wait_for_iterations(running: Running, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running.proc.poll() is None:
        logs = glob.glob(os.path.join(running.log_root, "*", "driver.log"))
        if logs and len(re.findall(r"iteration \d+/", open(logs[0]).read())) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"no iteration {count} within {timeout:g}s")


def rejoin_seconds(rank0_log: str) -> Optional[float]:
    """From rank 0's `lost its Ray node` line to its `rejoined` line."""
    stamps = {}
    for line in rank0_log.splitlines():
        for key in ("lost its Ray node", "rejoined the cluster"):
            if key in line and key not in stamps:
                stamps[key] = datetime.datetime.fromisoformat(line.split(" | ")[0])
    if len(stamps) < 2:
        return None
    return (stamps["rejoined the cluster"] - stamps["lost its Ray node"]).total_seconds()


def algorithm_rank(running: Running) -> Optional[int]:
    """The rank whose Ray node runs the algorithm's own actor (`ray::PPO`),
    from the job variable in that process's raw environment."""
    for proc in running.processes():
        if " ".join(found_by.cmdline(proc.pid)).startswith("ray::PPO"):
            job = found_by.environ(proc.pid).get("START_RAY_JOB", "")
            if job.rpartition("/")[2].isdigit():
                return int(job.rpartition("/")[2])
    return None


def one_run(iterations: int, kill_after: int, workdir: str) -> dict:
    """Train; kill the raylet of the algorithm's node (a worker's), else rank 1's."""
    jobs = Jobs(workdir)
    try:
        running = jobs.start(3, ["--num-cpus", "1", os.path.join(ROOT, "drivers", "train_ppo.py"),
                                 "--stop-iters", str(iterations)])
        wait_for_iterations(running, kill_after, 600)
        home = algorithm_rank(running)
        victim = home if home else 1
        raylet = node_process(running, "raylet", victim)
        if raylet is None:
            raise SystemExit(f"no raylet of rank {victim}")
        raylet.kill()
        result = running.wait(900)
    finally:
        jobs.cleanup()
    (progress,) = glob.glob(os.path.join(result.run_dir, "results", "*", "*", "progress.csv"))
    with open(progress, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(os.path.join(result.run_dir, "driver.log"), errors="replace") as handle:
        restarts = handle.read().count("Trial task failed")
    healthy = [int(row[HEALTHY]) for row in rows if row.get(HEALTHY, "").isdigit()]
    return {"lost": "the algorithm's" if home else "env runners'", "status": result.returncode,
            "rejoined": rejoin_seconds(result.rank_logs()["rank-0.log"]),
            "healthy": f"{min(healthy)} -> {healthy[-1]}" if healthy else "?",
            "final_healthy": healthy[-1] if healthy else None,
            "runner_restarts": rows[-1].get(RESTARTS, "?") if rows else "?",
            "trial_restarts": restarts,
            "iterations": rows[-1]["training_iteration"] if rows else "0"}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--kill-after", type=int, default=3, help="iterations done first")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    workdir = os.path.join(OUT, f"elastic-ppo-{time.strftime('%H%M%S')}")
    os.makedirs(workdir)
    runs = []
    for i in range(args.runs):
        # a folder per run: the iterations are counted in the run's own driver.log
        run_dir = os.path.join(workdir, f"run-{i + 1}")
        os.makedirs(run_dir)
        runs.append(one_run(args.iterations, args.kill_after, run_dir))
        print(f"[{i + 1}/{args.runs}] {runs[-1]}", flush=True)
    lines = [
        f"PPO (tf2, CartPole-v1, {args.iterations} iterations) on 3 Ray nodes (1 CPU each: "
        "the algorithm and 2 env runners); after iteration "
        f"{args.kill_after} the raylet of the algorithm's node was SIGKILLed (rank 1's when "
        "the algorithm ran on the head).",
        "",
        "| run | node lost | exit status | rejoined after (s) | healthy env runners "
        "(min -> last) | env runner restarts | trial restarts (--max-failures) | iterations |",
        "|---:|---|---:|---:|---|---:|---:|---:|",
    ] + [f"| {i} | {r['lost']} | {r['status']} | "
         + (f"{r['rejoined']:.1f}" if r["rejoined"] is not None else "never")
         + f" | {r['healthy']} | {r['runner_restarts']} | {r['trial_restarts']} "
         f"| {r['iterations']} |" for i, r in enumerate(runs, 1)]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    evidence.publish("elastic_ppo", "RLlib PPO through a lost node", text, runs, "bench-elastic")
    ok = all(r["status"] == 0 and r["rejoined"] is not None and r["final_healthy"] == 2
             and r["iterations"] == str(args.iterations) for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
