"""The driver as the RUN phase's payload: started once the cluster is up,
watched while it runs (Running.tick), its signals forwarded, its status the
job's (the process itself: procs/driver.py)."""

from __future__ import annotations

import os
import socket
import time
from typing import Callable, List

from start_ray.lifecycle.contracts import Running
from start_ray.procs.driver import OUTPUT, Driver, fill_in, tensorboard_folder
from start_ray.record import logs


def payload(cmd: List[str], interval: float) -> Callable[[Running], int]:
    """The lifecycle's payload for the command line: run `cmd` as the driver
    (with the grace the job settled on: --grace, within Slurm's KillWait)."""
    def run_driver(running: Running) -> int:
        log = logs.get()
        info = running.info
        filled = fill_in(cmd, info.address)
        log.info("running the driver: %s", " ".join(filled))
        began = time.monotonic()
        output = os.path.join(info.run_dir, OUTPUT)
        driver = Driver(filled, info.env, running.spawn, output)
        try:
            status = driver.wait(interval, running.tick, running.inbox.pop, info.grace)
        finally:
            if driver.tee is not None:  # the job ends now (a lost node, a signal)
                driver.tee.close(0.0)
        log.info("the driver exited with status %d after %.1fs; its output: %s", status,
                 time.monotonic() - began, output)
        board = tensorboard_folder(info.run_dir)
        if board:
            log.info("TensorBoard: tensorboard --logdir %s --host 127.0.0.1 (from your own "
                     "machine: ssh -N -L 6006:127.0.0.1:6006 %s, then http://localhost:6006)",
                     board, socket.gethostname())
        error = driver.tee.last_exception() if status and driver.tee else None
        if error:
            running.explain(f"the driver exited with status {status}; its last exception: "
                            f"{error} (in {OUTPUT})")
        return status
    return run_driver
