"""The MPI conversation between rank 0 and the other ranks.

Open MPI's blocking calls spin at ~100% of a core while they wait, and a rank
may wait for hours next to Ray workers that need that core. So every wait
here is a non-blocking request tested at a short interval with sleeps in
between (~0.05% of a core), and only messages that are already there are
received. The communicator is injectable (dask-mpi style), so the same
lifecycle runs on COMM_WORLD or on a sub-communicator.
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, Tuple

# Message tags.
REPORT = 71   # rank > 0 -> rank 0: joined / failed / lost / done
STOP = 72     # rank 0 -> rank > 0: tear down now

Message = dict


def world() -> Any:
    """COMM_WORLD, importing mpi4py only when a job really starts."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


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


def share(comm: Any, value: Any, interval: float, root: int = 0) -> Any:
    """Broadcast `value` from `root` without spinning while the root is busy:
    a non-blocking barrier tells the others that the root is ready, then an
    ordinary (tree-shaped, fast) bcast delivers the value."""
    if comm.Get_size() == 1:
        return value
    barrier = comm.Ibarrier()
    wait_until(lambda: bool(barrier.Test()), interval)
    return comm.bcast(value, root=root)


class Channel:
    """Point-to-point news that never blocks: sends are buffered requests,
    receives take only messages that have already arrived (matched probe, so
    any size works)."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self._sends: List[Any] = []

    def send(self, dest: int, tag: int, message: Message) -> None:
        self._sends.append(self.comm.isend(message, dest=dest, tag=tag))

    def receive(self, tag: int, source: Optional[int] = None) -> Optional[Tuple[int, Message]]:
        from mpi4py import MPI
        status = MPI.Status()
        probe_source = MPI.ANY_SOURCE if source is None else source
        matched = self.comm.improbe(source=probe_source, tag=tag, status=status)
        if matched is None:
            return None
        return status.Get_source(), matched.recv()

    def flush(self, deadline: float, interval: float) -> bool:
        """Wait (quietly, bounded) until every send has left this rank."""
        from mpi4py import MPI
        pending = self._sends
        done = wait_until(lambda: bool(MPI.Request.Testall(pending)), interval, deadline)
        if done:
            self._sends = []
        return done
