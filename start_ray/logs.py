"""Per-rank log files, and the short story on rank 0's stdout.

Every rank writes everything to `LOG_DIR/<run-id>/rank-<r>.log`. Only rank 0
prints progress on stdout, so a job of N ranks does not print N interleaved
copies; other ranks print only errors (to stderr), which a user must see.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Optional

from . import launcher

DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"
LOGGER_NAME = "start_ray"


def new_run_id(now: Optional[float] = None) -> str:
    """`YYYYmmdd-HHMMSS-<job id or pid>`: sortable, and findable from the job id."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{launcher.job_id() or os.getpid()}"


def run_dir(log_dir: str, run_id: str) -> str:
    return os.path.abspath(os.path.join(log_dir, run_id))


def setup(directory: str, rank: int, size: int) -> logging.Logger:
    """The rank's logger: a file with every detail, plus the console."""
    host = socket.gethostname()
    width = len(str(max(size - 1, 0)))
    fmt = logging.Formatter(
        f"%(asctime)s | rank {rank:0{width}d} | {host} | %(levelname)s | %(message)s",
        DATE_FORMAT)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    os.makedirs(directory, exist_ok=True)
    to_file = logging.FileHandler(os.path.join(directory, f"rank-{rank:0{width}d}.log"))
    to_file.setFormatter(fmt)
    logger.addHandler(to_file)
    console = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    console.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    console.setFormatter(logging.Formatter("%(asctime)s | start_ray | %(message)s"
                                           if rank == 0 else
                                           f"%(asctime)s | start_ray rank {rank} | {host} | %(message)s",
                                           DATE_FORMAT))
    logger.addHandler(console)
    return logger


def get() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def close() -> None:
    """Flush and close the handlers (tests may run several jobs in one process)."""
    logger = get()
    for handler in list(logger.handlers):
        handler.flush()
        logger.removeHandler(handler)
        handler.close()
