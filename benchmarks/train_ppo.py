"""The driver's quality bar: with default hyperparameters, PPO on CartPole-v1
reaches a mean episode return of 450 within 200k environment steps, for tf2
and for torch, whatever the seed; and a chain of jobs trains as one run.
Runs each framework with each --seeds, uninterrupted and (--chains) as a
chain: the same command in one experiment folder, link after link, each
link given the walltime warning (SIGUSR1 to the launcher, as a scheduler
sends it) after 1 to 4 iterations (drawn from the seed), until a link ends
at the target. Prints steps-to-450 per run, the chain beside the
uninterrupted run and, per framework, the medians and their ratio; checks
every link with drivers/rl_state.py (nothing may differ); publishes
benchmarks/results/train_ppo.md (every run in train_ppo.json), the curves as
benchmarks/results/train_ppo.png and the chains against them as
benchmarks/results/train_ppo_chain.png.

    python benchmarks/train_ppo.py [--frameworks tf2 torch] [--seeds 1 2 3] [--target 450]
        [--no-chains]

Each run: mpirun -np RANKS python -m start_ray --num-cpus CPUS drivers/train_ppo.py
--framework F --seed S --stop-reward TARGET --stop-timesteps 200000 (defaults
otherwise). Exit 1 if a run missed the target. About 2-3 minutes a run on a
2-core machine.
"""

import argparse
import csv
import glob
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

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
    cmd = launch(framework, seed, ranks, cpus, target, budget, "--results-dir", results,
                 "--checkpoint-frequency", "0")
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


def launch(framework: str, seed: int, ranks: int, cpus: int, target: float, budget: int,
           *driver_args: str) -> List[str]:
    return [os.path.join(BIN, "mpirun"), "--oversubscribe", "-np", str(ranks),
            sys.executable, "-m", "start_ray", "--num-cpus", str(cpus),
            os.path.join(ROOT, "drivers", "train_ppo.py"), "--framework", framework,
            "--seed", str(seed), "--stop-reward", str(target), "--stop-timesteps", str(budget),
            *driver_args]


def chain_rows(experiment: str) -> List[dict]:
    path = os.path.join(experiment, "progress.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def chain(framework: str, seed: int, ranks: int, cpus: int, target: float,
          budget: int) -> dict:
    """The same training as run(), as a chain: link after link in one
    experiment folder, each warned after 1 to 4 of its iterations."""
    experiment = os.path.join(OUT, f"chain-{framework}-seed{seed}-{time.strftime('%H%M%S')}")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               START_RAY_LOG_DIR=os.path.join(OUT, "runs"))
    draw = random.Random(seed)
    cmd = launch(framework, seed, ranks, cpus, target, budget, "--experiment-dir", experiment,
                 "--checkpoint-frequency", "1")
    began, lengths = time.time(), []
    for number in range(1, 100):
        before = len(chain_rows(experiment))
        warn_after = draw.randint(1, 4)
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        warned = False
        deadline = time.monotonic() + 3600
        while proc.poll() is None and time.monotonic() < deadline:
            if not warned and len(chain_rows(experiment)) - before >= warn_after:
                proc.send_signal(signal.SIGUSR1)  # mpirun passes it to the ranks
                warned = True
            time.sleep(0.5)
        out = proc.communicate(timeout=600)[0]
        lengths.append(len(chain_rows(experiment)) - before)
        if proc.returncode == 0:
            break
        if proc.returncode != 75:
            raise SystemExit(f"{framework} seed {seed} chain link {number}: exit "
                             f"{proc.returncode}\n{out[-3000:]}")
    wall = time.time() - began
    rows = chain_rows(experiment)
    reached = next((row for row in rows if row.get(RETURN) not in ("", "nan")
                    and float(row[RETURN]) >= target), None)
    checked = subprocess.run([sys.executable, os.path.join(ROOT, "drivers", "rl_state.py"),
                              experiment], capture_output=True, text=True, timeout=300)
    return {"framework": framework, "seed": seed, "results": experiment, "wall": wall,
            "links": lengths, "state_check": checked.stdout, "state_same": checked.returncode == 0,
            "steps_to_target": float(reached["num_env_steps_sampled_lifetime"])
            if reached else None,
            "iterations": int(rows[-1]["training_iteration"]) if rows else 0,
            "final_return": float(rows[-1][RETURN]) if rows else None,
            "curve": [(float(row["num_env_steps_sampled_lifetime"]),
                       float(row[RETURN]) if row.get(RETURN) not in ("", "nan") else None)
                      for row in rows]}


