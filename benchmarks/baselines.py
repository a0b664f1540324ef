"""The usual ways of starting Ray in a batch job, timed the same way as
start_ray (launch -> the driver's first line), on this one machine.

- sleep recipe: what common Slurm scripts do: `ray start --head --block &`,
  `sleep 10`, then for each worker `ray start --address ... --block &` and
  `sleep 5`, then the driver.
- floor: one `ray start --head` and one `ray start --address`, each timed
  alone (they return once their node is up): no launcher can beat their sum.

Each baseline runs in its own temp dirs with its processes marked
(BENCH_MARK in their environment), and is stopped by killing exactly those
processes: never `ray stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from start_ray.host import network  # noqa: E402  (the same auth settings as start_ray)
from start_ray.node import auth  # noqa: E402  (the same auth settings as start_ray)

BIN = os.path.dirname(sys.executable)
RAY = os.path.join(BIN, "ray")
HOLD = os.path.join(ROOT, "benchmarks", "hold_driver.py")
IP = network.choose_address(None, None)[0]

SLEEP_RECIPE = r"""
set -u
# As in the Slurm scripts people copy: fixed sleeps instead of readiness.
"$RAY" start --head --node-ip-address "$IP" --port "$PORT" --temp-dir "$TMP/head" --num-cpus 1 \
    --include-dashboard false --disable-usage-stats --block > "$TMP/head.log" 2>&1 &
sleep 10
for i in $(seq 2 "$N"); do
    "$RAY" start --address "$IP:$PORT" --node-ip-address "$IP" --temp-dir "$TMP/w$i" --num-cpus 1 \
        --disable-usage-stats --block > "$TMP/w$i.log" 2>&1 &
    sleep 5
done
RAY_ADDRESS="$IP:$PORT" "$PYTHON" "$HOLD" --hold 0 --report "$TMP/report.json"
"""


def _env(mark: str) -> Dict[str, str]:
    env = auth.apply(dict(os.environ), None)  # auth off, explicitly, everywhere
    env.update(BENCH_MARK=mark, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return env


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def marked(mark: str) -> List[psutil.Process]:
    """Running processes (zombies excluded) that carry `mark`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE
                    and proc.environ().get("BENCH_MARK") == mark):
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def _children_cpu() -> float:
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of(procs: List[psutil.Process]) -> float:
    """CPU seconds the processes have used so far."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def left_after(mark: str, within: float = 5.0) -> List[str]:
    """What is still running with `mark` once processes that were exiting
    have had `within` seconds to go."""
    deadline = time.time() + within
    while marked(mark) and time.time() < deadline:
        time.sleep(0.1)
    out = []
    for proc in marked(mark):
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
        except psutil.Error:
            pass
    return out


def kill_marked(mark: str) -> int:
    """Stop every process carrying `mark`: SIGINT to `ray start --block`
    (stops its node without a drain), then SIGKILL what is left."""
    procs = marked(mark)
    for proc in procs:
        try:
            if "start" in proc.cmdline()[:4]:
                proc.send_signal(signal.SIGINT)
        except (psutil.Error, OSError):
            pass
    psutil.wait_procs(procs, timeout=5)
    left = marked(mark)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    return len(procs)


def sleep_recipe(n: int) -> float:
    """Seconds from launching the recipe to its driver's start."""
    mark = uuid.uuid4().hex
    tmp = tempfile.mkdtemp(prefix="srbs-", dir="/tmp")
    env = dict(_env(mark), RAY=RAY, PORT=str(_free_port()), TMP=tmp, N=str(n), IP=IP,
               PYTHON=sys.executable, HOLD=HOLD)
    try:
        launched = time.time()
        subprocess.run(["bash", "-c", SLEEP_RECIPE], env=env, timeout=60 + 10 * n,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        with open(os.path.join(tmp, "report.json")) as handle:
            return json.load(handle)["driver_started"] - launched
    finally:
        kill_marked(mark)
        shutil.rmtree(tmp, ignore_errors=True)


def floor() -> Dict[str, float]:
    """Seconds for one `ray start --head` and one `ray start --address`."""
    mark = uuid.uuid4().hex
    tmp = tempfile.mkdtemp(prefix="srbf-", dir="/tmp")
    env, port = _env(mark), _free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    children_before = _children_cpu()
    try:
        began = time.time()
        subprocess.run([RAY, "start", "--head", "--node-ip-address", IP, "--port", str(port), "--temp-dir",
                        f"{tmp}/head", "--include-dashboard", "false", *common], env=env,
                       check=True, timeout=120, capture_output=True)
        head = time.time() - began
        # what the daemons used, plus `ray start` itself (a waited-for child)
        cpu_head = cpu_of(marked(mark)) + _children_cpu()
        began = time.time()
        subprocess.run([RAY, "start", "--address", f"{IP}:{port}", "--node-ip-address", IP, "--temp-dir",
                        f"{tmp}/w", *common], env=env, check=True, timeout=120,
                       capture_output=True)
        join = time.time() - began
        return {"head": head, "join": join, "cpu_head": cpu_head - children_before,
                "cpu_join": cpu_of(marked(mark)) + _children_cpu() - cpu_head}
    finally:
        kill_marked(mark)
        shutil.rmtree(tmp, ignore_errors=True)
