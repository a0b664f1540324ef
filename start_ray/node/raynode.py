"""One Ray node: a `ray start --block` child that this rank owns.

`--block` keeps `ray start` in the foreground as our child, so the node lives
exactly as long as we let it; its output goes to the rank's log, and the
moment it prints that the runtime started is the moment we act on, no sleeps.

A head whose GCS keeps its state in a store (gcs_server.py) runs without
`--block`, which would kill the head's raylet when the GCS dies: `ray start`
then exits once the node runs, and its processes, orphans, stay this rank's
(a subreaper), found by the temp dir they run in.
"""

from __future__ import annotations

import collections
import glob
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import psutil

from start_ray.errors import NodeError
from start_ray.node import compat, gcs_server
from start_ray.node.gcs_server import GcsServer
from start_ray.node.ports import free_port
from start_ray.node.ready_ray import ReadyRay, ray_beside_python
from start_ray.procs import helpers, proctree
from start_ray.procs.proctree import Spawn
from start_ray.record import logs

READY_MARKER = "Ray runtime started"
# How often a starting head's session dir is looked at for the GCS port.
PORT_FILE_INTERVAL = 0.02
CORE_PROCESSES = ("gcs_server", "raylet")
# How long a node's process gets after SIGTERM before SIGKILL, as Ray gives it.
RAY_GRACE = 1.0
RANK_LABEL = "start_ray.rank"
_ADDRESS_IN_OUTPUT = re.compile(r"ray start --address='([^']+)'")
_ERROR_LINE = re.compile(r"^([\w.]*(Error|Exception)|Error|ERROR)\b.*:")
# `ray start --block` naming a process of its node that died, e.g.
# `... ERR scripts.py:87 -- raylet [exit code=-9]`
_DIED_LINE = re.compile(r" -- (\w+) \[exit code=(-?\d+)\]$")


def ray_executable() -> str:
    """The `ray` beside this interpreter (the venv's), else the one on PATH."""
    beside = ray_beside_python()
    if beside:
        return beside
    found = shutil.which("ray")
    if not found:
        raise NodeError("the `ray` command was not found beside "
                        f"{sys.executable} nor on PATH; install ray[rllib]")
    return found


def common_args(temp_dir: str, rank: int, extra: List[str]) -> List[str]:
    """Arguments every node gets: its own temp dir, no fixed port anywhere
    (GCS, workers, agents), and a label naming the rank that started it."""
    args = [
        "--temp-dir", temp_dir,
        "--disable-usage-stats",
        "--log-style", "record", "--log-color", "false",
        "--min-worker-port", "0", "--max-worker-port", "0",
        "--dashboard-agent-listen-port", "0",
        "--labels", compat.label_arg({RANK_LABEL: str(rank)}),
    ]
    return args + list(extra)


def head_args(dashboard: bool = False) -> List[str]:
    """The head: GCS on a port the OS picks; the dashboard off, or on the
    loopback interface only. Ray's client server (installed with ray[client])
    defaults to the fixed port 10001 and cannot be given port 0, so it gets a
    port that is free now and that no port-0 bind can take (free_port)."""
    args = ["--head", "--port", "0"]
    if dashboard:
        args += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", str(free_port())]
    else:
        args += ["--include-dashboard", "false"]
    if importlib.util.find_spec("grpc") is not None:
        args += ["--ray-client-server-port", str(free_port())]
    return args


def option_value(command: List[str], option: str) -> Optional[str]:
    """The value given to `option` in a command line."""
    for flag, value in zip(command, command[1:]):
        if flag == option:
            return value
    return None


def worker_args(address: str) -> List[str]:
    return ["--address", address]


def join_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _died(name: str, code: int) -> str:
    """`raylet was killed by SIGKILL`, `gcs_server exited with status 1`."""
    return f"{name} {helpers.how_it_ended(code)}"


