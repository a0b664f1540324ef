"""Rank 0 at any scale, simulated: its real code against a simulated world.

    python benchmarks/scale_sim.py --hosts 10000 --ranks-per-host 128 --json out.json

Rank 0 runs start_ray's real lifecycle (lifecycle.job.Job: the agreement,
the placement's checks, join slots, the ledger, readiness, the watch while a
driver runs, the teardown's bookkeeping, the summary), in this process, on
a clock of its own (time.monotonic and time.sleep are virtual: a sleep moves
the clock and lets the world act). Every other rank is the world's: it
answers rank 0's collectives and sends the messages a host's leader and a
node rank send (HostReport, Joined, HostDone, Done), pickled as mpi4py would
pickle them, and rank 0 unpickles them (that is rank 0's work). The GCS's
node table is simulated too: a look is the JSON line the node-table helper
prints, which rank 0 parses (node/gcs_table.parse_look) as it does in a job.

What rank 0 does is measured; what the world does is not (it is timed
apart and subtracted): rank0_cpu_s is rank 0's CPU time from the plan to
the summary, per phase in `phases`. rank0_peak_mb is the growth of this
process's peak RSS over the simulation: rank 0 and the world's buffers
together, an upper bound for rank 0's.

Not simulated: Ray itself (a join takes --join-seconds; the GCS's own cost
per registration is docs/scale.md's to predict), MPI's transport, and
processes (no `ray start`, no helper processes: the owner and launcher are
stand-ins that start nothing).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sim_nodes import SimLauncher, SimOwner, driver  # noqa: E402
from sim_world import REAL_MONOTONIC, REAL_SLEEP, Shape, SimChannel, World  # noqa: E402
from start_ray.lifecycle.job import Job, Phase  # noqa: E402
from start_ray.options import make_options  # noqa: E402
from start_ray.procs.signals import SignalInbox  # noqa: E402


def simulate(shape: Shape, log_dir: str) -> Dict[str, Any]:
    """One run of rank 0 in a world of `shape`; what it cost."""
    options = make_options(environ={}, log_dir=log_dir, sync_logs=0, collect_logs="never",
                           join_timeout=max(600.0, shape.hosts / 5), no_auth=False)
    world = World(shape, options)
    time.monotonic, time.sleep = world.clock.monotonic, world.clock.sleep  # type: ignore
    phases: Dict[str, float] = {}
    try:
        job = Job(options, SimChannel(world), SignalInbox(),  # type: ignore[arg-type]
                  payload=driver(world, options.poll_interval),
                  own=SimOwner, launch=lambda *args: SimLauncher(world, *args),
                  log_name="start_ray.sim")
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        went = job.go

        def timed_go(outcome: Any) -> None:
            spent = time.process_time() - marks[0] - (world.time.seconds - marks[1])
            phases[job.phase.value] = phases.get(job.phase.value, 0.0) + spent
            went(outcome)
            marks[:] = [time.process_time(), world.time.seconds]

        job.go = timed_go  # type: ignore[method-assign]
        began_cpu, began_world = time.process_time(), world.time.seconds
        marks = [began_cpu, began_world]
        virtual_began = time.monotonic()
        status = job.advance(Phase.DONE)
        total = time.process_time() - began_cpu - (world.time.seconds - began_world)
        virtual = time.monotonic() - virtual_began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        time.monotonic, time.sleep = REAL_MONOTONIC, REAL_SLEEP  # type: ignore
    assert job.agreed is not None
    with open(os.path.join(job.agreed.run_dir, "summary.json")) as handle:
        record = json.load(handle)
    kinds: Dict[str, int] = {}
    for event in record["events"]:
        kinds[event["event"]] = kinds.get(event["event"], 0) + 1
    return {
        "hosts": shape.hosts, "ranks": shape.size, "ranks_per_host": shape.ranks_per_host,
        "status": status, "rank0_cpu_s": round(total, 3),
        "rank0_peak_mb": round(max(0, peak - baseline) / 1024, 1),
        "phases": {name: round(seconds, 3) for name, seconds in phases.items()},
        "world_cpu_s": round(world.time.seconds, 3),
        "virtual_seconds": round(virtual, 1),
        "messages_to_rank0": world.messages_to_rank0,
        "messages_from_rank0": world.messages_from_rank0,
        "read_by_rank0": dict(world.read_by_rank0),
        "unread_by_rank0": sum(len(queue) for queue in world.inbox.values()),
        "looks_parsed": world.looks_parsed,
        "events": kinds, "nodes": len(record["nodes"]),
        "summary_lines": sum(1 for _ in open(os.path.join(job.agreed.run_dir, "summary.txt"))),
        "run_dir": job.agreed.run_dir,
    }


def table(rows: List[Dict[str, Any]]) -> str:
    phases = sorted({name for row in rows for name in row["phases"]},
                    key=[p.value for p in Phase].index)
    head = ["hosts", "ranks", "rank 0 CPU s", *[f"{p} s" for p in phases], "peak MB",
            "msgs to 0", "msgs from 0", "summary lines", "wall s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        cells = [f"{row['hosts']:,}", f"{row['ranks']:,}", f"{row['rank0_cpu_s']:.2f}",
                 *[f"{row['phases'].get(p, 0.0):.2f}" for p in phases],
                 f"{row['rank0_peak_mb']:.0f}", f"{row['messages_to_rank0']:,}",
                 f"{row['messages_from_rank0']:,}", str(row["summary_lines"]),
                 f"{row['wall_s']:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def growth(rows: List[Dict[str, Any]]) -> str:
    """How rank 0's CPU grows with the hosts, size to size (linear: x10 for
    ten times the hosts)."""
    steps = [f"{a['hosts']:,} -> {b['hosts']:,} hosts: x{b['rank0_cpu_s'] / a['rank0_cpu_s']:.1f}"
             for a, b in zip(rows, rows[1:]) if a["rank0_cpu_s"]]
    return "\n\nRank 0's CPU, size to size: " + "; ".join(steps) + "." if steps else ""


# The targets (docs/scale.md): rank 0's CPU from the plan to the summary, its
# memory, and how the CPU grows from 1,000 to 10,000 hosts.
LIMITS = {"cpu_s": 10.0, "peak_mb": 2048.0, "growth_1k_10k": 12.0}
COMPARE = os.path.join(ROOT, "benchmarks", "results", "compare.json")


def idle_per_minute(path: str = COMPARE) -> Optional[Tuple[float, str]]:
    """Rank 0's CPU seconds a minute while it waits for the driver (its own
    process and the node-table helper), measured in a real job by
    benchmarks/compare.py (the largest rank count there): not simulated here,
    so added to the simulated CPU. None when that file is missing."""
    try:
        with open(path) as handle:
            ranks = json.load(handle)["raw"]["ranks"]
    except (OSError, KeyError, ValueError):
        return None
    most = max(ranks, key=int)
    held = [run for run in ranks[most].get("held", []) if run.get("rank0")]
    if not held:
        return None
    kinds = held[0]["cpu_by_kind"]
    return (kinds.get("rank", 0.0) + kinds.get("helper", 0.0),
            f"benchmarks/results/compare.json, {most} ranks")


def verdict(rows: List[Dict[str, Any]]) -> str:
    """Whether the targets hold, each with its figure."""
    lines = []
    idle = idle_per_minute()
    largest = max(rows, key=lambda row: row["hosts"])
    cpu = largest["rank0_cpu_s"]
    if idle is not None:
        run_minutes = largest["run_seconds"] / 60
        cpu += idle[0] * run_minutes
        lines.append(f"rank 0 idle while the driver runs: {idle[0]:.2f} CPU-s a minute "
                     f"(measured in a real job: {idle[1]}), {idle[0] * run_minutes:.2f} s for "
                     f"the simulated {largest['run_seconds']:.0f} s run")
    ok = cpu <= LIMITS["cpu_s"]
    lines.append(f"CPU at {largest['hosts']:,} hosts: {cpu:.2f} s (simulated + idle) <= "
                 f"{LIMITS['cpu_s']:g} s: {'holds' if ok else 'FAILS'}")
    memory = largest["rank0_peak_mb"]
    lines.append(f"memory at {largest['hosts']:,} hosts: {memory:.0f} MB <= "
                 f"{LIMITS['peak_mb']:.0f} MB: "
                 f"{'holds' if memory <= LIMITS['peak_mb'] else 'FAILS'}")
    by_hosts = {row["hosts"]: row["rank0_cpu_s"] for row in rows}
    if by_hosts.get(1000) and 10000 in by_hosts:
        growth_x = by_hosts[10000] / by_hosts[1000]
        lines.append(f"growth from 1,000 to 10,000 hosts: x{growth_x:.1f} <= "
                     f"x{LIMITS['growth_1k_10k']:g}: "
                     f"{'holds' if growth_x <= LIMITS['growth_1k_10k'] else 'FAILS'}")
    return "\n\nTargets:\n" + "\n".join(f"- {line}" for line in lines)


def one(shape: Shape) -> Dict[str, Any]:
    """One size in this process (fresh: a size measured after another would
    pay for the collection of the other's garbage)."""
    logging.getLogger("start_ray.sim").propagate = False
    log_dir = tempfile.mkdtemp(prefix="scale-sim-")
    wall = REAL_MONOTONIC()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # rank 0's console lines
            row = simulate(shape, log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    row["wall_s"] = round(REAL_MONOTONIC() - wall, 1)
    del row["run_dir"]
    return row


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", required=True,
                        help="hosts of the simulated job (several: one run each, each in a "
                             "process of its own)")
    parser.add_argument("--ranks-per-host", type=int, default=128)
    parser.add_argument("--join-seconds", type=float, default=2.0)
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per size; the row is the one with the median CPU")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--publish", metavar="NAME",
                        help="publish the table as benchmarks/results/NAME.md (and .json)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a child: one size, its row as JSON on stdout
        print(json.dumps(one(Shape(args.hosts[0], args.ranks_per_host, args.join_seconds,
                                   args.run_seconds))))
        return 0
    rows = []
    for hosts in args.hosts:
        runs = []
        for _ in range(args.repeat):
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--one", "--hosts", str(hosts),
                 "--ranks-per-host", str(args.ranks_per_host), "--join-seconds",
                 str(args.join_seconds), "--run-seconds", str(args.run_seconds)],
                capture_output=True, text=True, timeout=1800)
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                return 1
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        runs.sort(key=lambda run: run["rank0_cpu_s"])
        row = runs[len(runs) // 2]
        row["rank0_cpu_s_runs"] = [run["rank0_cpu_s"] for run in runs]
        rows.append(row)
        print(f"{hosts} hosts x {args.ranks_per_host}: rank 0 {row['rank0_cpu_s']:.2f} s CPU "
              f"(runs: {row['rank0_cpu_s_runs']}), {row['rank0_peak_mb']:.0f} MB, "
              f"{row['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
    for row in rows:
        row["run_seconds"] = args.run_seconds
    print(table(rows) + verdict(rows))
    if args.publish:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import evidence
        evidence.publish(args.publish, "Rank 0 at scale, simulated (benchmarks/scale_sim.py)",
                         f"{args.ranks_per_host} ranks per host; per size, the run with the "
                         f"median CPU of {args.repeat}. Rank 0's CPU includes the "
                         "node-table looks its reader thread parses.\n\n" + table(rows) +
                         growth(rows) + verdict(rows),
                         rows, "bench-scale")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"command": " ".join(["python", "benchmarks/scale_sim.py",
                                            *(argv if argv is not None else sys.argv[1:])]),
                       "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
