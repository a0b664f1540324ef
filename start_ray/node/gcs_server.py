"""The head's GCS, started again in place when it dies (Ray 2.57+).

Since Ray 2.57 the GCS can keep the cluster's state (nodes, actors, jobs,
placement groups, the KV store) in an embedded RocksDB store
(`RAY_gcs_storage=rocksdb`, `RAY_gcs_storage_path=DIR`; alpha, Linux only).
A gcs_server started again with its own command line on the same store and
port picks the cluster up: the raylets and the driver reconnect by
themselves (they wait `RAY_gcs_rpc_server_reconnect_timeout_s`, 60 s).

    the head starts with the store (no --block: `ray start --block` kills
        the head's raylet when its GCS dies, leaving nothing to reconnect)
    once it serves: its command line (port 0 replaced by the port it took)
        and its environment are read from /proc        (GcsServer.find)
    it dies: its logs are set aside, the same command runs again, and it is
        back when its port accepts                     (GcsServer.start_again)

The store lives in the head rank's node-local temp dir: one GCS per store,
never on a shared file system. How often it may come back is the watch's
business (lifecycle/head/gcs_keeper.py, --gcs-restarts); whether it may at
all, the plan's (lifecycle/agree/gcs_policy.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Dict, List, Optional

import psutil

from start_ray.errors import NodeError
from start_ray.procs import helpers, proctree
from start_ray.procs.proctree import Spawn

NAME = "gcs_server"
STORE_DIR = "gcs_store"  # in the head rank's temp dir
STORE_WORD = "rocksdb"  # in Ray's words when the store fails (lower case)
_PORT_FLAG = "--gcs_server_port="
_SESSION_FLAG = "--session-dir="
_ADDRESS_FLAG = "--node-ip-address="
_LOG_FLAGS = ("--stdout_filepath=", "--stderr_filepath=")
# How often a GCS started again is asked whether it serves.
SERVE_POLL = 0.05


def store_path(temp_dir: str) -> str:
    return os.path.join(temp_dir, STORE_DIR)


def fixed_port(command: List[str], port: int) -> List[str]:
    """The command with the GCS's port given (a head started with `--port 0`
    runs `--gcs_server_port=0`: started again so, it would take another
    port, and nothing would find it)."""
    return [f"{_PORT_FLAG}{port}" if arg.startswith(_PORT_FLAG) else arg for arg in command]


def flag(command: List[str], name: str) -> Optional[str]:
    """The value of `--name=value` in a command line."""
    for arg in command:
        if arg.startswith(name):
            return arg[len(name):]
    return None


def belongs_to(command: List[str], temp_dir: str) -> bool:
    """Whether a gcs_server or raylet runs in `temp_dir` (its session dir,
    log dir or socket is there): this rank's, not another's on the host."""
    inside = os.path.join(temp_dir, "")
    return any(arg.partition("=")[2].startswith(inside) for arg in command)


class GcsServer:
    """The head's gcs_server as rank 0 found it running: its command line
    (with its port), its environment, and starting it again."""

    def __init__(self, process: psutil.Process, command: List[str], env: Dict[str, str],
                 port: int) -> None:
        self.process = process
        self.command = fixed_port(command, port)
        self.env = env
        self.port = port
        self.host = flag(command, _ADDRESS_FLAG) or "127.0.0.1"
        self._child: Optional["subprocess.Popen[bytes]"] = None  # the last one we started

    @classmethod
    def of(cls, process: psutil.Process, port: int) -> Optional["GcsServer"]:
        """The running gcs_server `process` (its command line and environment
        read now), or None if it is gone already."""
        try:
            return cls(process, process.cmdline(), process.environ(), port)
        except psutil.Error:
            return None

    @property
    def pid(self) -> int:
        return self.process.pid

    def ended(self) -> Optional[str]:
        """How it ended (`was killed by SIGKILL`), or None while it runs."""
        if self._child is not None:
            code = self._child.poll()
            return None if code is None else helpers.how_it_ended(code)
        if proctree.running(self.process):
            return None
        try:  # an orphan of `ray start`, adopted by this rank (a subreaper)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return "ended"
        return helpers.how_it_ended(os.waitstatus_to_exitcode(status)) if pid else "ended"

    def start_again(self, spawn: Spawn, deadline: float, number: int) -> float:
        """Run its command again, on the same store and port, for the
        `number`th time; the seconds until it serves. Its last logs are kept
        beside (`.1`, `.2`...). NodeError if it ends first or does not serve
        by the deadline."""
        began = time.monotonic()
        self._set_logs_aside(number)
        try:
            self._child = spawn(self.command, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as err:
            raise NodeError(f"could not start {NAME} again: {err}") from None
        self.process = psutil.Process(self._child.pid)
        while not self._serves():
            code = self._child.poll()
            if code is not None:
                raise NodeError(f"{NAME} started again {helpers.how_it_ended(code)} at once"
                                f"{self._last_error()}")
            if time.monotonic() >= deadline:
                raise NodeError(f"{NAME} started again does not serve on port {self.port} "
                                f"after {time.monotonic() - began:.0f}s{self._last_error()}")
            time.sleep(SERVE_POLL)
        return time.monotonic() - began

    def _serves(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_files(self) -> List[str]:
        return [path for path in (flag(self.command, name) for name in _LOG_FLAGS) if path]

    def _set_logs_aside(self, number: int) -> None:
        for path in self._log_files():
            if os.path.exists(path):
                try:
                    shutil.copyfile(path, f"{path}.{number}")
                except OSError:
                    pass

    def _last_error(self) -> str:
        """The last line of its stderr file, for the error message."""
        for path in reversed(self._log_files()):
            try:
                with open(path, errors="replace") as handle:
                    lines = [line.strip() for line in handle if line.strip()]
            except OSError:
                continue
            if lines:
                return f": {lines[-1][-300:]}"
        return ""
