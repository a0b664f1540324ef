"""What copying Ray's logs while the job runs (--sync-logs) costs.

    python benchmarks/log_sync.py [--looks 20]

Two measurements, one table (benchmarks/results/log_sync.md):

1. Synthetic: a node's log folder of N files (Ray's layout: session_*/logs/),
   each growing by a few KB between looks, synced by start_ray.log_sync.LogSync
   as a rank does; the CPU time of a look (median of --looks), and what that
   is as a share of one core at the default period (30 s) and at 1 s.
2. A real job: 2 Ray nodes (Open MPI, one per rank) whose driver runs tasks
   that print, held for 60 s with --sync-logs 1; each rank's log says how many
   looks it made and their CPU time (the LogSync thread's own thread_time).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), HERE]

import evidence  # noqa: E402

from start_ray import options  # noqa: E402
from start_ray.record import log_sync  # noqa: E402

DEFAULT = options.SPECS_BY_NAME["sync_logs"].default
GROWTH = 4096  # bytes each file gains between looks


def synthetic(files: int, looks: int) -> List[float]:
    """CPU seconds of each look over `files` growing log files."""
    root = tempfile.mkdtemp(prefix="srsync-")
    try:
        logs = os.path.join(root, "node", "session_2026-01-01_00-00-00_000000_1", "logs")
        os.makedirs(logs)
        paths = [os.path.join(logs, f"worker-{i:04d}.out") for i in range(files)]
        sync = log_sync.LogSync(os.path.join(root, "node"), os.path.join(root, "copy"),
                                DEFAULT, log=None)  # type: ignore[arg-type]
        costs = []
        for _ in range(looks):
            for path in paths:
                with open(path, "ab") as handle:
                    handle.write(b"x" * (GROWTH - 1) + b"\n")
            began = time.thread_time()
            sync.sync()
            costs.append(time.thread_time() - began)
        return costs
    finally:
        shutil.rmtree(root, ignore_errors=True)


def real_job() -> List[dict]:
    """Per rank of a real 2-node job held 60 s with --sync-logs 1: its looks
    and their CPU milliseconds each, as the rank's log says."""
    from jobs import HOLD_DRIVER, Jobs  # the tests' launcher helpers
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    workdir = tempfile.mkdtemp(prefix="srsyncjob-")
    jobs = Jobs(workdir)
    try:
        ready, until = os.path.join(workdir, "ready"), os.path.join(workdir, "until")
        running = jobs.start(2, ["--num-cpus", "1", "--sync-logs", "1", HOLD_DRIVER,
                                 "--ready", ready, "--until", until])
        running.wait_for_file(ready, timeout=180)
        time.sleep(60)
        open(until, "w").close()
        result = running.wait(120)
        rows = []
        for name, text in sorted(result.rank_logs().items()):
            found = re.search(r"copied into the run folder (\d+) time\(s\) while the job ran, "
                              r"([\d.]+) ms of CPU a look", text)
            if found:
                rows.append({"rank": name[:-4], "looks": int(found.group(1)),
                             "ms_per_look": float(found.group(2)), "rc": result.returncode})
        return rows
    finally:
        jobs.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--looks", type=int, default=20)
    parser.add_argument("--no-job", action="store_true", help="the synthetic part only")
    args = parser.parse_args()
    raw: dict = {"default_period_s": DEFAULT, "growth_bytes": GROWTH, "synthetic": {}}
    lines = [f"Share of one core = CPU per look / period; default period {DEFAULT:g} s. "
             f"Synthetic: median of {args.looks - 1} looks (the first copies everything).",
             "", f"| case | files | CPU per look, median (ms) | share of a core at {DEFAULT:g} s "
             "| share of a core at 1 s |", "|---|---:|---:|---:|---:|"]
    for files in (50, 200, 1000):
        costs = synthetic(files, args.looks)
        raw["synthetic"][files] = costs
        median = statistics.median(costs[1:])
        lines.append(f"| synthetic, +{GROWTH // 1024} KB per file per look | {files} | "
                     f"{median * 1000:.2f} | {median / DEFAULT * 100:.4f}% | "
                     f"{median * 100:.3f}% |")
    if not args.no_job:
        raw["job"] = real_job()
        for row in raw["job"]:
            ms = row["ms_per_look"]
            lines.append(f"| real job (2 nodes, held 60 s), {row['rank']}, --sync-logs 1 "
                         f"| {row['looks']} looks | {ms:.2f} | {ms / 1000 / DEFAULT * 100:.4f}% "
                         f"| {ms / 1000 * 100:.3f}% |")
    text = "\n".join(lines)
    print(text)
    evidence.publish("log_sync", "What --sync-logs costs", text, raw, "bench-log-sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
