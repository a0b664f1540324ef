"""The driver's own output, kept: shown live on rank 0's console as before,
and copied into LOG_DIR/<run-id>/driver.log (terminal escape codes removed),
so that a failed driver leaves its traceback in the run folder, not only in
the launcher's output. `Tee.last_exception` finds what the summary quotes,
in stderr's last lines.

Each stream is read in chunks as they come (a progress bar without a newline
still shows at once); the file gets whole lines, stdout's and stderr's
interleaved as they arrived.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from typing import IO, Deque, List, Optional

from start_ray.record import logs

ESCAPES = re.compile(logs.ESCAPES.encode())  # as in the rank logs
CHUNK = 64 * 1024
# How many of stderr's last lines are searched for the last traceback.
TAIL_LINES = 2000
# What Ray's raylet prints of its state, which its agents publish to every
# driver when it dies (Console).
STATE_DUMP = b"[state-dump]"
# A reader whose pipe a leftover child of the driver keeps open is let go after this.
CLOSE_WAIT = 2.0


class Tee:
    """Copies a child's stdout and stderr to the console and to one file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Optional[IO[bytes]] = open(path, "ab")
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        # stderr's last lines on their own: a traceback is there, whole,
        # whatever stdout printed between its lines
        self.errors: Deque[str] = collections.deque(maxlen=TAIL_LINES)

    def follow(self, stream: IO[bytes], console_fd: int, errors: bool = False) -> None:
        """Copy `stream` (a pipe from the child) until it ends; `errors`:
        it is stderr, whose tail `last_exception` reads."""
        thread = threading.Thread(target=self._copy, args=(stream, console_fd, errors),
                                  daemon=True, name=f"driver-output-{console_fd}")
        thread.start()
        self._threads.append(thread)

    def _copy(self, stream: IO[bytes], console_fd: int, errors: bool) -> None:
        pending = b""
        fd = stream.fileno()
        console = Console(console_fd, os.path.basename(self.path))
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                break
            console.write(chunk)
            pending += chunk
            lines, _, pending = pending.rpartition(b"\n")
            if lines:
                self._keep(lines + b"\n", errors)
        if pending:
            self._keep(pending + b"\n", errors)
        console.close()
        stream.close()

    def _keep(self, data: bytes, errors: bool) -> None:
        clean = ESCAPES.sub(b"", data)
        if errors:
            self.errors.extend(clean.decode(errors="replace").splitlines())
        with self._lock:
            if self._file is not None:
                self._file.write(clean)
                self._file.flush()

    def last_exception(self) -> Optional[str]:
        """The driver's last exception, from what it wrote to stderr."""
        return last_exception(list(self.errors))

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Once the driver ended: the rest of its output, then the file."""
        for thread in self._threads:
            thread.join(timeout)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Console:
    """The driver's output as the console gets it: as it comes (a progress
    bar without a newline shows at once), but for the state dump of a dead
    raylet that Ray's agents publish to every driver (its log's last lines,
    `[state-dump] ...`, dozens of them under --restarts): those lines go to
    the file only, and the console gets one line that says so."""

    def __init__(self, fd: int, file_name: str) -> None:
        self.fd, self.file_name = fd, file_name
        self.held = b""  # an unfinished line of the dump
        self.dropped = 0

    def write(self, chunk: bytes) -> None:
        data, self.held = self.held + chunk, b""
        out = []
        for line in data.splitlines(keepends=True):
            if STATE_DUMP in line and not line.endswith(b"\n"):
                self.held = line  # the rest of it comes next
            elif STATE_DUMP in line:
                self.dropped += 1
            else:
                if self.dropped and line.endswith(b"\n"):
                    out.append(self._notice())
                out.append(line)
        _write_all(self.fd, b"".join(out))

    def _notice(self) -> bytes:
        dropped, self.dropped = self.dropped, 0
        return (f"start_ray: Ray's state dump of a dead raylet ({dropped} lines) is in "
                f"{self.file_name} only\n").encode()

    def close(self) -> None:
        if self.held:
            self.dropped += 1
        if self.dropped:
            _write_all(self.fd, self._notice())


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except OSError:  # the console is gone (a closed pipe): the file still gets it
            return
        data = data[written:]


def last_exception(lines: List[str]) -> Optional[str]:
    """`RuntimeError: driver bug`: the exception line of the last Python
    traceback in these lines, if there is one."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if not starts:
        return None
    for line in lines[starts[-1] + 1:]:
        if line and not line[0].isspace():
            return line.strip()[:300]
    return None
