"""How long the suite takes: `make test`'s pytest run (the same command,
--workers workers), timed; the wall time in all, per test file, and the
slowest tests, from pytest's own JUnit report.

    python benchmarks/test_durations.py [--workers 2] [--top 25] [-- PYTEST ARGS]

Publishes benchmarks/results/tests.md and tests.json (every test's time and
outcome). The venvs must exist (`make test` builds them); MPICH's is
START_RAY_MPICH_VENV or .venv-mpich. CI's own run prints the same table's
figures (--durations=25) at the end of its log.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import evidence  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("pytest_args", nargs="*", help="after --: more for pytest")
    args = parser.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               START_RAY_MPICH_VENV=evidence.MPICH_VENV)
    with tempfile.TemporaryDirectory() as scratch:
        report = os.path.join(scratch, "report.xml")
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-n", str(args.workers), "--dist", "loadfile",
                               f"--junitxml={report}", *args.pytest_args], cwd=evidence.ROOT,
                              env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=3 * 3600)
        wall = time.monotonic() - began
        tests = []
        for case in ElementTree.parse(report).iter("testcase"):
            outcome = ("failed" if case.find("failure") is not None or case.find("error")
                       is not None else "skipped" if case.find("skipped") is not None
                       else "passed")
            tests.append({"file": case.get("classname", "").replace(".", "/") + ".py",
                          "name": case.get("name"), "seconds": float(case.get("time", 0)),
                          "outcome": outcome})
    print(done.stdout[-3000:], file=sys.stderr)
    counts = collections.Counter(test["outcome"] for test in tests)
    per_file: dict = collections.defaultdict(float)
    for test in tests:
        per_file[test["file"]] += test["seconds"]
    lines = [f"{len(tests)} tests on {args.workers} worker(s): {counts['passed']} passed, "
             f"{counts['failed']} failed, {counts['skipped']} skipped; wall time "
             f"{wall / 60:.1f} min, the tests' own times add up to "
             f"{sum(per_file.values()) / 60:.1f} min (pytest exit {done.returncode}).", "",
             "| test file | tests | seconds (sum) |", "|---|---:|---:|"]
    for name, seconds in sorted(per_file.items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {sum(t['file'] == name for t in tests)} | {seconds:.0f} |")
    lines += ["", f"The {args.top} slowest tests:", "", "| test | seconds | outcome |",
              "|---|---:|---|"]
    for test in sorted(tests, key=lambda t: -t["seconds"])[:args.top]:
        lines.append(f"| {test['file']}::{test['name']} | {test['seconds']:.1f} "
                     f"| {test['outcome']} |")
    failed = [f"- {t['file']}::{t['name']}" for t in tests if t["outcome"] == "failed"]
    if failed:
        lines += ["", "Failed:", *failed]
    text = "\n".join(lines)
    print(text)
    evidence.publish("tests", "How long the tests take", text,
                     {"wall_s": wall, "returncode": done.returncode, "tests": tests},
                     "bench-tests")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