class RayNode:
    """A running `ray start --block` and what it printed."""

    def __init__(self, args: List[str], env: Dict[str, str], temp_dir: str,
                 ray_command: Optional[List[str]] = None,
                 ignored_signals: Sequence[int] = (), ready: Optional[ReadyRay] = None,
                 spawn: Spawn = proctree.popen, gcs_store: bool = False) -> None:
        self.block = not gcs_store  # see the module's docstring
        self.command = [*(ray_command or [ray_executable()]), "start", *args,
                        *(["--block"] if self.block else [])]
        self.temp_dir = temp_dir
        self.spawn = spawn
        self.gcs: Optional[GcsServer] = None  # found once the head serves, with a store
        self._log = logs.get()
        self._tail: Deque[str] = collections.deque(maxlen=25)
        self._died: List[str] = []  # the node's processes that Ray saw die
        self._news = threading.Condition()
        self._started = False
        self._ended = False
        self._address: Optional[str] = None
        self._core: Optional[List[Tuple[psutil.Process, str]]] = None  # GCS, raylet
        self._log.debug("running%s: %s", " (Ray imported ahead)" if ready else "",
                        " ".join(self.command))
        try:
            self.process = ready.run(self.command[1:], env) if ready else spawn(
                self.command, ignored_signals, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as err:
            raise NodeError(f"could not run {self.command[0]}: {err}") from None
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name=f"ray-start-{self.process.pid}")
        self._reader.start()

    @property
    def output_file(self) -> str:
        """Everything this `ray start` printed (collected with Ray's logs)."""
        return os.path.join(self.temp_dir, f"ray-start-{self.process.pid}.out")

    def _read(self) -> None:
        """Log every line `ray start` prints and notice the ones we wait for."""
        assert self.process.stdout is not None
        try:
            copy = open(self.output_file, "w", buffering=1)
        except OSError:
            copy = None
        for line in self.process.stdout:
            if copy is not None:
                copy.write(line)
            line = line.rstrip()
            self._log.debug("ray | %s", line)
            found = _ADDRESS_IN_OUTPUT.search(line)
            died = _DIED_LINE.search(line)
            with self._news:
                if died:
                    self._died.append(_died(died.group(1), int(died.group(2))))
                self._tail.append(line)
                self._started = self._started or READY_MARKER in line
                self._address = found.group(1) if found else self._address
                self._news.notify_all()
        if copy is not None:
            copy.close()
        with self._news:
            self._ended = True
            self._news.notify_all()

    def wait_started(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None,
                     need_address: bool = False) -> None:
        """Return once the node is up (and, for a head, has printed its
        address); raise NodeError if `ray start` ends first or the deadline
        passes. `look()` runs each round: the caller's reading of the news,
        which raises when the start must be given up."""
        self._wait(lambda: self._started and (self._address is not None or not need_address),
                   deadline, interval, look)

    def wait_address(self, deadline: float, interval: float,
                     look: Callable[[], None] = lambda: None,
                     ip: Optional[str] = None) -> str:
        """A head's GCS address as soon as workers can join: when the GCS
        publishes its port (compat.gcs_port; `ip` is the head's
        --node-ip-address), else when `ray start` prints the address."""
        found: Optional[str] = None

        def look_for_it() -> None:
            nonlocal found
            look()
            port = compat.gcs_port(self.temp_dir) if ip else None
            if port is not None:
                found = join_address(ip or "", port)
            elif self._address is not None:
                found = self._address

        self._wait(lambda: found is not None, deadline, min(interval, PORT_FILE_INTERVAL),
                   look_for_it)
        assert found is not None
        return found

    def _wait(self, ready: Callable[[], bool], deadline: float, interval: float,
              look: Callable[[], None]) -> None:
        while True:
            with self._news:
                self._news.wait_for(lambda: ready() or self._ended, timeout=interval)
                if ready():
                    return
                ended = self._ended
            if ended:
                raise NodeError(f"`ray start` exited with status {self.process.wait()}: "
                                f"{self.last_words()}")
            if time.monotonic() >= deadline:
                raise NodeError("`ray start` did not report the node as started "
                                f"before the deadline; last output: {self.last_words()}")
            look()

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def started(self) -> bool:
        """Whether `ray start` said the node runs (then SIGINT stops it
        cleanly; one still starting may not heed SIGINT for a while)."""
        return self._started

    def gone(self, but_gcs: bool = False) -> Optional[str]:
        """Why this node no longer works, or None while it does: its `ray
        start` ended, or, once it started, its GCS server or raylet did
        (with `but_gcs`, a dead GCS alone does not count: it comes back in
        place). A zombie has ended (psutil's is_running() says
        otherwise): the rank is a subreaper, and what a dead `ray start`
        leaves stays its zombie."""
        returncode = self.process.poll()
        if returncode is not None and (self.block or returncode or not self._started):
            return f"`ray start` exited with status {returncode}: {self.last_words()}"
        if self._started and self._core is None:
            self._core = [(proc, proc.name()) for proc in self.core_processes()]
        ended = [name for proc, name in self._core or [] if not proctree.running(proc)]
        if not ended or (but_gcs and ended == [gcs_server.NAME]):
            return None
        return f"its {' and '.join(ended)} ended"

    def core_processes(self) -> List[psutil.Process]:
        """The node's GCS server and raylet: this rank's, running in the
        node's temp dir (under `ray start`, or orphans of a `ray start`
        without --block). `ray start --block` outlives them by up to 30 s
        when it gets SIGTERM (it 'drains'), so whether the node still works
        is told by these."""
        return [proc for proc in self.in_temp_dir() if proctree.name_of(proc) in CORE_PROCESSES]

    def stop_in_order(self, timeout: float) -> None:
        """A node without --block, stopped the way `ray start --block` stops
        its own (Ray's Node.kill_all_processes): the raylet first (it stops
        its workers), then the GCS, then the node's other processes
        (monitors, dashboard); each gets SIGTERM and a second, as Ray gives
        them, then SIGKILL. Sent SIGTERM together and given 10 s, the raylet
        and GCS outlived it; a raylet whose GCS is gone ignores SIGTERM.
        What is left is the owner's (procs/owner.py)."""
        deadline = time.monotonic() + timeout
        found = self.in_temp_dir()
        steps = [[proc for proc in found if proctree.name_of(proc) == name]
                 for name in CORE_PROCESSES[::-1]]  # raylet, gcs_server
        steps.append([proc for proc in found if proctree.name_of(proc) not in CORE_PROCESSES])
        for procs in steps:
            left = proctree.terminate(procs, min(RAY_GRACE,
                                                 max(0.0, deadline - time.monotonic())))
            if left:
                self._log.debug("still running a second after SIGTERM, sent SIGKILL: %s",
                                proctree.describe(left))
                proctree.terminate(left, RAY_GRACE, signal.SIGKILL)

    def in_temp_dir(self) -> List[psutil.Process]:
        """This rank's processes that run in the node's temp dir (by their command line)."""
        found = []
        for child in proctree.descendants():
            try:
                if gcs_server.belongs_to(child.cmdline(), self.temp_dir):
                    found.append(child)
            except psutil.Error:
                pass
        return found

    def keep_gcs(self, port: int) -> bool:
        """Once the head serves with a store: find its gcs_server, to start
        it again if it dies. False if there is none to keep."""
        if self.block:
            return False
        found = [proc for proc in self.core_processes()
                 if proctree.name_of(proc) == gcs_server.NAME]
        self.gcs = GcsServer.of(found[0], port) if found else None
        return self.gcs is not None

    def gcs_ended(self) -> Optional[str]:
        """How the head's GCS ended (`gcs_server was killed by SIGKILL`),
        when it may be started again in place; None while it runs, or when
        this node's GCS cannot come back (no store)."""
        how = self.gcs.ended() if self.gcs is not None else None
        return f"{gcs_server.NAME} {how}" if how else None

    def restart_gcs(self, deadline: float, number: int) -> float:
        """The GCS again, in place (gcs_server.GcsServer.start_again); the
        seconds until it serves. The new GCS takes the old one's place among
        the node's core processes; the others are still watched (a raylet
        that died with the GCS is not forgotten)."""
        assert self.gcs is not None
        took = self.gcs.start_again(self.spawn, deadline, number)
        if self._core is not None:
            self._core = [(proc, name) for proc, name in self._core if name != gcs_server.NAME]
            self._core.append((self.gcs.process, gcs_server.NAME))
        return took

    def store_failed(self) -> bool:
        """Whether a start that failed names the GCS's RocksDB store: in what
        `ray start` printed (Ray checks the store's session file itself) or
        in the last lines of the GCS's own log."""
        with self._news:
            said = list(self._tail)
        for path in glob.glob(os.path.join(self.temp_dir, "session_*", "logs", "gcs_server.*")):
            try:
                with open(path, errors="replace") as handle:
                    said += list(collections.deque(handle, maxlen=20))
            except OSError:
                continue
        return any(gcs_server.STORE_WORD in line.lower() for line in said)

    def kill(self) -> None:
        """A start that failed: SIGKILL `ray start` and every process that
        runs in the node's temp dir, with what they started."""
        proctree.kill_tree(self.process.pid)
        for proc in self.core_processes():
            proctree.kill_tree(proc.pid)

    def last_words(self, lines: int = 4) -> str:
        """What Ray said last, for error messages (all of it is in the log):
        which of the node's processes died, if Ray said so; else the last
        exception line if there is one, else the last lines."""
        with self._news:
            useful = [line.strip() for line in self._tail if line.strip()]
            if self._died:
                return ", ".join(self._died)
        errors = [line for line in useful if _ERROR_LINE.match(line)]
        if errors:
            return errors[-1]
        return " / ".join(useful[-lines:]) or "(no output)"

    def session_dir(self) -> str:
        """Where Ray keeps this node's own logs."""
        return os.path.realpath(os.path.join(self.temp_dir, "session_latest"))
