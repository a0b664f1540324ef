"""Ports for the servers Ray cannot give port 0 (its client server, the
dashboard): picked where no other process's port-0 bind can take them
(a port picked inside the ephemeral range was once taken by one of the
job's own Ray processes in the seconds before Ray bound it: the head died)."""

from __future__ import annotations

import random
import socket
from typing import Optional, Tuple

EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
LOWEST_PICK = 20000


def ephemeral_range(path: str = EPHEMERAL_RANGE) -> Tuple[int, int]:
    """The ports the kernel hands out for port-0 binds and outgoing
    connections (Linux's default when it cannot be read)."""
    try:
        with open(path) as handle:
            low, high = (int(word) for word in handle.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_port(rng: Optional[random.Random] = None,
              ephemeral: Optional[Tuple[int, int]] = None) -> int:
    """A port for a server that cannot be given port 0 (the Ray client
    server, the dashboard): free now, and below the ephemeral range, so that
    none of the ports the kernel hands out meanwhile (to the GCS, raylet and
    agents started with port 0, and to every outgoing connection) can take it
    before Ray binds it; a random one, so two jobs on a host rarely try the
    same. A port the OS picks when nothing below the range is free."""
    rng = rng or random.SystemRandom()
    low, _ = ephemeral or ephemeral_range()
    if low - 1 > LOWEST_PICK:
        for _ in range(64):
            port = rng.randrange(LOWEST_PICK, low)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]
