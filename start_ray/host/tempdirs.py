"""Short, private, node-local temp dirs for Ray, one per rank.

Ray puts unix sockets under `<temp>/session_<time>_<pid>/sockets/`, and a
socket path longer than 107 bytes fails late and obscurely. Per-job TMPDIRs
on clusters are often long, so the length is checked up front.
"""

from __future__ import annotations

import os
import shutil
from typing import Mapping, Optional, Tuple

from start_ray.errors import UsageError

UNIX_PATH_MAX = 107
# The longest tail Ray appends: a session name (timestamp, 7-digit PID) and
# the plasma store socket.
RAY_SOCKET_TAIL = len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")
FALLBACK_ROOT = "/tmp"
# A job tag's length (secrets.token_hex(4)), for lengths computed before the
# job has its tag.
SAMPLE_TAG = "0" * 8


def rank_dir(root: str, job_tag: str, rank: int) -> str:
    """`<root>/sr-<job>/<rank>`: per job so concurrent jobs never share, per
    rank so several Ray nodes on one host never share sockets."""
    return os.path.join(job_dir(root, job_tag), str(rank))


def job_dir(root: str, job_tag: str) -> str:
    return os.path.join(os.path.abspath(root), f"sr-{job_tag}")


def socket_path_length(root: str, job_tag: str, rank: int) -> int:
    return len(rank_dir(root, job_tag, rank).encode()) + RAY_SOCKET_TAIL


def check_explicit_root(root: str, job_tag: str, last_rank: int) -> None:
    """Fail up front when a user-given temp dir would make Ray's sockets too long."""
    length = socket_path_length(root, job_tag, last_rank)
    if length > UNIX_PATH_MAX:
        raise UsageError(
            f"--temp-dir {root!r} is too long: Ray's socket paths under it would be "
            f"{length} bytes, over the {UNIX_PATH_MAX}-byte unix socket limit. "
            f"Use a shorter node-local directory, e.g. --temp-dir /tmp")


def choose_root(explicit: Optional[str], job_tag: str, rank: int,
                environ: Optional[Mapping[str, str]] = None) -> Tuple[str, str]:
    """The temp root for this rank and why it was chosen."""
    if explicit:
        return explicit, "from --temp-dir"
    env = os.environ if environ is None else environ
    tmpdir = env.get("TMPDIR")
    if tmpdir and os.path.isdir(tmpdir):
        if socket_path_length(tmpdir, job_tag, rank) <= UNIX_PATH_MAX:
            return tmpdir, "from $TMPDIR"
        return FALLBACK_ROOT, (f"$TMPDIR ({tmpdir}) is too long for Ray's unix "
                               f"sockets, using {FALLBACK_ROOT}")
    return FALLBACK_ROOT, "default"


def create(path: str) -> None:
    """Make the rank's dir private to the job's user (mode 0700)."""
    os.makedirs(path, mode=0o700, exist_ok=False)
    os.chmod(os.path.dirname(path), 0o700)


def remove(path: str) -> None:
    """Remove the rank's dir, and the job's dir once the last rank on the host is done."""
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # another rank on this host still uses it
