"""The MPI conversation between rank 0 and the other ranks (the transport;
what is said is in messages.py).

Open MPI's blocking calls spin at ~100% of a core while they wait, and a rank
may wait for hours next to Ray workers that need that core. So every wait
here is a non-blocking request tested at a short interval with sleeps in
between (~0.05% of a core), and only messages that are already there are
received. The communicator is injectable (dask-mpi style), so the same
lifecycle runs on COMM_WORLD or on a sub-communicator; and the lifecycle
sees only a Channel, so the protocol tests give it one made of threads.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from start_ray.mpi.messages import Message
from start_ray.polling import wait_until


def world() -> Any:
    """COMM_WORLD, importing mpi4py only when a job really starts."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


class Channel:
    """Everything the ranks say to each other, over one communicator.

    Collectives (`share`, `gather`) happen in the same order on every
    rank. Point-to-point news never blocks: sends are buffered requests,
    receives take only messages that have already arrived (matched probe,
    so any size works).
    """

    def __init__(self, comm: Any, interval: float) -> None:
        self.comm = comm
        self.interval = interval
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self._sends: List[Any] = []

    def share(self, value: Any) -> Any:
        """Broadcast `value` from rank 0 without spinning while rank 0 is
        busy: a non-blocking barrier tells the others that rank 0 is ready,
        then an ordinary (tree-shaped, fast) bcast delivers the value."""
        if self.size == 1:
            return value
        barrier = self.comm.Ibarrier()
        wait_until(lambda: bool(barrier.Test()), self.interval)
        return self.comm.bcast(value, root=0)

    def mpi_library(self) -> str:
        """`MPICH 5.0.2` (for the log), when the communicator is mpi4py's."""
        if not type(self.comm).__module__.startswith("mpi4py"):
            return ""
        from mpi4py import MPI

        from start_ray.mpi.launch_env import library_name
        return library_name(MPI.Get_library_version())

    def threads_ok(self) -> bool:
        """Whether a second thread may use MPI (MPI_THREAD_MULTIPLE)."""
        if not type(self.comm).__module__.startswith("mpi4py"):
            return True
        from mpi4py import MPI
        return bool(MPI.Query_thread() == MPI.THREAD_MULTIPLE)

    def gather(self, value: Any) -> Optional[List[Any]]:
        """Every rank's `value`, on rank 0 (None elsewhere; all ranks are
        ready by then: they just received the plan)."""
        return self.comm.gather(value, root=0) if self.size > 1 else [value]

    def send(self, dest: int, message: Message) -> None:
        self._sends.append(self.comm.isend(message, dest=dest, tag=message.tag))

    def receive(self, tag: int, source: Optional[int] = None) -> Optional[Tuple[int, Any]]:
        """(source, message) if one with `tag` has arrived, else None."""
        from mpi4py import MPI
        status = MPI.Status()
        probe_source = MPI.ANY_SOURCE if source is None else source
        matched = self.comm.improbe(source=probe_source, tag=tag, status=status)
        if matched is None:
            return None
        return status.Get_source(), matched.recv()

    def flush(self, deadline: float) -> bool:
        """Wait (quietly, bounded) until every send has left this rank."""
        from mpi4py import MPI
        pending = self._sends
        done = wait_until(lambda: bool(MPI.Request.Testall(pending)), self.interval, deadline)
        if done:
            self._sends = []
        return done

    def part(self, deadline: float) -> bool:
        """Leave together, waiting with sleeps: a rank that is done first
        would otherwise spin in MPI_Finalize (Open MPI busy-polls there),
        and with 128 ranks on a host those spinning ranks starved rank 0's
        teardown (11.5 s instead of 2). False if the deadline came first
        (a rank is gone); the rank then exits anyway."""
        if self.size == 1:
            return True
        barrier = self.comm.Ibarrier()
        return wait_until(lambda: bool(barrier.Test()), self.interval, deadline)

    def abort(self, status: int) -> None:
        """End every rank of the job now (after a failure no rank may wait
        for this one forever)."""
        if self.size > 1:
            self.comm.Abort(status)