def plot_chains(runs: List[dict], chains: List[dict], frameworks: List[str], path: str) -> None:
    """Return against env steps: each chain (dashed) over its uninterrupted
    run (solid), one panel per framework."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, len(frameworks), figsize=(6 * len(frameworks), 4.2),
                                squeeze=False)
    for axis, framework in zip(axes[0], frameworks):
        for index, (kind, rows) in enumerate((("uninterrupted", runs), ("chain", chains))):
            for row in (r for r in rows if r["framework"] == framework):
                points = [(x, y) for x, y in row["curve"] if y is not None]
                axis.plot([p[0] for p in points], [p[1] for p in points],
                          linestyle="-" if kind == "uninterrupted" else "--",
                          color=f"C{row['seed'] % 10}",
                          label=f"seed {row['seed']} {kind}")
        axis.set_title(f"PPO CartPole-v1, {framework}: chain (dashed) over one run (solid)")
        axis.set_xlabel("env steps")
        axis.set_ylabel("mean episode return")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def chain_table(runs: List[dict], chains: List[dict], frameworks: List[str]) -> List[str]:
    lines = ["", "The same runs as chains of jobs: each link warned (SIGUSR1) after 1 to 4 of "
             "its iterations, the next resuming from its last checkpoint; drivers/rl_state.py "
             "compares the state saved at each link's end with the state after the next "
             "link's restore.", "",
             "| framework | env steps to target: one run, median | chain, median | ratio "
             "(chain / one run) |", "|---|---:|---:|---:|"]
    for framework in frameworks:
        one = [r["steps_to_target"] for r in runs if r["framework"] == framework
               and r["steps_to_target"]]
        linked = [r["steps_to_target"] for r in chains if r["framework"] == framework
                  and r["steps_to_target"]]
        if one and linked:
            ratio = statistics.median(linked) / statistics.median(one)
            lines.append(f"| {framework} | {statistics.median(one):.0f} "
                         f"| {statistics.median(linked):.0f} | {ratio:.2f} |")
    lines += ["", "| framework | seed | one run: steps to target | chain: steps to target "
              "| links (iterations each) | state check |", "|---|---:|---:|---:|---|---|"]
    def steps(row: Optional[dict]) -> str:
        if row is None:
            return "-"
        return f"{row['steps_to_target']:.0f}" if row["steps_to_target"] else "NOT REACHED"
    for row in chains:
        one = next((r for r in runs if (r["framework"], r["seed"]) ==
                    (row["framework"], row["seed"])), None)
        lines.append(f"| {row['framework']} | {row['seed']} | {steps(one)} | {steps(row)} "
                     f"| {len(row['links'])} ({', '.join(map(str, row['links']))}) "
                     f"| {'nothing differs' if row['state_same'] else 'DIFFERS'} |")
    return lines


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
    parser.add_argument("--no-chains", dest="chains", action="store_false",
                        help="the uninterrupted runs only")
    parser.add_argument("--name", default="train_ppo",
                        help="the results file's name in benchmarks/results (a partial run, "
                        "e.g. one framework, beside the whole one)")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rows: List[dict] = []
    chains: List[dict] = []
    for seed in args.seeds:  # frameworks alternate, so drifts hit both alike
        for framework in args.frameworks:
            rows.append(run(framework, seed, args.ranks, args.cpus, args.target, args.budget))
            print({k: v for k, v in rows[-1].items() if k != "curve"}, file=sys.stderr,
                  flush=True)
            if args.chains:
                chains.append(chain(framework, seed, args.ranks, args.cpus, args.target,
                                    args.budget))
                print({k: v for k, v in chains[-1].items() if k != "curve"},
                      file=sys.stderr, flush=True)
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
    lines += ["", f"![returns against env steps]({args.name}.png)"]
    if chains:
        lines += chain_table(rows, chains, args.frameworks)
        lines += ["", f"![chains over uninterrupted runs]({args.name}_chain.png)"]
        plot_chains(rows, chains, args.frameworks,
                    os.path.join(evidence.RESULTS, f"{args.name}_chain.png"))
    table = "\n".join(lines)
    print(table)
    evidence.publish(args.name, "PPO quality bar: CartPole-v1 to 450, in one run and as "
                     "a chain", table, {"runs": rows, "chains": chains}, "bench-ppo")
    subprocess.run([sys.executable, os.path.join(ROOT, "drivers", "plot_rewards.py"),
                    *[row["results"] for row in rows],
                    "-o", os.path.join(evidence.RESULTS, f"{args.name}.png"),
                    *sum([["--label", f"{row['framework']} seed {row['seed']}"] for row in rows],
                         []),
                    "--title", "PPO CartPole-v1 (default hyperparameters)"], check=True,
                   timeout=300)
    ok = all(row["steps_to_target"] for row in rows + chains)
    return 0 if ok and all(row["state_same"] for row in chains) else 1


if __name__ == "__main__":
    sys.exit(main())
