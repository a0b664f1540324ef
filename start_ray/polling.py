"""Waiting without spinning: a look at a short interval, with sleeps between.

Every wait of start_ray is one of these loops (a rank may wait for hours next
to Ray's workers, which need the cores). The first looks come quickly (most
waits are short), then back off to the interval, which bounds both the
latency and the CPU a wait costs.

A round has two parts: `look()`, the one step of the round that reads news
(MPI, signals, helpers), logs, and raises when the job must end; and
`done()`, a pure question about the state that `look` keeps.
"""

from __future__ import annotations

import time
from typing import Callable, Optional


def wait_until(done: Callable[[], bool], interval: float,
               deadline: Optional[float] = None,
               look: Optional[Callable[[], None]] = None) -> bool:
    """Until `done()`, each round after `look()` (if given); False if the
    deadline passed first."""
    pause = min(0.001, interval)
    while True:
        if look is not None:
            look()
        if done():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, interval)
