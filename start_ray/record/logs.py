"""Per-rank log files, and the short story on rank 0's stdout.

Every rank writes everything to `LOG_DIR/<run-id>/rank-<r>.log`. Only rank 0
prints progress on stdout, so a job of N ranks does not print N interleaved
copies; other ranks print only errors (to stderr), which a user must see.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from start_ray.mpi import launch_env

# ISO 8601 (local time) everywhere; the files add milliseconds (start-up
# steps take fractions of a second).
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
FILE_DATE_FORMAT = DATE_FORMAT
LOGGER_NAME = "start_ray"
# Up to this many nodes, one line per node goes to the console too.
LISTED_ON_CONSOLE = 16


def new_run_id(now: Optional[float] = None) -> str:
    """`YYYYmmdd-HHMMSS-<job id or pid>`: sortable, and findable from the job id."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{launch_env.job_id() or os.getpid()}"


def run_dir(log_dir: str, run_id: str) -> str:
    return os.path.abspath(os.path.join(log_dir, run_id))


def _rank(rank: int, size: int) -> str:
    """The rank, zero-padded so that a job's files and lines sort."""
    return f"{rank:0{len(str(max(size - 1, 0)))}d}"


def ranges(ranks: Sequence[int]) -> str:
    """`0-3,8` for (0, 1, 2, 3, 8)."""
    parts, start = [], None
    for i, rank in enumerate(ranks):
        if start is None:
            start = rank
        if i + 1 == len(ranks) or ranks[i + 1] != rank + 1:
            parts.append(str(start) if start == rank else f"{start}-{rank}")
            start = None
    return ",".join(parts)


def hostlist(hosts: Sequence[str]) -> str:
    """`nid[001-003,010],login1` for those host names (Slurm's form): names
    that differ only in a trailing number, of the same width, are grouped."""
    groups: Dict[Tuple[str, int], List[int]] = {}
    plain: List[str] = []
    for host in sorted(set(hosts)):
        match = re.fullmatch(r"(.*?)(\d+)", host)
        if match:
            groups.setdefault((match.group(1), len(match.group(2))), []).append(
                int(match.group(2)))
        else:
            plain.append(host)
    parts = []
    for (prefix, width), numbers in sorted(groups.items()):
        if len(numbers) == 1:
            parts.append(f"{prefix}{numbers[0]:0{width}d}")
            continue
        spans = ranges(sorted(numbers)).split(",")
        text = ",".join("-".join(f"{int(n):0{width}d}" for n in span.split("-"))
                        for span in spans)
        parts.append(f"{prefix}[{text}]")
    return ",".join(parts + plain)


def label(rank: int, size: int) -> str:
    """`rank 03 | host`: what every line of a rank's file names."""
    return f"rank {_rank(rank, size)} | {socket.gethostname()}"


def file_path(directory: str, rank: int, size: int) -> str:
    return os.path.join(directory, f"rank-{_rank(rank, size)}.log")


def ray_logs_dir(run_dir: str, rank: int, size: int, host: str, attempt: int = 0) -> str:
    """Where a rank's copy of its node's Ray logs goes: `ray/rank-03-host`
    (after the k-th restart, --restarts: `ray/restart-k/rank-03-host`)."""
    return os.path.join(run_dir, "ray", *([f"restart-{attempt}"] if attempt else []),
                        f"rank-{_rank(rank, size)}-{host}")


# Terminal escape sequences (colors, cursor moves, titles): never in a file.
ESCAPES = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]"


class _PlainFormatter(logging.Formatter):
    """The file's format, with terminal escape sequences removed (Ray's and
    the driver's output may carry colors)."""

    _escapes = re.compile(ESCAPES)

    def format(self, record: logging.LogRecord) -> str:
        return self._escapes.sub("", super().format(record))


def attach_file(logger: logging.Logger, path: str, name: str) -> logging.Logger:
    """`logger` writing every detail to the rank's file `path`, in the
    rank's format (the watchdog writes there too, after the rank is gone)."""
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    to_file = logging.FileHandler(path)
    to_file.setFormatter(_PlainFormatter(
        f"%(asctime)s.%(msecs)03d | {name} | %(levelname)s | %(message)s", FILE_DATE_FORMAT))
    logger.addHandler(to_file)
    return logger


def setup(directory: str, rank: int, size: int, name: str = LOGGER_NAME) -> logging.Logger:
    """The rank's logger: a file with every detail, plus the console. (A
    rank is a process; only the protocol tests, whose ranks are threads,
    give each rank a logger `name` of its own.)"""
    host = socket.gethostname()
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    os.makedirs(directory, exist_ok=True)
    attach_file(logger, file_path(directory, rank, size), label(rank, size))
    console = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    console.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    console.setFormatter(logging.Formatter("%(asctime)s | start_ray | %(message)s"
                                           if rank == 0 else
                                           f"%(asctime)s | start_ray rank {rank} | {host} | %(message)s",
                                           DATE_FORMAT))
    logger.addHandler(console)
    return logger


def get(name: str = LOGGER_NAME) -> logging.Logger:
    return logging.getLogger(name)


def close(name: str = LOGGER_NAME) -> None:
    """Flush and close the handlers (tests may run several jobs in one process)."""
    logger = get(name)
    for handler in list(logger.handlers):
        handler.flush()
        logger.removeHandler(handler)
        handler.close()
