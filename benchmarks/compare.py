"""start_ray beside the usual ways of starting Ray on HPC, in one run.

    python benchmarks/compare.py [--ranks 1 2 4 8] [--repeat 3] [--hold 60]

For N ranks (one Ray node per rank, 1 CPU each, as the baselines start N
nodes), medians over --repeat runs:
1. launch -> driver start: start_ray, the sleep recipe of common Slurm
   scripts, and the floor (one `ray start --head` + one `ray start
   --address`, timed alone; see benchmarks/baselines.py); start_ray / floor.
2. driver exit -> mpirun exit, and SIGTERM to mpirun -> mpirun exit.
3. CPU seconds of start_ray's own processes (ranks and watchdogs, not Ray's)
   while a driver holds the cluster for --hold seconds (one run per N).
4. PPO throughput (env steps/s per iteration, iterations 2..K, runs
   alternating) under start_ray against the same training with a plain
   local `ray.init()` on the same CPUs.
5. Resident memory of start_ray's own processes per rank.
Writes logs/benchmarks/compare.md and compare.png (time to driver against N).
Defaults take about 14 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional

import baselines
import train_ppo

ROOT = baselines.ROOT
BIN = baselines.BIN
OUT = os.path.join(ROOT, "logs", "benchmarks")
TRAIN = os.path.join(ROOT, "drivers", "train_ppo.py")


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("START_RAY_", "RAY_"))}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONUNBUFFERED="1", START_RAY_LOG_DIR=os.path.join(OUT, "runs"), **extra)
    return env


def start_ray_command(np: int, *driver: str) -> List[str]:
    return [os.path.join(BIN, "mpirun"), "--oversubscribe", "-np", str(np), sys.executable,
            "-m", "start_ray", "--node-per-rank", "--num-cpus", "1", *driver]


def start_ray_run(np: int, hold: float, sigterm: bool) -> dict:
    """One job whose driver holds the cluster `hold` seconds; then it exits,
    or (sigterm) mpirun gets SIGTERM as soon as the driver has reported."""
    mark = uuid.uuid4().hex
    report = os.path.join(tempfile.mkdtemp(prefix="srbc-"), "report.json")
    cmd = start_ray_command(np, baselines.HOLD, "--hold", str(hold), "--report", report)
    launched = time.time()
    proc = subprocess.Popen(cmd, env=_env(BENCH_MARK=mark), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = launched + hold + 600
    while not os.path.exists(report) or not open(report).read().endswith("}"):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit(f"start_ray with {np} ranks failed:\n{proc.communicate()[0]}")
        time.sleep(0.05)
    with open(report) as handle:
        result = json.load(handle)
    signalled = time.time()
    if sigterm:
        proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    ended = time.time()
    if proc.returncode != 0 and not sigterm:
        raise SystemExit(f"start_ray with {np} ranks exited {proc.returncode}:\n{output}")
    left = baselines.left_after(mark)
    if left:
        baselines.kill_marked(mark)
        raise SystemExit(f"start_ray with {np} ranks left process(es):\n" + "\n".join(left))
    return {"to_driver": result["driver_started"] - launched,
            "to_end": ended - (signalled if sigterm else result["driver_exiting"]),
            "ranks": result["ranks"]}


def ppo_throughput(iters: int, plain: bool) -> List[float]:
    """Env steps per second of each iteration after the first (which warms
    up): per iteration, so that one slow moment on a noisy machine counts once."""
    results = tempfile.mkdtemp(prefix="srbp-", dir=OUT)
    driver = [TRAIN, "--framework", "tf2", "--stop-iters", str(iters), "--train-batch-size",
              "2000", "--num-env-runners", "1", "--checkpoint-frequency", "0",
              "--results-dir", results]
    cmd = ([sys.executable, *driver] if plain else
           [sys.executable, "-m", "start_ray", "--num-cpus", "2", *driver])
    rows = train_ppo.train(cmd, _env(), results, "PPO " + ("plain" if plain else "start_ray"))
    steps = [float(row["num_env_steps_sampled_lifetime"]) for row in rows]
    return [(steps[i] - steps[i - 1]) / float(rows[i]["time_this_iter_s"])
            for i in range(1, len(rows))]


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(args: argparse.Namespace) -> dict:
    data: dict = {"floor": [], "ranks": {}}
    for _ in range(args.repeat):
        data["floor"].append(baselines.floor())
    progress(f"floor: {data['floor']}")
    for np in args.ranks:
        row: dict = {"start_ray": [], "exit": [], "sigterm": [], "sleep": []}
        for i in range(args.repeat):
            run = start_ray_run(np, 0, sigterm=i % 2 == 1)
            row["start_ray"].append(run["to_driver"])
            row["sigterm" if i % 2 == 1 else "exit"].append(run["to_end"])
        held = start_ray_run(np, args.hold, sigterm=True)
        row["start_ray"].append(held["to_driver"])
        row["sigterm"].append(held["to_end"])
        row["held"] = held["ranks"]
        for _ in range(args.sleep_repeat):
            row["sleep"].append(baselines.sleep_recipe(np))
        data["ranks"][np] = row
        progress(f"N={np}: {json.dumps({k: v for k, v in row.items() if k != 'held'})}")
    if args.ppo_iters:
        data["ppo"] = {"start_ray": [], "plain": []}
        for _ in range(args.ppo_runs):  # alternating, so drifts hit both alike
            data["ppo"]["start_ray"] += ppo_throughput(args.ppo_iters, plain=False)
            data["ppo"]["plain"] += ppo_throughput(args.ppo_iters, plain=True)
        progress(f"PPO: {data['ppo']}")
    return data


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def table(data: dict, args: argparse.Namespace) -> str:
    head = median([f["head"] for f in data["floor"]])
    join = median([f["join"] for f in data["floor"]])
    lines = [
        f"start_ray against the usual ways of starting Ray, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores; one Ray node per rank (1 CPU each); medians of "
        f"{args.repeat + 1} start_ray runs, {args.sleep_repeat} sleep-recipe runs, "
        f"{args.repeat} floor runs. Floor: `ray start --head` {head:.1f}s + one "
        f"`ray start --address` {join:.1f}s.",
        "",
        "| ranks | start_ray: launch -> driver (s) | sleep recipe (s) | floor (s) "
        "| start_ray / floor | driver exit -> end (s) | SIGTERM -> end (s) "
        f"| CPU s of rank 0 in {args.hold:g}s | CPU s per other rank | RSS rank 0 (MiB) "
        "| RSS other rank (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for np, row in data["ranks"].items():
        floor = head + (join if np > 1 else 0.0)
        rank0 = [r for r in row["held"] if r["rank0"]]
        others = [r for r in row["held"] if not r["rank0"]]
        mib = 2**20
        lines.append(
            f"| {np} | {median(row['start_ray']):.1f} | {median(row['sleep']):.1f} "
            f"| {floor:.1f} | {median(row['start_ray']) / floor:.2f} "
            f"| {median(row['exit']):.1f} | {median(row['sigterm']):.1f} "
            f"| {median([r['cpu'] for r in rank0]):.2f} "
            f"| {median([r['cpu'] for r in others]) if others else 0:.2f} "
            f"| {median([r['rss'] for r in rank0]) / mib:.0f} "
            f"| {median([r['rss'] for r in others]) / mib if others else 0:.0f} |")
    if "ppo" in data:
        ours, plain = median(data["ppo"]["start_ray"]), median(data["ppo"]["plain"])
        lines += ["", f"PPO throughput (tf2, CartPole, 2000-step batches, 1 env runner, 2 "
                  f"CPUs; median env steps/s of iterations 2..{args.ppo_iters} of "
                  f"{args.ppo_runs} alternating runs each): {ours:.0f} under start_ray, "
                  f"{plain:.0f} with a plain local ray.init(): ratio {ours / plain:.2f}"]
    lines += ["", "Reproduce: `python benchmarks/compare.py " + " ".join(sys.argv[1:]) + "`"]
    return "\n".join(lines)


def plot(data: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ranks = list(data["ranks"])
    head = median([f["head"] for f in data["floor"]])
    join = median([f["join"] for f in data["floor"]])
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("start_ray", "start_ray"), ("sleep", "sleep recipe")):
        ax.plot(ranks, [median(data["ranks"][n][key]) for n in ranks], "o-", label=label)
    ax.plot(ranks, [head + (join if n > 1 else 0) for n in ranks], "k--", label="floor")
    ax.set_xlabel("ranks (Ray nodes)")
    ax.set_ylabel("launch -> driver start (s)")
    ax.set_xticks(ranks)
    ax.set_title(f"Time to a ready cluster, {os.cpu_count()}-core machine")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeat", type=int, default=3,
                        help="start_ray runs with a short driver, and floor runs, per N "
                             "(plus one run holding the cluster --hold seconds)")
    parser.add_argument("--sleep-repeat", type=int, default=1,
                        help="sleep-recipe runs per N (its time is its sleeps, +-0.1 s)")
    parser.add_argument("--hold", type=float, default=60.0,
                        help="seconds the CPU-measuring driver holds the cluster")
    parser.add_argument("--ppo-iters", type=int, default=4, help="0 skips the PPO part")
    parser.add_argument("--ppo-runs", type=int, default=2,
                        help="PPO runs each way, alternating")
    args = parser.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    began = time.time()
    data = measure(args)
    text = table(data, args) + f"\n\n(the whole benchmark took {time.time() - began:.0f}s)"
    print(text)
    with open(os.path.join(OUT, "compare.md"), "w") as handle:
        handle.write(text + "\n")
    with open(os.path.join(OUT, "compare.json"), "w") as handle:
        json.dump(data, handle)
    plot(data, os.path.join(OUT, "compare.png"))
    print(f"wrote {os.path.join(OUT, 'compare.md')} and compare.png")


if __name__ == "__main__":
    main()
