"""Ray's logs of a node, copied into the run folder while the job runs.

The end-of-job copy (collect.py) never happens when the scheduler SIGKILLs
the job (KillWait after the walltime, a node crash), and a node's /tmp is
gone afterwards. So every rank with a node copies its Ray logs every
`--sync-logs` seconds too, in a thread of its own: only what grew since the
last look (Ray's logs are append-only), within collect.LIMIT per node; past
the limit the copy is the end-of-job one (errors first, then the newest).
At the end of a job the folder is replaced by the end-of-job copy, or
removed when the job succeeded and its logs were not asked for.

A look stats each log file (~100 on a busy node) and appends new bytes: a
few milliseconds every 30 s (benchmarks/log_sync.py measures it).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Dict, Optional

from start_ray.record import collect


class LogSync:
    """One node's logs, copied from `temp_dir` into `dest` every `period` s."""

    def __init__(self, temp_dir: str, dest: str, period: float, log: logging.Logger) -> None:
        self.temp_dir, self.dest, self.period, self.log = temp_dir, dest, period, log
        self.copied: Dict[str, int] = {}  # name in the copy -> bytes copied so far
        self.looks = 0
        self.cpu_seconds = 0.0  # this thread's CPU time for its looks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-sync")

    def start(self) -> "LogSync":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            began = time.thread_time()
            try:
                self.sync()
            except Exception as err:  # a full disk, a vanished file: try at the next look
                self.log.debug("could not copy Ray's logs into %s: %s", self.dest, err)
            self.cpu_seconds += time.thread_time() - began
            self.looks += 1

    def sync(self) -> None:
        """One look: append what grew; past the limit, a bounded copy."""
        files = collect.sources(self.temp_dir)
        sizes = {}
        for path, name in files:
            try:
                sizes[name] = os.path.getsize(path)
            except OSError:
                continue
        if sum(sizes.values()) > collect.LIMIT:
            self.replace()
            return
        for path, name in files:
            size = sizes.get(name)
            have = self.copied.get(name, 0)
            if size is None or size == have:
                continue
            target = os.path.join(self.dest, name)
            if size < have:  # rewritten from the start
                have = 0
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(path, "rb") as source, open(target, "r+b" if have else "wb") as copy:
                source.seek(have)
                copy.seek(have)
                data = source.read(size - have)
                copy.write(data)
                copy.truncate()
            self.copied[name] = have + len(data)

    def replace(self) -> None:
        """The bounded copy of collect.py in place of what was appended."""
        shutil.rmtree(self.dest, ignore_errors=True)
        collect.collect(self.temp_dir, self.dest)
        self.copied = {}

    def stop(self) -> Optional[str]:
        """Before the end-of-job copy; what the thread cost, for the log."""
        self._stop.set()
        self._thread.join()
        if not self.looks:
            return None
        return (f"Ray's logs were copied into the run folder {self.looks} time(s) while the "
                f"job ran, {self.cpu_seconds * 1000 / self.looks:.1f} ms of CPU a look")


class NodeLogs:
    """Where one node's Ray logs go: synced while the job runs (`--sync-logs`),
    copied whole at its end when wanted, else the synced copy removed."""

    def __init__(self, dest: str, temp_dir: str, period: float,
                 log: logging.Logger) -> None:
        self.dest, self.temp_dir, self.log = dest, temp_dir, log
        self.sync = LogSync(temp_dir, self.dest, period, log).start() if period > 0 else None

    def finish(self, wanted: bool) -> bool:
        """The end of the job: whether the node's logs are in the run folder."""
        if self.sync is not None:
            cost = self.sync.stop()
            if cost:
                self.log.debug("%s", cost)
            shutil.rmtree(self.dest, ignore_errors=True)  # the end-of-job copy replaces it
        return wanted and collect.copy_node_logs(self.dest, self.temp_dir, self.log)
