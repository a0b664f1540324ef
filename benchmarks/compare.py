"""start_ray beside the usual ways of starting Ray on HPC, in one run.

    python benchmarks/compare.py [--ranks 1 2 4 8] [--repeat 3] [--hold 60]

For N ranks (one Ray node per rank, 1 CPU each, as the baselines start N
nodes), medians over --repeat runs:
1. launch -> driver start: start_ray, the sleep recipe of common Slurm
   scripts, and the floor (one `ray start --head` + one `ray start
   --address`, timed alone; see benchmarks/baselines.py); start_ray / floor.
   Floor runs and start_ray runs alternate, so that drifts hit both alike.
2. driver exit -> mpirun exit, and SIGTERM to mpirun -> mpirun exit.
3. CPU seconds of start_ray's own processes (ranks and watchdogs, not Ray's)
   while a driver holds the cluster for --hold seconds (one run per N).
4. PPO throughput (env steps/s per iteration, iterations 2..K, runs
   alternating) under start_ray against the same training with a plain
   local `ray.init()` on the same CPUs.
5. Resident memory of start_ray's own processes per rank.
6. --per-host R ...: many ranks on one host (the default placement: one
   Ray node, the other ranks idle): launch -> driver and the teardown
   (rank 0's "all Ray processes stopped ... in"), and teardown(R)/teardown(first).
7. --join-storm N: N Ray nodes (one per rank) joining with every --slots
   setting, --storm-runs times each: time to all alive, joins in flight at
   once by Ray's own timestamps (each `ray start`'s output, first line to
   "Ray runtime started"), retried joins, runs that came up; and what one
   look at the node table cost (rank 0's log).
The MPI start-up alone (mpirun + MPI_Init of 2 ranks, no start_ray) is
measured too: the floor has none. OMPI_MCA_* variables in the environment
apply to every run and are listed in the table.
Publishes benchmarks/results/NAME.md (--name, default compare) with the raw
measurements in NAME.json (benchmarks/evidence.py), and NAME.png (time to
driver against N).
Defaults take about 14 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tempfile
import time
from typing import Dict, List, Optional

import baselines
import evidence
import train_ppo

sys.path.insert(0, os.path.join(baselines.ROOT, "tests"))
import ray_output  # noqa: E402  (what Ray printed: shared with tests/test_scale.py)

import runs  # noqa: E402
from runs import (  # noqa: E402
    MPI, OUT, TRAIN, _env, job, median, mpi_startup,
    seconds_in, start_ray_run,
)


def per_host(ranks: List[int], runs: int) -> List[dict]:
    """Default placement on this one host: one Ray node, R-1 idle ranks;
    medians of `runs` runs per R, the Rs alternating."""
    found: Dict[int, Dict[str, List[float]]] = {
        np: {"to_driver": [], "teardown": [], "gcs_cpu": []} for np in ranks}
    for _ in range(runs):
        for np in ranks:
            run = job(np)
            if run["rc"] != 0:
                raise SystemExit(f"{np} ranks on one host exited {run['rc']}:\n{run['output']}")
            found[np]["to_driver"].append(run["to_driver"])
            found[np]["gcs_cpu"].append(run.get("gcs_cpu") or float("nan"))
            found[np]["teardown"].append(seconds_in(
                r"all Ray processes stopped .* in ([\d.]+)s", run["output"]))
            progress(f"per host {np}: {found[np]}")
    return [{"ranks": np, "runs": found[np], "to_driver": median(found[np]["to_driver"]),
             "teardown": median(found[np]["teardown"]),
             "gcs_cpu": median(found[np]["gcs_cpu"])} for np in ranks]


def joins_at_once(run_dir: str) -> int:
    """The most worker `ray start`s running at once, by Ray's own timestamps."""
    return ray_output.most_at_once(ray_output.join_spans(run_dir))


def join_storm(nodes: int, settings: List[str], runs: int) -> Dict[str, List[dict]]:
    """`nodes` Ray nodes on this host joining with each join-slot setting."""
    table: Dict[str, List[dict]] = {}
    for _ in range(runs):  # settings alternate, so drifts hit all alike
        for setting in settings:
            slots = [] if setting == "default" else ["--join-slots", setting]
            run = job(nodes, "--node-per-rank", "--num-cpus", "1", "--collect-logs", "always",
                      *slots)
            rank0 = ""
            if run["run_dir"]:
                for path in glob.glob(os.path.join(run["run_dir"], "rank-0*.log"))[:1]:
                    with open(path) as handle:
                        rank0 = handle.read()
            table.setdefault(setting, []).append({
                "rc": run["rc"],
                "ready": seconds_in(r"READY: \d+ node\(s\), .*, after ([\d.]+)s", run["output"]),
                "at_once": joins_at_once(run["run_dir"]) if run["run_dir"] else None,
                "retried": len(re.findall(r"attempt \d+ to join failed",
                                          "".join(_rank_logs(run["run_dir"])))),
                "look_ms": seconds_in(r"one look at the node table \(\d+ nodes\) took "
                                      r"([\d.]+) ms", rank0),
                "gcs_cpu": run.get("gcs_cpu")})
            progress(f"join storm {nodes} nodes, slots {setting}: {table[setting][-1]}")
    return table


