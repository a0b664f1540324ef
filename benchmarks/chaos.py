"""The randomized chaos matrix: under Open MPI and MPICH, end rank 0, a rank
that owns a worker node, a rank that owns no node (SIGKILL) or the launcher
(SIGTERM), while the head starts, workers join, the driver runs, or during
teardown (see tests/chaos.py for the cases and what each run checks).

    python benchmarks/chaos.py [--runs 60] [--seed N] [--mpi openmpi mpich]

Every case runs at least once, the rest are drawn at random. Prints a table
per case (runs, victim hit, leftovers 5 s after the launcher exited, worst
launcher exit and worst time to clean) and writes it to
logs/benchmarks/chaos.md (copied to benchmarks/results/). Exits 1 if any run
left a process or broke a bound. About 12 s a run on a 2-core machine.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, os.path.join(ROOT, "tests"))

import chaos  # noqa: E402
from jobs import MPIS, Jobs  # noqa: E402

OUT = os.path.join(ROOT, "logs", "benchmarks")


def plan(runs: int, mpis: List[str], rng: random.Random) -> List[chaos.Case]:
    cases = [case for case in chaos.all_cases() if case.mpi in mpis]
    chosen = list(cases) + [rng.choice(cases) for _ in range(max(0, runs - len(cases)))]
    rng.shuffle(chosen)
    return chosen


def table(outcomes: List[chaos.Outcome], seconds: float, seed: int) -> str:
    by_case: Dict[str, List[chaos.Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_case[outcome.case.name].append(outcome)
    lines = [
        f"Chaos matrix: {len(outcomes)} runs, seed {seed}, {seconds / 60:.1f} min "
        f"({time.strftime('%Y-%m-%d')}). Bounds: launcher exit <= "
        f"{chaos.LAUNCHER_EXIT_BOUND:g} s after the kill; nothing left "
        f"{chaos.CLEAN_BOUND:g} s after the launcher exit.",
        "",
        "| case (mpi-victim-phase) | runs | victim hit | leftovers at 5 s | silent logs "
        "| worst launcher exit (s) | worst time to clean (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(by_case):
        group = by_case[name]
        lines.append(
            f"| {name} | {len(group)} | {sum(o.hit for o in group)} "
            f"| {sum(len(o.left_at_bound) for o in group)} "
            f"| {sum(len(o.silent_logs) for o in group)} "
            f"| {max(o.launcher_seconds for o in group):.1f} "
            f"| {max(o.clean_seconds for o in group):.1f} |")
    lines.append(
        f"| **all** | {len(outcomes)} | {sum(o.hit for o in outcomes)} "
        f"| {sum(len(o.left_at_bound) for o in outcomes)} "
        f"| {sum(len(o.silent_logs) for o in outcomes)} "
        f"| {max(o.launcher_seconds for o in outcomes):.1f} "
        f"| {max(o.clean_seconds for o in outcomes):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mpi", nargs="+", default=list(MPIS), choices=list(MPIS))
    args = parser.parse_args(argv)
    for name in args.mpi:
        missing = MPIS[name].missing()
        if missing:
            parser.error(f"{name}: {missing}")
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    cases = plan(args.runs, args.mpi, random.Random(seed))
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
                                    f"harness: {err}")
        finally:
            jobs.cleanup()
        outcomes.append(outcome)
        print(f"[{i}/{len(cases)}] {case.name}: {'ok' if outcome.ok else 'FAILED'} "
              f"(hit {outcome.hit}, launcher exit {outcome.launcher_seconds:.1f}s, "
              f"clean {outcome.clean_seconds:.1f}s)", flush=True)
        if not outcome.ok:
            print(outcome.explain(), flush=True)
    text = table(outcomes, time.monotonic() - began, seed)
    print("\n" + text)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "chaos.md"), "w") as handle:
        handle.write(text)
    shutil.copy(os.path.join(OUT, "chaos.md"), os.path.join(HERE, "results", "chaos.md"))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
