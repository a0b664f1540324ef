"""The Ray matrix: run a set of tests in several venvs (one Ray each) and
print a table; exit 1 if any test failed there.

    python benchmarks/compat_table.py --tests tests -m every_ray \\
        .venv-ray-2.40.0 .venv-ray-2.52.1 .venv

`make compat` runs it on every Ray in OLD_RAYS and on .venv (the newest).
Each venv runs its own pytest, so start_ray, Ray and the tests' helpers are
all that venv's; the table goes to stdout and is published as
benchmarks/results/compat.md (with compat.json: benchmarks/evidence.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "benchmarks")]

import evidence  # noqa: E402

from jobs import ray_version  # noqa: E402


def run_tests(venv: str, tests: List[str], timeout: float) -> Dict[str, object]:
    """Run `tests` with the venv's pytest; counts, failures and minutes."""
    python = os.path.join(venv, "bin", "python")
    with tempfile.TemporaryDirectory() as scratch:
        report = os.path.join(scratch, "report.xml")
        began = time.monotonic()
        try:
            done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   f"--junitxml={report}", *tests], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout)
            output, status = done.stdout, done.returncode
        except subprocess.TimeoutExpired as err:
            output, status = f"{err.stdout or ''}\ntimed out after {timeout:g}s", -1
        minutes = (time.monotonic() - began) / 60
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        failures: List[str] = []
        if os.path.exists(report):
            for case in ElementTree.parse(report).getroot().iter("testcase"):
                name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    counts["failed"] += 1
                    failures.append(name)
                elif case.find("skipped") is not None:
                    counts["skipped"] += 1
                else:
                    counts["passed"] += 1
        if status not in (0, 5) and not failures:  # pytest itself failed
            counts["failed"] += 1
            failures.append(f"pytest exited {status}")
    print(output[-6000:] if failures else output.strip().splitlines()[-1], flush=True)
    return {**counts, "failures": failures, "minutes": minutes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venvs", nargs="+", help="venvs to run the tests in")
    parser.add_argument("--tests", required=True, help="test files, space-separated")
    parser.add_argument("-m", dest="marker", default="",
                        help="pytest's -m: the marked tests only")
    parser.add_argument("-k", dest="select", default="",
                        help="pytest's -k: which of the tests to run")
    parser.add_argument("--timeout", type=float, default=1500,
                        help="seconds for one venv's tests (default: %(default)s)")
    args = parser.parse_args()
    tests = shlex.split(args.tests) + (["-m", args.marker] if args.marker else []) + (
        ["-k", args.select] if args.select else [])
    rows = []
    for venv in args.venvs:
        python = os.path.join(venv, "bin", "python")
        version = ray_version(python) or "none"
        print(f"== Ray {version} ({venv}): {shlex.join(tests)}", flush=True)
        rows.append((version, venv, run_tests(venv, tests, args.timeout)))
    lines = [f"Tests: {shlex.join(tests)}", "",
             "| Ray | venv | passed | failed | skipped | minutes |",
             "|---|---|---:|---:|---:|---:|"]
    for version, venv, found in rows:
        lines.append(f"| {version} | {os.path.basename(venv.rstrip('/'))} | {found['passed']} "
                     f"| {found['failed']} | {found['skipped']} | {found['minutes']:.1f} |")
    failed = [f"Ray {version}: {name}" for version, _, found in rows
              for name in found["failures"]]  # type: ignore[union-attr]
    if failed:
        lines += ["", "Failed:"] + [f"- {name}" for name in failed]
    table = "\n".join(lines)
    print("\n" + table, flush=True)
    evidence.publish("compat", "The Ray matrix", table,
                     [{"ray": version, "venv": venv, **found} for version, venv, found in rows],
                     "compat")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
