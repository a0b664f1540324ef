"""What each Ray node may use of its host.

Ray sizes each node's object store at 30% of the host's memory, whatever
else runs there: several nodes on one host oversubscribe /dev/shm, and a
store larger than what /dev/shm has free makes Ray fall back to slow disk
(or die with SIGBUS). So start_ray sizes it from what is free, shared among
the job's nodes on the host, unless the user set --object-store-memory.
"""

from __future__ import annotations

import shutil
from typing import List, Optional, Tuple

import psutil

SHM = "/dev/shm"
RAY_DEFAULT_FRACTION = 0.3        # Ray's own default share of memory
SHM_FRACTION = 0.8                # leave the rest of /dev/shm to others
RAY_MINIMUM = 75 * 1024 * 1024    # Ray refuses a smaller store


def object_store_bytes(nodes_on_host: int, available_memory: int,
                       shm_free: Optional[int]) -> Tuple[Optional[int], str]:
    """The store size for one of `nodes_on_host` nodes, and why; None leaves
    it to Ray (when even our share would be under Ray's minimum)."""
    share = int(RAY_DEFAULT_FRACTION * available_memory / nodes_on_host)
    why = f"30% of available memory shared by {nodes_on_host} node(s) on this host"
    if shm_free is not None:
        shm_share = int(SHM_FRACTION * shm_free / nodes_on_host)
        if shm_share < share:
            share = shm_share
            why = f"80% of free {SHM} ({shm_free / 2**30:.1f} GiB) shared by " \
                  f"{nodes_on_host} node(s) on this host"
    if share < RAY_MINIMUM:
        return None, f"left to Ray: our share ({share} bytes) is below Ray's minimum"
    return share, why


def object_store_args(ray_args: List[str], nodes_on_host: int) -> Tuple[List[str], str]:
    """`--object-store-memory` for `ray start`, unless the user chose one."""
    if any(arg.split("=", 1)[0] == "--object-store-memory" for arg in ray_args):
        return [], "set by the user"
    try:
        shm_free: Optional[int] = shutil.disk_usage(SHM).free
    except OSError:
        shm_free = None
    size, why = object_store_bytes(nodes_on_host, psutil.virtual_memory().available,
                                   shm_free)
    if size is None:
        return [], why
    return ["--object-store-memory", str(size)], f"{size / 2**30:.2f} GiB: {why}"
