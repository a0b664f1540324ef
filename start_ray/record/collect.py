"""Ray's logs of one node, copied into the run folder before the node's temp
dir goes: on a cluster a node's /tmp is wiped, or out of the user's reach,
once the job ends, and a failed node's logs are what explains the failure.

What: the logs/ folder of every Ray session in the rank's temp dir (raylet,
GCS server, dashboard and runtime-env agents, monitor, core workers,
workers; a join retried starts a new session) and `ray start`'s own output.
How much: at most LIMIT bytes per node. Files with error lines come first,
then the newest; a file that does not fit whole gives its tail. COLLECTED.txt
in the copy lists what was copied, what was cut, and what was left out.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
import shutil
from typing import List, Tuple

LIMIT = 50 * 2**20  # bytes per node
# A file smaller than this is not worth a tail: it is left out instead.
SMALLEST_TAIL = 64 * 2**10
# Error lines: Ray's C++ ones (glog style: "[time E pid tid] file:line: ..."),
# Python's, and the usual words; only a line's start is looked at (a log may
# hold megabyte-long lines).
_GLOG_ERROR = re.compile(rb"\[[^\]\n]{0,80} [EF] \d+ \d+\]")
_EXCEPTION = re.compile(rb"\w(Error|Exception): ")
_WORDS = (b"ERROR", b"Traceback (most recent", b"Check failed", b"FATAL")
_LINE_START = 2000
_SCAN = 256 * 2**10  # how much of a file's end is searched for error lines


@dataclasses.dataclass
class Collected:
    files: int = 0
    size: int = 0
    cut: List[str] = dataclasses.field(default_factory=list)
    left_out: List[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.files} file(s), {self.size / 2**20:.1f} MB"]
        if self.cut:
            parts.append(f"{len(self.cut)} cut to their end")
        if self.left_out:
            parts.append(f"{len(self.left_out)} left out")
        return ", ".join(parts)


def sources(temp_dir: str) -> List[Tuple[str, str]]:
    """(path, name in the copy) of every log file of the node."""
    found = [(path, os.path.basename(path))
             for path in sorted(glob.glob(os.path.join(temp_dir, "ray-start-*.out")))]
    for session in sorted(glob.glob(os.path.join(temp_dir, "session_2*"))):
        logs = os.path.join(session, "logs")
        for folder, _, names in os.walk(logs):
            for name in sorted(names):
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    found.append((path, os.path.join(os.path.basename(session),
                                                     os.path.relpath(path, logs))))
    return found


def has_errors(path: str) -> bool:
    return bool(error_lines(path, 1, from_end=True))


def error_lines(path: str, count: int = 5, from_end: bool = False) -> List[str]:
    """The first `count` error lines of a log (of its last part, `from_end`)."""
    try:
        with open(path, "rb") as handle:
            if from_end:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - _SCAN))
            text = handle.read(_SCAN)
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        start = line[:_LINE_START]
        if (_GLOG_ERROR.match(start) or any(word in start for word in _WORDS)
                or _EXCEPTION.search(start)):
            found.append(start.decode(errors="replace").strip())
            if len(found) == count:
                break
    return found


def collect(temp_dir: str, dest: str, limit: int = LIMIT) -> Collected:
    """Copy the node's logs from `temp_dir` into `dest`, within `limit` bytes."""
    files = sources(temp_dir)

    def priority(item: Tuple[str, str]) -> Tuple[bool, float]:
        path = item[0]
        try:
            newest = -os.path.getmtime(path)
        except OSError:
            newest = 0.0
        return (not has_errors(path), newest)

    done = Collected()
    notes = []
    for path, name in sorted(files, key=priority):
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        target = os.path.join(dest, name)
        room = limit - done.size
        if size > room and room < SMALLEST_TAIL:
            done.left_out.append(name)
            notes.append(f"left out  {name} ({size} bytes): over the {limit} byte limit")
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if size <= room:
            shutil.copyfile(path, target)
            copied = size
            notes.append(f"copied    {name} ({size} bytes)")
        else:
            copied = _copy_tail(path, target, room)
            done.cut.append(name)
            notes.append(f"cut       {name}: its last {copied} of {size} bytes")
        done.files += 1
        done.size += copied
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "COLLECTED.txt"), "w") as handle:
        handle.write(f"Ray's logs of this node from {temp_dir}: {done.describe()}; error-"
                     "bearing files first, then the newest\n" + "\n".join(notes) + "\n")
    return done


def _copy_tail(path: str, target: str, size: int) -> int:
    with open(path, "rb") as source, open(target, "wb") as copy:
        source.seek(max(0, os.fstat(source.fileno()).st_size - size))
        data = source.read(size)
        copy.write(data)
    return len(data)


def copy_node_logs(dest: str, temp_dir: str, log: logging.Logger) -> bool:
    """Copy Ray's logs of this rank's node into `dest` in the run folder
    (shared storage; the temp dir is node-local). A copy that fails is
    logged and changes nothing else. Whether the logs are safe there."""
    try:
        done = collect(temp_dir, dest)
    except Exception as err:  # a full disk, a vanished file: never the job's status
        log.error("could not copy Ray's logs into %s: %s", dest, err)
        return False
    log.info("Ray's logs of this node copied into %s (%s)", dest, done.describe())
    return True
