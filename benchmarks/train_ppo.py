"""The driver's quality bar: with default hyperparameters, PPO on CartPole-v1
reaches a mean episode return of 450 within 200k environment steps, for tf2
and for torch, whatever the seed. Runs each framework with each --seeds,
prints steps-to-450 per run and, per framework, the median and range;
publishes benchmarks/results/train_ppo.md (every run in train_ppo.json) and
the curves as benchmarks/results/train_ppo.png.

    python benchmarks/train_ppo.py [--frameworks tf2 torch] [--seeds 1 2 3] [--target 450]

Each run: mpirun -np RANKS python -m start_ray --num-cpus CPUS drivers/train_ppo.py
--framework F --seed S --stop-reward TARGET --stop-timesteps 200000 (defaults
otherwise). Exit 1 if a run missed the target. About 2-3 minutes a run on a
2-core machine.
"""

import argparse
import csv
import glob
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import evidence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
OUT = os.path.join(ROOT, "logs", "benchmarks")
RETURN = "env_runners/episode_return_mean"


def train(cmd: List[str], env: Dict[str, str], results: str, what: str) -> List[dict]:
    """Run one training command; the rows of its progress.csv."""
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{what}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    (progress,) = glob.glob(os.path.join(results, "*", "*", "progress.csv"))
    with open(progress, newline="") as handle:
        return list(csv.DictReader(handle))


def run(framework: str, seed: int, ranks: int, cpus: int, target: float, budget: int) -> dict:
    results = os.path.join(OUT, f"ppo-{framework}-seed{seed}-{time.strftime('%H%M%S')}")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               START_RAY_LOG_DIR=os.path.join(OUT, "runs"))
    cmd = [os.path.join(BIN, "mpirun"), "--oversubscribe", "-np", str(ranks),
           sys.executable, "-m", "start_ray", "--num-cpus", str(cpus),
           os.path.join(ROOT, "drivers", "train_ppo.py"), "--framework", framework,
           "--seed", str(seed), "--stop-reward", str(target), "--stop-timesteps", str(budget),
           "--results-dir", results, "--checkpoint-frequency", "0"]
    began = time.time()
    rows = train(cmd, env, results, f"{framework} seed {seed}")
    wall = time.time() - began
    reached = next((row for row in rows if row.get(RETURN) not in ("", "nan")
                    and float(row[RETURN]) >= target), None)
    last = rows[-1]
    return {"framework": framework, "seed": seed, "results": results, "wall": wall,
            "steps_to_target": float(reached["num_env_steps_sampled_lifetime"]) if reached else None,
            "seconds_to_target": float(reached["time_total_s"]) if reached else None,
            "final_return": float(last[RETURN]),
            "final_steps": float(last["num_env_steps_sampled_lifetime"]),
            "iterations": int(last["training_iteration"]),
            "curve": [(float(row["num_env_steps_sampled_lifetime"]),
                       float(row[RETURN]) if row.get(RETURN) not in ("", "nan") else None)
                      for row in rows]}


def spread(values: List[float]) -> str:
    """`median (min-max)`."""
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", nargs="+", default=["tf2", "torch"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                        help="CPUs per Ray node (default: this machine's)")
    parser.add_argument("--target", type=float, default=450)
    parser.add_argument("--budget", type=int, default=200_000)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rows = []
    for seed in args.seeds:  # frameworks alternate, so drifts hit both alike
        for framework in args.frameworks:
            rows.append(run(framework, seed, args.ranks, args.cpus, args.target, args.budget))
            print({k: v for k, v in rows[-1].items() if k != "curve"}, file=sys.stderr,
                  flush=True)
    lines = [f"PPO on CartPole-v1, default hyperparameters, {args.ranks} rank(s), one Ray "
             f"node with {args.cpus} CPU(s): the learner and 1 env runner. Target: a mean "
             f"episode return of {args.target:g} within {args.budget} env steps.", "",
             "| framework | runs | reached | env steps to target: median (range) "
             "| training s to target: median (range) | job wall s: median (range) |",
             "|---|---:|---:|---:|---:|---:|"]
    for framework in args.frameworks:
        runs = [row for row in rows if row["framework"] == framework]
        hit = [row for row in runs if row["steps_to_target"]]
        lines.append(f"| {framework} | {len(runs)} | {len(hit)} "
                     f"| {spread([r['steps_to_target'] for r in hit]) if hit else '-'} "
                     f"| {spread([r['seconds_to_target'] for r in hit]) if hit else '-'} "
                     f"| {spread([r['wall'] for r in runs])} |")
    lines += ["", "| framework | seed | env steps to target | training s to target "
              "| iterations | final return | job wall s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        steps = f"{row['steps_to_target']:.0f}" if row["steps_to_target"] else "NOT REACHED"
        secs = f"{row['seconds_to_target']:.0f}" if row["seconds_to_target"] else "-"
        lines.append(f"| {row['framework']} | {row['seed']} | {steps} | {secs} "
                     f"| {row['iterations']} | {row['final_return']:.1f} | {row['wall']:.0f} |")
    lines += ["", "![returns against env steps](train_ppo.png)"]
    table = "\n".join(lines)
    print(table)
    evidence.publish("train_ppo", "PPO quality bar: CartPole-v1 to 450", table, rows, "bench-ppo")
    subprocess.run([sys.executable, os.path.join(ROOT, "drivers", "plot_rewards.py"),
                    *[row["results"] for row in rows],
                    "-o", os.path.join(evidence.RESULTS, "train_ppo.png"),
                    *sum([["--label", f"{row['framework']} seed {row['seed']}"] for row in rows],
                         []),
                    "--title", "PPO CartPole-v1 (default hyperparameters)"], check=True,
                   timeout=300)
    return 0 if all(row["steps_to_target"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
