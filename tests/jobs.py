"""Helpers that run start_ray jobs the way users do (mpirun or mpiexec as a
subprocess, dask-mpi style) and check what they leave behind.

Every job gets a marker variable of the tests' own in its environment (the
launcher passes it to every rank, every process below inherits it), and a
snapshot of the processes running when it was launched. `leftovers` then
finds what the job left by both, from raw /proc bytes (tests/leftovers.py),
independently of how start_ray finds its own processes.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import leftovers as found_by
import psutil
from requirements import requires

from start_ray.node import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
MPIRUN = os.path.join(os.path.dirname(PYTHON), "mpirun")
# The MPICH venv (PyPI `mpich`, Hydra's mpiexec) that `make` builds beside .venv.
MPICH_VENV = os.environ.get("START_RAY_MPICH_VENV", os.path.join(ROOT, ".venv-mpich"))
MARKER = "START_RAY_TEST_MARK"
DRIVER = os.path.join(ROOT, "drivers", "cluster_info.py")
HOLD_DRIVER = os.path.join(ROOT, "tests", "drivers", "hold.py")
SIGNALS_DRIVER = os.path.join(ROOT, "tests", "drivers", "signals.py")


@dataclasses.dataclass(frozen=True)
class Mpi:
    """One MPI: its Python (whose mpi4py loads that MPI) and its launcher."""

    name: str
    python: str
    launcher: str
    launcher_args: Tuple[str, ...]
    rank_variable: str  # where the launcher tells each process its rank

    def command(self, np: int, cmd: Sequence[str], extra: Sequence[str] = ()) -> List[str]:
        return [self.launcher, *self.launcher_args, *extra, "-n", str(np), *cmd]

    def killed_by(self, signum: int) -> Tuple[int, ...]:
        """The launcher's exit status when its tasks die of `signum`: Open
        MPI's 128+N; Hydra's N, or N|9 when it SIGKILLed the rest (the
        bitwise OR of its tasks' statuses)."""
        return (128 + signum,) if self.name == "openmpi" else (signum, signum | signal.SIGKILL)

    def has(self, module: str) -> bool:
        """Whether this MPI's Python (the jobs' Python) can import `module`:
        a test's own Python may have extras that the jobs' lack."""
        return python_has(self.python, module)

    def missing(self) -> Optional[str]:
        """Why this MPI cannot be used here, or None."""
        for path in (self.python, self.launcher):
            if not os.access(path, os.X_OK):
                return f"{path} not found: `make venv` builds it"
        return None

    def skip_unless_here(self) -> None:
        """Skip (or, where CI requires this MPI, fail) when it is missing."""
        missing = self.missing()
        if missing:
            from requirements import skip_or_fail
            skip_or_fail(self.name, missing)


# Tests that lose a worker node while the driver (on the head's host, among
# the other ranks' nodes) goes on: before Ray 2.54 the driver may have attached
# to that very node (rank 0 then warns; tests/test_compat.py pins the difference).
driver_on_the_head = requires(
    "ray-2.54", None if compat.driver_prefers_head() else
    f"Ray {compat.ray_version()} may attach the driver to the lost node")


OPENMPI = Mpi("openmpi", PYTHON, MPIRUN, ("--oversubscribe",), "OMPI_COMM_WORLD_RANK")
MPICH = Mpi("mpich", os.path.join(MPICH_VENV, "bin", "python"),
            os.path.join(MPICH_VENV, "bin", "mpiexec"), (), "PMI_RANK")
MPIS = {mpi.name: mpi for mpi in (OPENMPI, MPICH)}
# The MPI of the jobs a test does not give one (START_RAY_TEST_MPI=mpich: run
# e.g. the fault tests under MPICH's Hydra instead of Open MPI).
DEFAULT_MPI = MPIS[os.environ.get("START_RAY_TEST_MPI", "openmpi")]


@functools.lru_cache(maxsize=None)
def python_has(python: str, module: str) -> bool:
    """Whether `python` finds `module` (False if it cannot run)."""
    try:
        return subprocess.run([python, "-c", "import importlib.util, sys; "
                               f"sys.exit(importlib.util.find_spec({module!r}) is None)"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# Tests of Ray's dashboard: the jobs' Python needs ray[default].
needs_dashboard = requires(
    "dashboard", None if DEFAULT_MPI.has("aiohttp") else
    f"{DEFAULT_MPI.python} has no ray[default] (the `dashboard` extra)")


def ray_version(python: str) -> str:
    """The Ray version a Python has (from its metadata; '' if none)."""
    out = subprocess.run([python, "-c", "import importlib.metadata as m; "
                          "print(m.version('ray'))"], capture_output=True, text=True,
                         timeout=60).stdout
    return out.strip()


def other_ray_python() -> Optional[str]:
    """A Python with another Ray than ours and the same MPI (one of the
    venvs `make` builds: .venv with the newest Ray, .venv-ray-X for older
    ones), or None."""
    ours = ray_version(PYTHON)
    for venv in sorted(glob.glob(os.path.join(ROOT, ".venv-ray-*"))) + [
            os.path.join(ROOT, ".venv")]:
        python = os.path.join(venv, "bin", "python")
        if os.access(python, os.X_OK) and ray_version(python) not in ("", ours):
            return python
    return None


def leftovers(mark: str, temp_root: Optional[str] = None,
              since: Optional[found_by.Snapshot] = None) -> List[psutil.Process]:
    """Running processes (zombies excluded) that carry this job's marker in
    their raw environment, point into the job's temp dir, or, when `since`
    is given, are new since then and look like Ray or MPI."""
    return found_by.find(MARKER, mark, since, temp_root)


def kill_marked(mark: str, settle: float = 10.0) -> None:
    """Test cleanup: kill what a job left (only processes with its marker).
    The job's own watchdogs carry the marker too and may still be at work
    (a test that failed early): they get `settle` seconds to finish first."""
    deadline = time.monotonic() + settle
    while leftovers(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
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
    before: Optional[found_by.Snapshot] = None  # the processes before the launch

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
            if not (name.startswith("rank-") and name.endswith(".log")):
                continue  # summary.txt, ray/
            with open(os.path.join(self.run_dir, name)) as handle:
                logs[name] = handle.read()
        return logs

    @property
    def rank0_log(self) -> str:
        """Rank 0's log file: every detail (the console gets the short story)."""
        name = min(self.rank_logs())
        assert re.fullmatch(r"rank-0+\.log", name), name
        return self.rank_logs()[name]

    def summary(self) -> str:
        """The run's summary.txt (rank 0 writes it at the end)."""
        with open(os.path.join(self.run_dir, "summary.txt")) as handle:
            return handle.read()

    def ray_logs(self) -> Dict[str, List[str]]:
        """{rank folder: files in it} of the Ray logs copied into the run folder."""
        root = os.path.join(self.run_dir, "ray")
        found = {}
        for folder in sorted(glob.glob(os.path.join(root, "rank-*"))):
            found[os.path.basename(folder)] = sorted(
                os.path.relpath(path, folder)
                for path in glob.glob(os.path.join(folder, "**"), recursive=True)
                if os.path.isfile(path))
        return found

    def run_record(self) -> dict:
        """The run's summary.json: its status, cause and typed events."""
        with open(os.path.join(self.run_dir, "summary.json")) as handle:
            return json.load(handle)

    def cluster_info(self) -> dict:
        return self.report("CLUSTER_INFO")

    def report(self, tag: str) -> dict:
        """The JSON a driver printed after `tag`."""
        found = re.search(rf"^{tag} (.*)$", self.stdout, re.M)
        assert found, f"the driver printed no {tag} report:\n{self.output}"
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
                mpirun_args: Sequence[str] = (), mpi: Mpi = DEFAULT_MPI) -> List[str]:
        start_ray = [mpi.python, "-m", "start_ray", *args]
        if np is None:
            return start_ray
        return mpi.command(np, start_ray, mpirun_args)

    def env(self, mark: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("START_RAY_", "RAY_"))}
        env.update({MARKER: mark, "OMPI_ALLOW_RUN_AS_ROOT": "1",
                    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "PYTHONUNBUFFERED": "1",
                    "START_RAY_LOG_DIR": os.path.join(self.workdir, "logs"),
                    # Most tests need several Ray nodes on this one machine
                    # (one per rank); tests of the per-host default unset it.
                    "START_RAY_NODE_PER_RANK": "1",
                    # A Ray without token auth (before 2.52) runs only with
                    # --no-auth (tests/test_compat.py checks the refusal).
                    **({} if compat.has_token_auth() else {"START_RAY_NO_AUTH": "1"}),
                    # Open MPI from PyPI spends ~1 s of every MPI_Init probing
                    # libfabric's networks; one machine (or emulated hosts on
                    # TCP) has none: skip the probe (docs/getting-started.md: On a laptop).
                    "OMPI_MCA_btl": os.environ.get("OMPI_MCA_btl", "^ofi"),
                    "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
        env.update(extra or {})
        return env

    def start(self, np: Optional[int], args: Sequence[str],
              env: Optional[Dict[str, str]] = None,
              mpirun_args: Sequence[str] = (), mpi: Mpi = DEFAULT_MPI) -> "Running":
        return self.launch(self.command(np, args, mpirun_args, mpi), env)

    def new_job(self, env: Optional[Dict[str, str]] = None):
        """(marker, environment, temp dir) for one job; cleaned up at the end."""
        mark = uuid.uuid4().hex
        self.marks.append(mark)
        temp_dir = os.path.join(self.temp_root, str(len(self.marks)))
        os.mkdir(temp_dir)
        return mark, self.env(mark, {"START_RAY_TEMP_DIR": temp_dir, **(env or {})}), temp_dir

    def launch(self, cmd: Sequence[str], env: Optional[Dict[str, str]] = None,
               cwd: Optional[str] = None) -> "Running":
        """Start any command line as a marked job with a temp dir of its own
        (in the test's folder, or `cwd`)."""
        mark, full_env, temp_dir = self.new_job(env)
        before = found_by.snapshot()
        proc = subprocess.Popen(list(cmd), cwd=cwd or self.workdir, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        return Running(proc, mark, os.path.join(self.workdir, "logs"), temp_dir, before)

    def run(self, np: Optional[int], args: Sequence[str], timeout: float = 240,
            env: Optional[Dict[str, str]] = None, mpirun_args: Sequence[str] = ()) -> Result:
        return self.start(np, args, env, mpirun_args).wait(timeout)

    def hold(self, np: Optional[int], *args: str, name: str = "job",
             mpirun_args: Sequence[str] = (), driver_args: Sequence[str] = ()):
        """Start a job whose driver (tests/drivers/hold.py) keeps the cluster
        until release() is called; returns (running job, address, release)."""
        ready = os.path.join(self.workdir, f"{name}.ready")
        until = os.path.join(self.workdir, f"{name}.until")
        running = self.start(np, ["--num-cpus", "1", *args, HOLD_DRIVER, "--ready", ready,
                                  "--until", until, *driver_args], mpirun_args=mpirun_args)
        address, nodes = running.wait_for_file(ready, timeout=180).split()
        assert int(nodes) == (np or 1)
        return running, address, lambda: open(until, "w").close()

    def cleanup(self) -> None:
        for mark in self.marks:
            kill_marked(mark)
        shutil.rmtree(self.temp_root, ignore_errors=True)


class Running:
    def __init__(self, proc: subprocess.Popen, mark: str, log_root: str,
                 temp_root: Optional[str] = None,
                 before: Optional[found_by.Snapshot] = None) -> None:
        self.proc = proc
        self.mark = mark
        self.log_root = log_root
        self.temp_root = temp_root  # the job's own START_RAY_TEMP_DIR
        self.before = before
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
                      self.mark, self.log_root, self.temp_root, self.before)


def run_record(result: Result) -> dict:
    return result.run_record()


def events_of(result: Result, kind: str) -> List[dict]:
    """The run's events of one kind (summary.json), e.g. "node_lost"."""
    return [event for event in result.run_record()["events"] if event["event"] == kind]


def wait_for_rank0_log(running: "Running", needle: str, timeout: float) -> str:
    """Rank 0's log of a running job once it contains `needle` (or whatever
    it holds when `timeout` seconds have passed)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline and needle not in text:
        time.sleep(0.2)
        text = "".join(open(os.path.join(root, name)).read()
                       for root, _, names in os.walk(running.log_root) for name in names
                       if name == "rank-0.log")
    return text


def finish_held(running: "Running", release) -> Result:
    """Release a held job; it must then end well, its cluster still working."""
    return finish_all_held([(running, release)])[0]


def finish_all_held(held: List[Tuple["Running", Any]]) -> List[Result]:
    """Release held jobs that run at once; only when all have ended is each
    checked for leftovers (a job still running has agents whose renamed
    environ may no longer say whose they are)."""
    for _, release in held:
        release()
    results = [running.wait(120) for running, _ in held]
    for result in results:
        assert result.returncode == 0, result.output
        assert "STILL WORKS 1" in result.stdout, "the cluster still worked at the end"
    for result in results:
        assert_nothing_left(result)
    return results


def assert_nothing_left(result: Result, within: float = 5.0) -> None:
    """No process the job started is running `within` seconds after the
    launcher returned (found independently of start_ray: see leftovers.py)."""
    deadline = time.monotonic() + within
    left = leftovers(result.mark, result.temp_root, result.before)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = leftovers(result.mark, result.temp_root, result.before)
    assert not left, f"processes left by the job:\n{describe(left)}\n{result.output}"


# The processes whose children are an MPI job's ranks: Open MPI's prterun
# (local ranks) and prted (remote hosts), MPICH's hydra_pmi_proxy, Slurm's
# slurmstepd.
RANK_PARENTS = {"prterun", "prted", "orted", "hydra_pmi_proxy", "slurmstepd"}


def rank_of(environ: Dict[str, str], mpi: Mpi = DEFAULT_MPI) -> int:
    """A rank's number from its environment: `mpi`'s variable, else another
    MPI's (a test that launches with one MPI whatever START_RAY_TEST_MPI
    says), else 0 (no launcher)."""
    names = [mpi.rank_variable, *(other.rank_variable for other in MPIS.values())]
    return int(next((environ[name] for name in names if name in environ), "0"))


def rank_processes(running: Running, mpi: Mpi = DEFAULT_MPI) -> Dict[int, psutil.Process]:
    """The job's rank processes (`python -m start_ray`, or a program using
    the API), by rank (from the launcher's rank variable in their raw
    environment; 0 without a launcher).

    A rank is a child of the launcher's daemon (or the launched process
    itself, without a launcher). The command line and environment alone do
    not tell: a child of a rank between fork and exec carries both, and the
    chaos test once killed such a child (the node-table helper) instead of
    rank 0."""
    ranks = {}
    for proc in running.processes():
        try:
            cmdline = proc.cmdline()
            parent = found_by.kernel_name(proc.ppid())
        except psutil.Error:
            continue
        if proc.pid != running.proc.pid and parent not in RANK_PARENTS:
            continue
        if cmdline and os.path.basename(cmdline[0]).startswith("py"):  # start_ray or an API program
            ranks[rank_of(found_by.environ(proc.pid), mpi)] = proc
    return ranks


def helper_process(running: Running, module: str, rank: int,
                   mpi: Mpi = DEFAULT_MPI) -> Optional[psutil.Process]:
    """The helper `python -m start_ray.<module>` that `rank` started (a child
    of the rank process itself), or None."""
    owner = rank_processes(running, mpi).get(rank)
    if owner is None:
        return None
    try:
        children = owner.children()
    except psutil.Error:
        return None
    for child in children:
        args = found_by.cmdline(child.pid)
        if args[1:3] == ["-m", f"start_ray.{module}"]:
            return child
    return None


def node_process(running: Running, name: str, rank: int) -> Optional[psutil.Process]:
    """A Ray process (`raylet`, `gcs_server`) of the given rank's node, or
    None (by its name and the job variable in its raw environment)."""
    for proc in running.processes():
        try:
            if found_by.kernel_name(proc.pid) == name and \
                    found_by.environ(proc.pid).get("START_RAY_JOB", "").endswith(f"/{rank}"):
                return proc
        except psutil.Error:
            continue
    return None


def ray_process(running: Running, name: str, rank: int) -> psutil.Process:
    """Like node_process; one that is missing fails the test."""
    proc = node_process(running, name, rank)
    if proc is None:
        raise AssertionError(f"no {name} of rank {rank}")
    return proc
