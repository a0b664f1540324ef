"""Is start_ray's cluster as fast as a plain one? Two RPC-bound tests of
Ray's own microbenchmark ("single client tasks sync", "1:1 actor calls
sync": benchmarks/microbench_driver.py) on start_ray's cluster (token
authentication and all: `mpirun --bind-to none -np 1 python -m start_ray
DRIVER`) and on a plain `ray start --head` cluster (Ray's defaults, auth off
as in benchmarks/baselines.py), alternating, --rounds rounds. Reports each run and,
per test, the medians and start_ray / plain.

    python benchmarks/microbench.py [--rounds 3] [--cpus 2]

Publishes benchmarks/results/microbenchmark.md and .json. About 2 minutes a
round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import baselines  # noqa: E402
import evidence  # noqa: E402
from microbench_driver import TESTS  # noqa: E402

DRIVER = os.path.join(HERE, "microbench_driver.py")
BIN = os.path.dirname(sys.executable)


def parse(output: str) -> Dict[str, list]:
    found = re.search(r"^MICROBENCH (.*)$", output, re.M)
    if not found:
        raise SystemExit(f"no MICROBENCH line:\n{output[-3000:]}")
    return json.loads(found.group(1))


def under_start_ray(cpus: int) -> Dict[str, list]:
    mark = uuid.uuid4().hex
    tmp = tempfile.mkdtemp(prefix="srmb-", dir="/tmp")
    env = dict(os.environ, BENCH_MARK=mark, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="^ofi",
               START_RAY_LOG_DIR=os.path.join(tmp, "logs"))
    try:
        # --bind-to none: Open MPI binds a job of 1 or 2 ranks to one core
        # each, and a rank's Ray node inherits it; the plain cluster has every
        # core (what a user with a whole host wants: docs/resources-gpus.md).
        done = subprocess.run([os.path.join(BIN, "mpirun"), "--bind-to", "none", "-np", "1",
                               sys.executable, "-m",
                               "start_ray", "--num-cpus", str(cpus), DRIVER], env=env,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"start_ray: exit {done.returncode}\n{done.stdout[-3000:]}")
        found = parse(done.stdout)
        if found["auth"] != "token":
            raise SystemExit(f"start_ray's cluster ran without a token: {found['auth']}")
        return found
    finally:
        baselines.kill_marked(mark)
        shutil.rmtree(tmp, ignore_errors=True)


def plain(cpus: int) -> Dict[str, list]:
    mark = uuid.uuid4().hex
    tmp = tempfile.mkdtemp(prefix="srmbp-", dir="/tmp")
    env = baselines._env(mark)
    port = baselines._free_port()
    try:
        subprocess.run([baselines.RAY, "start", "--head", "--node-ip-address", baselines.IP,
                        "--port", str(port), "--temp-dir", os.path.join(tmp, "head"),
                        "--num-cpus", str(cpus), "--include-dashboard", "false",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True,
                       timeout=120)
        done = subprocess.run([sys.executable, DRIVER], capture_output=True, text=True,
                              env={**env, "RAY_ADDRESS": f"{baselines.IP}:{port}"},
                              timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"plain: exit {done.returncode}\n{done.stderr[-3000:]}")
        return parse(done.stdout)
    finally:
        baselines.kill_marked(mark)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for round_ in range(args.rounds):  # alternating, the first one first in turn
        order = [("start_ray", under_start_ray), ("plain", plain)]
        for kind, measure in (order if round_ % 2 == 0 else order[::-1]):
            runs.append({"round": round_, "cluster": kind, "tests": measure(args.cpus)})
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    lines = [f"One Ray node with {args.cpus} CPUs; Ray's own `timeit` (a warm-up, then 4 x 2 s; "
             f"mean calls per second); {args.rounds} rounds, the two clusters alternating.", "",
             "| test | start_ray: median (runs) | plain: median (runs) | start_ray / plain |",
             "|---|---:|---:|---:|"]
    for test in TESTS:
        ours = [r["tests"][test][0] for r in runs if r["cluster"] == "start_ray"]
        theirs = [r["tests"][test][0] for r in runs if r["cluster"] == "plain"]
        mine, base = evidence.median(ours), evidence.median(theirs)
        lines.append(f"| {test} | {mine:.0f} ({', '.join(f'{v:.0f}' for v in ours)}) "
                     f"| {base:.0f} ({', '.join(f'{v:.0f}' for v in theirs)}) "
                     f"| {mine / base:.3f} |")
    text = "\n".join(lines)
    print(text)
    evidence.publish("microbenchmark", "Ray's microbenchmark on start_ray's cluster and a "
                     "plain one", text, runs, "bench-microbenchmark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
