"""Helpers that run start_ray jobs the way users do (mpirun as a subprocess,
dask-mpi style) and check what they leave behind.

Every job gets a marker variable in its environment; the launcher passes it
to every rank, and every process a rank starts inherits it, so after a job
`leftovers(marker)` finds any process the job started and left running,
whatever its name, parent or process group.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Sequence

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
MPIRUN = os.path.join(os.path.dirname(PYTHON), "mpirun")
MARKER = "START_RAY_TEST_MARK"
DRIVER = os.path.join(ROOT, "drivers", "cluster_info.py")
HOLD_DRIVER = os.path.join(ROOT, "tests", "drivers", "hold.py")
SIGNALS_DRIVER = os.path.join(ROOT, "tests", "drivers", "signals.py")


def leftovers(mark: str, temp_root: Optional[str] = None) -> List[psutil.Process]:
    """Running processes (zombies excluded) that carry this job's marker in
    their environment (every descendant of every rank inherits it), or whose
    command line points into the job's temp dir."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARKER) == mark or (
                    temp_root and any(temp_root in arg for arg in proc.cmdline())):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            pass
    return found


def kill_marked(mark: str) -> None:
    """Test cleanup: kill what a job left (only processes with its marker)."""
    procs = leftovers(mark)
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def describe(procs: Sequence[psutil.Process]) -> str:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return "\n".join(out)


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    mark: str
    log_root: str
    temp_root: Optional[str] = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def run_dir(self) -> str:
        found = re.search(r"logs in (\S+)", self.stdout)
        assert found, f"no run dir announced:\n{self.output}"
        return found.group(1)

    def rank_logs(self) -> Dict[str, str]:
        logs = {}
        for name in sorted(os.listdir(self.run_dir)):
            with open(os.path.join(self.run_dir, name)) as handle:
                logs[name] = handle.read()
        return logs

    def cluster_info(self) -> dict:
        found = re.search(r"^CLUSTER_INFO (.*)$", self.stdout, re.M)
        assert found, f"the driver printed no report:\n{self.output}"
        return json.loads(found.group(1))


class Jobs:
    """Starts jobs for one test and cleans up after them."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.marks: List[str] = []
        # Short, so Ray's socket paths fit; removed at the end. Each job gets
        # a folder of its own in it (START_RAY_TEMP_DIR), so that what is
        # found there belongs to that job alone.
        self.temp_root = tempfile.mkdtemp(prefix="srt-", dir="/tmp")

    def command(self, np: Optional[int], args: Sequence[str],
                mpirun_args: Sequence[str] = ()) -> List[str]:
        start_ray = [PYTHON, "-m", "start_ray", *args]
        if np is None:
            return start_ray
        return [MPIRUN, "--oversubscribe", *mpirun_args, "-np", str(np), *start_ray]

    def env(self, mark: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("START_RAY_", "RAY_"))}
        env.update({MARKER: mark, "OMPI_ALLOW_RUN_AS_ROOT": "1",
                    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "PYTHONUNBUFFERED": "1",
                    "START_RAY_LOG_DIR": os.path.join(self.workdir, "logs"),
                    # Most tests need several Ray nodes on this one machine
                    # (one per rank); tests of the per-host default unset it.
                    "START_RAY_NODE_PER_RANK": "1",
                    "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
        env.update(extra or {})
        return env

    def start(self, np: Optional[int], args: Sequence[str],
              env: Optional[Dict[str, str]] = None,
              mpirun_args: Sequence[str] = ()) -> "Running":
        return self.launch(self.command(np, args, mpirun_args), env)

    def new_job(self, env: Optional[Dict[str, str]] = None):
        """(marker, environment, temp dir) for one job; cleaned up at the end."""
        mark = uuid.uuid4().hex
        self.marks.append(mark)
        temp_dir = os.path.join(self.temp_root, str(len(self.marks)))
        os.mkdir(temp_dir)
        return mark, self.env(mark, {"START_RAY_TEMP_DIR": temp_dir, **(env or {})}), temp_dir

    def launch(self, cmd: Sequence[str], env: Optional[Dict[str, str]] = None) -> "Running":
        """Start any command line as a marked job with a temp dir of its own."""
        mark, full_env, temp_dir = self.new_job(env)
        proc = subprocess.Popen(list(cmd), cwd=self.workdir, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        return Running(proc, mark, os.path.join(self.workdir, "logs"), temp_dir)

    def run(self, np: Optional[int], args: Sequence[str], timeout: float = 240,
            env: Optional[Dict[str, str]] = None, mpirun_args: Sequence[str] = ()) -> Result:
        return self.start(np, args, env, mpirun_args).wait(timeout)

    def hold(self, np: Optional[int], *args: str, name: str = "job",
             mpirun_args: Sequence[str] = ()):
        """Start a job whose driver (tests/drivers/hold.py) keeps the cluster
        until release() is called; returns (running job, address, release)."""
        ready = os.path.join(self.workdir, f"{name}.ready")
        until = os.path.join(self.workdir, f"{name}.until")
        running = self.start(np, ["--num-cpus", "1", *args, HOLD_DRIVER, "--ready", ready,
                                  "--until", until], mpirun_args=mpirun_args)
        address, nodes = running.wait_for_file(ready, timeout=180).split()
        assert int(nodes) == (np or 1)
        return running, address, lambda: open(until, "w").close()

    def cleanup(self) -> None:
        for mark in self.marks:
            kill_marked(mark)
        shutil.rmtree(self.temp_root, ignore_errors=True)


class Running:
    def __init__(self, proc: subprocess.Popen, mark: str, log_root: str,
                 temp_root: Optional[str] = None) -> None:
        self.proc = proc
        self.mark = mark
        self.log_root = log_root
        self.temp_root = temp_root  # the job's own START_RAY_TEMP_DIR
        self.began = time.monotonic()

    def wait_for_file(self, path: str, timeout: float) -> str:
        """The content of `path` once a driver has written it; fail if the job
        ends first or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if os.path.exists(path):
                with open(path) as handle:
                    text = handle.read()
                if text.endswith("\n"):
                    return text.strip()
            time.sleep(0.2)
        out, err = self.proc.communicate() if self.proc.poll() is not None else ("", "")
        raise AssertionError(f"{path} never appeared:\n{out}\n{err}")

    def processes(self) -> List[psutil.Process]:
        return leftovers(self.mark)

    def wait(self, timeout: float) -> Result:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            kill_marked(self.mark)  # orphans may hold the output pipes open
            out, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"job did not end within {timeout}s:\n{out}\n{err}") from None
        return Result(self.proc.returncode, out, err, time.monotonic() - self.began,
                      self.mark, self.log_root, self.temp_root)


def finish_held(running: "Running", release) -> Result:
    """Release a held job; it must then end well, its cluster still working."""
    release()
    result = running.wait(120)
    assert result.returncode == 0, result.output
    assert "STILL WORKS 1" in result.stdout, "the cluster still worked at the end"
    assert_nothing_left(result)
    return result


def assert_nothing_left(result: Result, within: float = 5.0) -> None:
    """No process the job started is running. Processes that mpirun was
    still reaping when it returned get a few seconds to disappear."""
    deadline = time.monotonic() + within
    left = leftovers(result.mark, result.temp_root)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftovers(result.mark, result.temp_root)
    assert not left, f"processes left by the job:\n{describe(left)}\n{result.output}"
