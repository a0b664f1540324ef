"""The randomized chaos matrix: under Open MPI and MPICH, end rank 0, a rank
that owns a worker node, a rank that owns no node (SIGKILL), the launcher
(SIGTERM), one of start_ray's helpers or a worker node's raylet (SIGKILL),
while the head starts, workers join, the driver runs, or during teardown
(see tests/chaos.py for the cases and what each run checks).

    python benchmarks/chaos.py [--runs 60] [--seed N] [--mpi openmpi mpich]
    python benchmarks/chaos.py --case openmpi-rank0-head --case mpich-rank0-head \
        --repeat 50 --out chaos-rank0-head

Every case runs at least once, the rest are drawn at random; with --case,
only the named cases run, each --repeat times. Prints a table per case (runs,
victim hit, exit statuses, leftovers 5 s after the launcher exited, worst
launcher exit, worst time to clean, worst time for a helper's or raylet's
rank to notice its death) and publishes it as benchmarks/results/<out>.md,
each run's outcome in <out>.json (benchmarks/evidence.py). Exits 1 if any
run failed its case. About 12 s a run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests"), HERE]

import chaos  # noqa: E402
import evidence  # noqa: E402

from jobs import MPIS, Jobs  # noqa: E402


def plan(runs: int, mpis: List[str], rng: random.Random) -> List[chaos.Case]:
    cases = [case for case in chaos.all_cases() if case.mpi in mpis]
    chosen = list(cases) + [rng.choice(cases) for _ in range(max(0, runs - len(cases)))]
    rng.shuffle(chosen)
    return chosen


def named(names: List[str], repeat: int, rng: random.Random) -> List[chaos.Case]:
    """Each named case `repeat` times, in a random order."""
    by_name = {case.name: case for case in chaos.all_cases()}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[name] for name in names for _ in range(repeat)]
    rng.shuffle(chosen)
    return chosen


def _worst(values: List[Optional[float]]) -> str:
    known = [v for v in values if v is not None]
    return f"{max(known):.1f}" if known else "-"


def table(outcomes: List[chaos.Outcome], seconds: float, seed: int) -> str:
    by_case: Dict[str, List[chaos.Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_case[outcome.case.name].append(outcome)
    lines = [
        f"Chaos matrix: {len(outcomes)} runs, seed {seed}, {seconds / 60:.1f} min. "
        f"Bounds: launcher exit <= "
        f"{chaos.LAUNCHER_EXIT_BOUND:g} s after the kill; nothing left "
        f"{chaos.CLEAN_BOUND:g} s after the launcher exit.",
        "",
        "| case (mpi-victim-phase) | runs | failed | victim hit | exit statuses "
        "| leftovers at 5 s | silent logs | worst launcher exit (s) | worst time to clean (s) "
        "| worst notice of a killed helper or raylet (s) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, group: List[chaos.Outcome]) -> str:
        statuses = sorted({o.returncode for o in group})
        return (f"| {name} | {len(group)} | {sum(not o.ok for o in group)} "
                f"| {sum(o.hit for o in group)} | {', '.join(map(str, statuses))} "
                f"| {sum(len(o.left_at_bound) for o in group)} "
                f"| {sum(len(o.silent_logs) for o in group)} "
                f"| {_worst([o.launcher_seconds for o in group])} "
                f"| {_worst([o.clean_seconds for o in group])} "
                f"| {_worst([o.noticed_seconds for o in group])} |")

    lines += [row(name, by_case[name]) for name in sorted(by_case)]
    lines.append(row("**all**", outcomes))
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60,
                        help="runs in all: every case once (52 with both MPIs), the rest "
                             "drawn at random")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mpi", nargs="+", default=list(MPIS), choices=list(MPIS))
    parser.add_argument("--case", action="append", default=[],
                        help="run only this case (mpi-victim-phase); repeatable")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each --case")
    parser.add_argument("--out", default="chaos",
                        help="the results' name: benchmarks/results/OUT.md and OUT.json")
    args = parser.parse_args(argv)
    for name in args.mpi:
        missing = MPIS[name].missing()
        if missing:
            parser.error(f"{name}: {missing}")
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    cases = named(args.case, args.repeat, rng) if args.case else plan(args.runs, args.mpi, rng)
    workdir = tempfile.mkdtemp(prefix="srchaos-")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    began = time.monotonic()
    outcomes = []
    for i, case in enumerate(cases, 1):
        jobs = Jobs(workdir)
        try:
            outcome = chaos.run(jobs, case, workdir)
        except AssertionError as err:  # the run never reached its phase, or hung
            outcome = chaos.Outcome(case, False, float("inf"), -1, [], float("inf"), [],
                                    f"harness: {err}", "harness error")
        finally:
            jobs.cleanup()
        outcomes.append(outcome)
        print(f"[{i}/{len(cases)}] {case.name}: {'ok' if outcome.ok else 'FAILED'} "
              f"(struck {outcome.struck}; status {outcome.returncode}, launcher exit "
              f"{outcome.launcher_seconds:.1f}s, clean {outcome.clean_seconds:.1f}s)",
              flush=True)
        if not outcome.ok:
            print(outcome.explain(), flush=True)
    text = table(outcomes, time.monotonic() - began, seed)
    print("\n" + text)
    raw = [{**dataclasses.asdict(outcome), "ok": outcome.ok,
            "output": outcome.output[-2000:]} for outcome in outcomes]
    evidence.publish(args.out.removesuffix(".md"), "Chaos: every process of a job killed "
                     "at every phase", text, {"seed": seed, "runs": raw}, "bench-chaos")
    if all(outcome.ok for outcome in outcomes):
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"the failed runs' logs are kept in {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
