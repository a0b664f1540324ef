"""`--serve`: the cluster stays up for whoever attaches (attach.py), after
the driver if there is one, until one of these ends it:

    `python -m start_ray stop RUN`       exit 0 (the driver's status, if it failed)
    --serve-timeout SECONDS passed       exit 0
    the walltime signal (USR1)           exit 0
    SIGTERM, SIGINT, SIGHUP (scancel)    exit 128 + N

each with the same teardown as a driver that ended. While it serves, rank 0
watches the cluster as it does around a driver (a lost node is logged; with
--fail-fast the job ends).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, List, Optional

from start_ray.entry import driver_payload
from start_ray.lifecycle.contracts import Running
from start_ray.procs.signals import is_stopping
from start_ray.record import card, logs


def payload(cmd: List[str], interval: float, timeout: Optional[float]) -> Callable[[Running], int]:
    """The RUN phase of a serving job: the driver `cmd` first (if any), then
    serve. `cmd` is read when the payload runs, not now: the command line
    fills it in once rank 0 has checked it (cli.main)."""
    def serve(running: Running) -> int:
        status = 0
        if cmd:
            status = driver_payload.payload(cmd, interval)(running)
            logs.get().info("the driver exited with status %d; the cluster stays up "
                            "(--serve)", status)
        card.update(running.info.run_dir, state="serving")
        return status or until_stopped(running, interval, timeout)
    return serve


def until_stopped(running: Running, interval: float, timeout: Optional[float]) -> int:
    """Watch the cluster until a stop request, the timeout or a signal."""
    log = logs.get()
    run_dir = running.info.run_dir
    stop_file = os.path.join(run_dir, card.STOP)
    until = time.monotonic() + timeout if timeout else None
    log.info("serving: the cluster stays up until `python -m start_ray stop %s`, SIGTERM or "
             "the walltime signal%s", run_dir,
             f", or for {timeout:g}s (--serve-timeout)" if timeout else "")
    while True:
        running.tick()
        signum = running.inbox.pop()
        if signum is not None:
            name = signal.Signals(signum).name
            if is_stopping(signum):
                log.info("received %s: stopping the cluster", name)
                return 128 + signum
            log.info("received %s (the walltime warning): stopping the cluster", name)
            return 0
        if os.path.exists(stop_file):
            with open(stop_file) as handle:
                log.info("stop requested (%s): stopping the cluster", handle.read().strip())
            return 0
        if until is not None and time.monotonic() >= until:
            log.info("--serve-timeout %gs passed: stopping the cluster", timeout)
            return 0
        time.sleep(interval)
