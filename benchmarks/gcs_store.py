"""The head's GCS store (Ray 2.57+: RocksDB in the head's temp dir), measured
in one run, on the same machine:

    python benchmarks/gcs_store.py [--ranks 1 2] [--repeat 5] [--kills 3]

1. launch -> driver start with the store (the default) and without it
   (--gcs-restarts 0), runs alternating so that drifts hit both alike, and
   the floor (one `ray start --head` + one `ray start --address`, timed
   alone: benchmarks/baselines.py) in the same run: store / memory, and
   store / floor against the goal (at or below the floor).
2. driver exit -> mpirun exit, with and without the store.
3. --kills jobs whose driver (tests/drivers/actor_count.py: an actor counts,
   a task runs on every node, in turn) sees the head's gcs_server SIGKILLed:
   the driver's longest pause (goal: at most 10 s), the time until the GCS
   serves again (rank 0's log), the count kept, the exit status.
Publishes benchmarks/results/gcs-store.md and gcs-store.json (evidence.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import List

import psutil

import baselines
import compare
import runs
import evidence

ACTOR_COUNT = os.path.join(baselines.ROOT, "tests", "drivers", "actor_count.py")
PAUSE_GOAL = 10.0
_BACK = re.compile(r"is back in place after ([\d.]+)s")


def kill_run(np: int) -> dict:
    """One job whose head's GCS is SIGKILLed 3 s into the driver's counting."""
    work = tempfile.mkdtemp(prefix="srgs-")
    ready, until, out = (os.path.join(work, name) for name in ("ready", "until", "out.json"))
    log_dir = os.path.join(work, "logs")
    cmd = runs.start_ray_command(np, ACTOR_COUNT, "--ready", ready, "--until", until,
                                    "--out", out)
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(cmd, env=runs._env(BENCH_MARK=mark, START_RAY_LOG_DIR=log_dir),
                            cwd=baselines.ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not os.path.exists(ready):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit(f"the job failed before its driver counted:\n"
                             f"{proc.communicate()[0]}")
        time.sleep(0.05)
    time.sleep(3)
    gcs = [p for p in psutil.Process(proc.pid).children(recursive=True)
           if p.name() == "gcs_server"]
    gcs[0].kill()
    back = None
    while back is None and time.time() < deadline and proc.poll() is None:
        text = "".join(open(path).read() for path in glob.glob(f"{log_dir}/*/rank-0.log"))
        found = _BACK.search(text)
        back = float(found.group(1)) if found else None
        time.sleep(0.1)
    time.sleep(3)
    open(until, "w").close()
    output = proc.communicate(timeout=300)[0]
    left = baselines.left_after(mark)
    if left:
        baselines.kill_marked(mark)
        raise SystemExit("the job left process(es):\n" + "\n".join(left))
    seen = json.load(open(out)) if os.path.exists(out) else {}
    return {"status": proc.returncode, "back_after": back, "seen": seen,
            "tail": output[-2000:] if proc.returncode else ""}


def measure(args: argparse.Namespace) -> dict:
    data: dict = {"floor": [], "ranks": {}}
    rows = {np: {"store": [], "memory": [], "exit_store": [], "exit_memory": []}
            for np in args.ranks}
    for _ in range(args.repeat):
        data["floor"].append(baselines.floor())
        for np in args.ranks:
            for kind, env in (("store", {}), ("memory", {"START_RAY_GCS_RESTARTS": "0"})):
                run = runs.start_ray_run(np, 0, sigterm=False, **env)
                rows[np][kind].append(run["to_driver"])
                rows[np][f"exit_{kind}"].append(run["to_end"])
        compare.progress(f"floor {data['floor'][-1]}; {json.dumps(rows)}")
    data["ranks"] = rows
    data["kills"] = [kill_run(max(args.ranks)) for _ in range(args.kills)]
    compare.progress(f"kills: {json.dumps(data['kills'])}")
    return data


def table(data: dict, args: argparse.Namespace) -> str:
    med = statistics.median
    head, join = med([f["head"] for f in data["floor"]]), med([f["join"] for f in data["floor"]])
    lines = [f"Medians of {args.repeat} runs each, store and memory runs alternating, the "
             f"floor in the same run ({args.repeat} runs: `ray start --head` {head:.1f}s, "
             f"plus one `ray start --address` {join:.1f}s from 2 ranks on, as in "
             f"compare.md); one Ray node per rank, Open MPI.", "",
             "| ranks | launch -> driver, store (s) | without (s) | store / without | "
             "store / floor | driver exit -> end, store (s) | without (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for np, row in sorted(data["ranks"].items(), key=lambda item: int(item[0])):
        store, memory = med(row["store"]), med(row["memory"])
        floor = head + (join if int(np) > 1 else 0.0)
        lines.append(f"| {np} | {store:.1f} | {memory:.1f} | {store / memory:.2f} | "
                     f"{store / floor:.2f} | {med(row['exit_store']):.1f} | "
                     f"{med(row['exit_memory']):.1f} |")
    kills = data["kills"]
    pauses = [k["seen"].get("worst_pause", float("nan")) for k in kills]
    lines += ["", f"The head's gcs_server SIGKILLed 3 s into the driver's counting, "
              f"{len(kills)} job(s) of {max(args.ranks)} ranks:", "",
              "| job | exit status | GCS serving again after (s) | driver's longest pause (s) "
              "| count kept | errors |", "|---:|---:|---:|---:|---:|---|"]
    for i, kill in enumerate(kills, 1):
        seen = kill["seen"]
        lines.append(f"| {i} | {kill['status']} | {kill['back_after']} | "
                     f"{seen.get('worst_pause')} | {seen.get('count')} | "
                     f"{'; '.join(seen.get('errors', [])) or 'none'} |")
    ok = all(k["status"] == 0 for k in kills) and max(pauses) <= PAUSE_GOAL
    lines += ["", f"Goal: the job completes (exit 0) and the driver pauses at most "
              f"{PAUSE_GOAL:g}s: {'met' if ok else 'NOT met'} (longest pause "
              f"{max(pauses):.2f}s)."]
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args(argv)
    began = time.time()
    data = measure(args)
    body = table(data, args) + f"\n\n(the whole benchmark took {time.time() - began:.0f}s)\n"
    print(body)
    evidence.publish("gcs-store", "The head's GCS store: start-up cost and a GCS kill",
                     body, data, make_target="bench-gcs", argv=["benchmarks/gcs_store.py",
                                                                *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
