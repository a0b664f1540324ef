"""Benchmark driver: note when it starts, hold the cluster for --hold seconds,
and measure what start_ray's own processes (the ranks and their watchdogs,
not Ray's) use meanwhile: CPU seconds and resident memory."""

import argparse
import json
import os
import time

import psutil


def own_processes(mark: str) -> dict:
    """start_ray's processes of this job: `python -m start_ray` (the ranks)
    and `python -m start_ray.procs.watchdog`, found by the job's BENCH_MARK."""
    found = {}
    for proc in psutil.process_iter():
        try:
            cmdline = proc.cmdline()
            if not cmdline or not os.path.basename(cmdline[0]).startswith("python"):
                continue  # mpirun's own command line names start_ray too
            kind = ("rank" if "start_ray" in cmdline else
                    "watchdog" if "start_ray.procs.watchdog" in cmdline else
                    "helper" if "start_ray.node.gcs_table" in cmdline else None)
            if kind and proc.environ().get("BENCH_MARK") == mark:
                found[proc.pid] = (kind, proc)
        except (psutil.Error, OSError):
            pass
    return found


def sample(procs: dict) -> dict:
    out = {}
    for pid, (kind, proc) in procs.items():
        try:
            times = proc.cpu_times()
            out[pid] = {"kind": kind, "ppid": proc.ppid(), "cpu": times.user + times.system,
                        "rss": proc.memory_info().rss}
        except psutil.Error:
            pass
    return out


def gcs_cpu(mark: str) -> float:
    """CPU seconds the job's GCS server has used so far (its load from the
    nodes' registrations, when read as the driver starts)."""
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "gcs_server" and proc.environ().get("BENCH_MARK") == mark:
                times = proc.cpu_times()
                return times.user + times.system
        except (psutil.Error, OSError):
            pass
    return float("nan")


def main() -> None:
    started = time.time()
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--ready", default=None, help="touch this file once started")
    parser.add_argument("--report", default=None, help="also write the report here")
    args = parser.parse_args()
    if args.ready:
        open(args.ready, "w").close()
    gcs = gcs_cpu(os.environ.get("BENCH_MARK", ""))
    procs = own_processes(os.environ.get("BENCH_MARK", ""))
    before = sample(procs)
    time.sleep(args.hold)
    after = sample(procs)
    # Per rank, with its helpers (watchdog; on rank 0 the GCS node-table
    # reader): CPU seconds used while holding, and resident memory.
    ranks = []
    for pid, now in after.items():
        if now["kind"] == "rank" and pid in before:
            own = [q for q, p in after.items() if q in before and (
                q == pid or (p["ppid"] == pid and p["kind"] != "rank"))]
            by_kind: dict = {}
            for q in own:
                kind = after[q]["kind"]
                by_kind[kind] = by_kind.get(kind, 0.0) + after[q]["cpu"] - before[q]["cpu"]
            ranks.append({"cpu": sum(by_kind.values()), "cpu_by_kind": by_kind,
                          "rss": sum(after[q]["rss"] for q in own),
                          "rank0": pid == os.getppid()})
    report = {"driver_started": started, "ranks": ranks, "driver_exiting": time.time(),
              "gcs_cpu": gcs}
    text = json.dumps(report)
    print("BENCH " + text, flush=True)
    if args.report:
        with open(args.report, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