def _rank_logs(run_dir: Optional[str]) -> List[str]:
    texts = []
    for path in glob.glob(os.path.join(run_dir or "/nonexistent", "rank-*.log")):
        with open(path) as handle:
            texts.append(handle.read())
    return texts


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


def rank0_by_kind(held: List[dict]) -> Dict[str, float]:
    """Rank 0's CPU seconds while holding, per kind of process (the median
    of each over the runs; {} from runs before the driver reported it)."""
    runs = [r["cpu_by_kind"] for r in held if r["rank0"] and "cpu_by_kind" in r]
    kinds = sorted({kind for run in runs for kind in run})
    return {kind: median([run.get(kind, 0.0) for run in runs]) for kind in kinds}


def measure(args: argparse.Namespace) -> dict:
    data: dict = {"floor": [], "ranks": {}, "mpi": []}
    rows: Dict[int, dict] = {np: {"start_ray": [], "exit": [], "sigterm": [], "sleep": []}
                             for np in args.ranks}
    for i in range(args.repeat):  # floor and start_ray interleaved: drifts hit both alike
        data["floor"].append(baselines.floor())
        data["mpi"].append(mpi_startup())
        for np in args.ranks:
            run = start_ray_run(np, 0, sigterm=i % 2 == 1)
            rows[np]["start_ray"].append(run["to_driver"])
            rows[np]["sigterm" if i % 2 == 1 else "exit"].append(run["to_end"])
    progress(f"floor: {data['floor']}; MPI start-up: {data['mpi']}")
    for np in args.ranks:
        row = rows[np]
        held = start_ray_run(np, args.hold, sigterm=True)
        row["start_ray"].append(held["to_driver"])
        row["sigterm"].append(held["to_end"])
        row["held"] = held["ranks"]
        for _ in range(args.sleep_repeat):
            row["sleep"].append(baselines.sleep_recipe(np))
        data["ranks"][np] = row
        progress(f"N={np}: {json.dumps({k: v for k, v in row.items() if k != 'held'})}")
    if args.per_host:
        data["per_host"] = per_host(args.per_host, args.per_host_runs)
    if args.join_storm:
        data["storm"] = join_storm(args.join_storm, args.slots, args.storm_runs)
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
    cpu_head = median([f.get("cpu_head", float("nan")) for f in data["floor"]])
    cpu_join = median([f.get("cpu_join", float("nan")) for f in data["floor"]])
    mca = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                   if k.startswith("OMPI_MCA_")) or "none"
    lines = [
        f"start_ray against the usual ways of starting Ray on one host, "
        f"{os.cpu_count()} cores; one Ray node per rank (1 CPU each); medians of "
        f"{args.repeat + 1} start_ray runs, {args.sleep_repeat} sleep-recipe runs, "
        f"{args.repeat} floor runs. Floor: `ray start --head` {head:.1f}s + one "
        f"`ray start --address` {join:.1f}s. MPI start-up alone (mpirun + MPI_Init, "
        f"2 ranks, in start_ray's time, not in the floor): {median(data['mpi']):.2f}s "
        f"under {args.mpi}" + (f" (Open MPI settings: {mca})" if args.mpi == "openmpi" else "")
        + f". CPU seconds of Ray's processes once started: head {cpu_head:.1f}, one "
        f"worker node {cpu_join:.1f} (so N nodes need at least "
        f"(head + (N-1) x worker) / {os.cpu_count()} cores of wall time).",
        "",
        "| ranks | start_ray: launch -> driver (s) | sleep recipe (s) | floor (s) "
        "| start_ray / floor | driver exit -> end (s) | SIGTERM -> end (s) "
        f"| CPU s of rank 0 in {args.hold:g}s | CPU s per other rank | RSS rank 0 (MiB) "
        "| RSS other rank (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ] if data["ranks"] else []  # --ranks with none: only the tables asked for
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
    if data["ranks"]:
        lines += ["", "start_ray / floor without the MPI start-up (launch -> driver less "
                  "mpirun + MPI_Init): " + ", ".join(
                      f"{np} ranks {(median(row['start_ray']) - median(data['mpi'])) / (head + (join if np > 1 else 0.0)):.2f}"
                      for np, row in data["ranks"].items())]
    split = {np: rank0_by_kind(row["held"]) for np, row in data["ranks"].items()}
    if any(split.values()):
        lines += ["", f"Rank 0's CPU seconds in {args.hold:g}s by process (medians): " + "; ".join(
            f"{np} ranks: " + ", ".join(f"{kind} {cpu:.2f}" for kind, cpu in kinds.items())
            for np, kinds in split.items() if kinds)
            + " (rank = `python -m start_ray`; helper = the GCS node-table reader, a look "
            "every 2 s while the driver runs; watchdog = the rank's watchdog)"]
    if data.get("per_host"):
        first = data["per_host"][0]["teardown"]
        lines += ["", "Many ranks on one host (default placement: one Ray node, the other "
                  "ranks idle); teardown = rank 0's \"all Ray processes stopped ... in\"; "
                  f"medians of {args.per_host_runs} runs each, alternating.", "",
                  "| ranks on the host | launch -> driver (s) | teardown (s) | teardown / "
                  f"teardown({data['per_host'][0]['ranks']}) | GCS CPU s at the driver's "
                  "start (one node) |", "|---:|---:|---:|---:|---:|"]
        for row in data["per_host"]:
            lines.append(f"| {row['ranks']} | {row['to_driver']:.1f} | {row['teardown']:.1f} "
                         f"| {row['teardown'] / first:.2f} | {row['gcs_cpu']:.2f} |")
    if data.get("storm"):
        lines += ["", f"Join storm: {args.join_storm} Ray nodes (one per rank, 1 CPU each) on "
                  f"this host, {args.storm_runs} run(s) per setting, settings alternating; "
                  "joins at once by Ray's own timestamps (each worker's `ray start` output, "
                  "first line to \"Ray runtime started\").", "",
                  "| --join-slots | came up | median time to all alive (s) | max joins at "
                  "once | retried joins (all runs) | one node-table look (ms) "
                  "| GCS CPU s by then |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for setting, runs in data["storm"].items():
            ready = [r["ready"] for r in runs if r["ready"] is not None]
            looks = [r["look_ms"] for r in runs if r["look_ms"] is not None]
            lines.append(
                f"| {setting} | {sum(r['rc'] == 0 for r in runs)}/{len(runs)} "
                f"| {median(ready):.1f} | {max((r['at_once'] or 0) for r in runs)} "
                f"| {sum(r['retried'] for r in runs)} | {median(looks):.1f} "
                f"| {median([r['gcs_cpu'] for r in runs if r.get('gcs_cpu') is not None]):.2f} |")
    if "ppo" in data:
        ours, plain = median(data["ppo"]["start_ray"]), median(data["ppo"]["plain"])
        lines += ["", f"PPO throughput (tf2, CartPole, 2000-step batches, 1 env runner, 2 "
                  f"CPUs; median env steps/s of iterations 2..{args.ppo_iters} of "
                  f"{args.ppo_runs} alternating runs each): {ours:.0f} under start_ray, "
                  f"{plain:.0f} with a plain local ray.init(): ratio {ours / plain:.2f}"]
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
    parser.add_argument("--ranks", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--mpi", choices=sorted(MPI), default="openmpi",
                        help="the MPI every job runs under (mpich: .venv-mpich's Hydra)")
    parser.add_argument("--per-host", type=int, nargs="*", default=[],
                        help="ranks on this one host for the teardown sweep, e.g. 16 128")
    parser.add_argument("--per-host-runs", type=int, default=3)
    parser.add_argument("--join-storm", type=int, default=0, metavar="N",
                        help="Ray nodes for the join-storm table (0: none)")
    parser.add_argument("--slots", nargs="+", default=["default", "3"],
                        help="--join-slots settings for the join storm")
    parser.add_argument("--storm-runs", type=int, default=3)
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
    parser.add_argument("--name", default="compare",
                        help="benchmarks/results/NAME.md, .json and .png")
    parser.add_argument("--make", default="bench-startup", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    runs.USE_MPI = args.mpi  # every launch line of this run
    os.makedirs(OUT, exist_ok=True)
    began = time.time()
    data = measure(args)
    text = table(data, args) + f"\n\n(the whole benchmark took {time.time() - began:.0f}s)"
    if data["ranks"]:
        plot(data, os.path.join(evidence.RESULTS, f"{args.name}.png"))
        text += f"\n\n![time to a ready cluster]({args.name}.png)"
    print(text)
    evidence.publish(args.name, "start_ray against the floor and the sleep recipe, one host",
                     text, data, args.make)


if __name__ == "__main__":
    main()
