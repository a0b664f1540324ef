"""How fast a start_ray cluster is up, how fast it is gone (after the driver
exits, and after SIGTERM to mpirun), and what the waiting ranks cost, for
N = 1, 2, 4 ranks on this machine.

    python benchmarks/lifecycle.py [--ranks 1 2 4] [--repeat 1] [--hold 30]

Prints a markdown table (medians over --repeat runs) and writes it to
logs/benchmarks/lifecycle.md. Each run: mpirun -np N python -m start_ray
benchmarks/hold_driver.py --hold SECONDS, 1 CPU per Ray node.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def command(np: int, *driver_args: str):
    mark = uuid.uuid4().hex
    env = dict(os.environ, BENCH_MARK=mark, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONUNBUFFERED="1",
               START_RAY_LOG_DIR=os.path.join(ROOT, "logs", "benchmarks", "runs"))
    cmd = [os.path.join(BIN, "mpirun"), "--oversubscribe", "-np", str(np),
           sys.executable, "-m", "start_ray", "--num-cpus", "1",
           os.path.join(ROOT, "benchmarks", "hold_driver.py"), *driver_args]
    return cmd, env


def sigterm_run(np: int) -> float:
    """Seconds from SIGTERM to mpirun (what scancel or Ctrl-C does) to its exit,
    while the driver runs."""
    ready = os.path.join(tempfile.mkdtemp(prefix="srb-"), "ready")
    cmd, env = command(np, "--hold", "600", "--ready", ready)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not os.path.exists(ready):
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"run with {np} ranks never started its driver")
        time.sleep(0.1)
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    return time.time() - signalled


def one_run(np: int, hold: float) -> dict:
    cmd, env = command(np, "--hold", str(hold))
    launched = time.time()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=hold + 600)
    ended = time.time()
    found = re.search(r"^BENCH (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"run with {np} ranks failed ({proc.returncode}):\n"
                         f"{proc.stdout}\n{proc.stderr}")
    report = json.loads(found.group(1))
    cpu = report["rank_cpu_seconds"]
    return {"to_driver": report["driver_started"] - launched,
            "exit_to_end": ended - report["driver_exiting"],
            "cpu_rank0": max(cpu),  # rank 0 also watches the driver
            "cpu_per_waiting_rank": statistics.mean(sorted(cpu)[:-1]) if len(cpu) > 1 else 0.0,
            "ranks_seen": report["ranks_seen"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--hold", type=float, default=30.0)
    args = parser.parse_args()
    rows = []
    for np in args.ranks:
        runs = [one_run(np, args.hold) for _ in range(args.repeat)]
        for run in runs:
            run["sigterm_to_end"] = sigterm_run(np)
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        rows.append((np, med))
        print(f"N={np}: {med}", file=sys.stderr, flush=True)
    lines = [
        f"start_ray lifecycle, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"medians of {args.repeat} run(s), driver holds the cluster {args.hold:g}s",
        "",
        "| ranks | launch -> driver start (s) | driver exit -> mpirun exit (s) "
        "| SIGTERM -> mpirun exit (s) "
        "| CPU s of rank 0 | CPU s per waiting rank | waiting rank CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for np, med in rows:
        lines.append(f"| {np} | {med['to_driver']:.1f} | {med['exit_to_end']:.1f} "
                     f"| {med['sigterm_to_end']:.1f} "
                     f"| {med['cpu_rank0']:.3f} | {med['cpu_per_waiting_rank']:.3f} "
                     f"| {100 * med['cpu_per_waiting_rank'] / args.hold:.2f} |")
    lines += ["", "Reproduce: `" + " ".join(["python", "benchmarks/lifecycle.py", *sys.argv[1:]])
              + "`"]
    table = "\n".join(lines)
    print(table)
    out = os.path.join(ROOT, "logs", "benchmarks", "lifecycle.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        handle.write(table + "\n")


if __name__ == "__main__":
    main()
