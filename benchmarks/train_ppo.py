"""The driver's quality bar: with default hyperparameters, PPO on CartPole-v1
reaches a mean episode return of 450 within 200k environment steps, for tf2
and for torch. Prints steps-to-450 and wall time per framework, writes the
table to logs/benchmarks/train_ppo.md and the curves to
logs/benchmarks/train_ppo.png.

    python benchmarks/train_ppo.py [--frameworks tf2 torch] [--ranks 1] [--target 450]

Each run: mpirun -np RANKS python -m start_ray --num-cpus CPUS drivers/train_ppo.py
--framework F --stop-reward TARGET --stop-timesteps 200000 (defaults otherwise).
"""

import argparse
import csv
import glob
import os
import subprocess
import sys
import time
from typing import Dict, List

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


def run(framework: str, ranks: int, cpus: int, target: float, budget: int) -> dict:
    results = os.path.join(OUT, f"ppo-{framework}-{ranks}rank-{time.strftime('%H%M%S')}")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               START_RAY_LOG_DIR=os.path.join(OUT, "runs"))
    cmd = [os.path.join(BIN, "mpirun"), "--oversubscribe", "-np", str(ranks),
           sys.executable, "-m", "start_ray", "--num-cpus", str(cpus),
           os.path.join(ROOT, "drivers", "train_ppo.py"), "--framework", framework,
           "--stop-reward", str(target), "--stop-timesteps", str(budget),
           "--results-dir", results, "--checkpoint-frequency", "0"]
    began = time.time()
    rows = train(cmd, env, results, framework)
    wall = time.time() - began
    reached = next((row for row in rows if row.get(RETURN) not in ("", "nan")
                    and float(row[RETURN]) >= target), None)
    last = rows[-1]
    return {"framework": framework, "results": results, "wall": wall,
            "steps_to_target": float(reached["num_env_steps_sampled_lifetime"]) if reached else None,
            "seconds_to_target": float(reached["time_total_s"]) if reached else None,
            "final_return": float(last[RETURN]),
            "final_steps": float(last["num_env_steps_sampled_lifetime"]),
            "iterations": int(last["training_iteration"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", nargs="+", default=["tf2", "torch"])
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                        help="CPUs per Ray node (default: this machine's)")
    parser.add_argument("--target", type=float, default=450)
    parser.add_argument("--budget", type=int, default=200_000)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rows = []
    for framework in args.frameworks:
        rows.append(run(framework, args.ranks, args.cpus, args.target, args.budget))
        print(rows[-1], file=sys.stderr, flush=True)
    lines = [f"PPO CartPole-v1, default hyperparameters, {args.ranks} rank(s) x {args.cpus} "
             f"CPU(s), {time.strftime('%Y-%m-%d')}: target mean return {args.target:g} "
             f"within {args.budget} env steps", "",
             "| framework | env steps to target | training s to target | iterations "
             "| final return | job wall s | reached |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        steps = f"{row['steps_to_target']:.0f}" if row["steps_to_target"] else "-"
        secs = f"{row['seconds_to_target']:.0f}" if row["seconds_to_target"] else "-"
        lines.append(f"| {row['framework']} | {steps} | {secs} | {row['iterations']} "
                     f"| {row['final_return']:.1f} | {row['wall']:.0f} "
                     f"| {'yes' if row['steps_to_target'] else 'NO'} |")
    lines += ["", "Reproduce: `python benchmarks/train_ppo.py " + " ".join(sys.argv[1:]) + "`"]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(OUT, "train_ppo.md"), "w") as handle:
        handle.write(table + "\n")
    subprocess.run([sys.executable, os.path.join(ROOT, "drivers", "plot_rewards.py"),
                    *[row["results"] for row in rows], "-o", os.path.join(OUT, "train_ppo.png"),
                    *sum([["--label", row["framework"]] for row in rows], []),
                    "--title", "PPO CartPole-v1 (default hyperparameters)"], check=True)


if __name__ == "__main__":
    main()
