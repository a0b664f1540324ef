"""Waiting without spinning: a look at a short interval, with sleeps between.

Every wait of start_ray is one of these loops (a rank may wait for hours next
to Ray's workers, which need the cores). The first looks come quickly (most
waits are short), then back off to the interval, which bounds both the
latency and the CPU a wait costs.
"""

from __future__ import annotations

import time
from typing import Callable, Optional


def wait_until(done: Callable[[], bool], interval: float,
               deadline: Optional[float] = None) -> bool:
    """Poll `done` with sleeps between; False if the deadline passed first.

    The first polls come quickly (most waits are short), then back off to
    `interval`, which bounds both latency and CPU use.
    """
    pause = min(0.001, interval)
    while not done():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, interval)
    return True
