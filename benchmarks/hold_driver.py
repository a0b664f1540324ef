"""Benchmark driver: note when it starts, hold the cluster for --hold seconds,
and measure the CPU time start_ray's own rank processes use meanwhile."""

import argparse
import json
import os
import time

import psutil


def rank_processes(mark: str) -> dict:
    """start_ray's rank processes of this job (not Ray's, not ours)."""
    found = {}
    for proc in psutil.process_iter():
        try:
            cmdline = proc.cmdline()
            if (cmdline and os.path.basename(cmdline[0]).startswith("python")
                    and "start_ray" in cmdline and proc.environ().get("BENCH_MARK") == mark):
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            pass
    return found


def cpu_seconds(procs: dict) -> dict:
    out = {}
    for pid, proc in procs.items():
        try:
            times = proc.cpu_times()
            out[pid] = times.user + times.system
        except psutil.Error:
            pass
    return out


def main() -> None:
    started = time.time()
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--ready", default=None, help="touch this file once started")
    args = parser.parse_args()
    if args.ready:
        open(args.ready, "w").close()
    mark = os.environ.get("BENCH_MARK", "")
    ranks = rank_processes(mark)
    before = cpu_seconds(ranks)
    time.sleep(args.hold)
    after = cpu_seconds(ranks)
    used = {pid: after[pid] - before[pid] for pid in before if pid in after}
    report = {"driver_started": started, "ranks_seen": len(ranks),
              "rank_cpu_seconds": sorted(used.values()), "driver_exiting": time.time()}
    print("BENCH " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
