"""The MPI conversation between the ranks (the transport; what is said is in
messages.py), on two levels: the ranks of one host (MPI's shared-memory
communicator, whose lowest rank is the host's leader) and the leaders.

    rank 0 <-> every rank    the plan and the head's address (broadcasts),
                             the node ranks' news (Joined, Failed, Lost) and
                             join slots (Go)
    rank 0 <-> the leaders   the hosts' probes (gathered), the placement
                             (scattered), Stop (a non-blocking broadcast),
                             the hosts' teardown reports (HostDone)
    a leader <-> its host    probes, the host's part of the placement, Stop
                             (relayed by a non-blocking broadcast), Done

so rank 0 handles O(hosts) messages, not O(ranks): at 10,000 hosts of 128
ranks, 10,000, not 1.28 million.

Open MPI's blocking calls spin at ~100% of a core while they wait, and a rank
may wait for hours next to Ray workers that need that core. So every long
wait here is a non-blocking request tested at a short interval with sleeps
in between (~0.05% of a core), and only messages that are already there are
received. The communicator is injectable (dask-mpi style), so the same
lifecycle runs on COMM_WORLD or on a sub-communicator; and the lifecycle
sees only a Channel, so the protocol tests give it one made of threads.
"""

from __future__ import annotations

import array
from typing import Any, List, Optional, Sequence, Tuple

from start_ray.mpi.messages import STOP, Message, Stop
from start_ray.polling import wait_until


def world() -> Any:
    """COMM_WORLD, importing mpi4py only when a job really starts."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


class Channel:
    """Everything the ranks say to each other, over one communicator.

    Collectives happen in the same order on every rank (of the world, of a
    host, of the leaders). Point-to-point news never blocks: sends are
    buffered requests, receives take only messages that have already
    arrived (matched probe, so any size works).
    """

    def __init__(self, comm: Any, interval: float) -> None:
        self.comm = comm
        self.interval = interval
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self._sends: List[Any] = []
        self._stop_in: Optional[Any] = None  # the posted receive of Stop's broadcast
        self._stop_buffer = array.array("i", [0, 0, 0])  # status, together, restart
        self._stop: Optional[Stop] = None
        self._direct_stop = False  # rank 0 sent Stop point to point too: take that copy
        self.host: Optional[Any] = None  # this host's communicator
        self.leaders: Optional[Any] = None  # the leaders' (None on the other ranks)
        if self.size == 1:
            self.host_rank, self.leader = 0, 0
            return
        from mpi4py import MPI
        # Collective over `comm`, on every rank at once (each builds its Channel).
        self.host = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.host_rank = self.host.Get_rank()
        leaders = comm.Split(0 if self.host_rank == 0 else MPI.UNDEFINED, self.rank)
        self.leaders = None if leaders == MPI.COMM_NULL else leaders
        self.leader = self.host.bcast(self.rank, root=0)  # the leader's rank in `comm`

    @property
    def is_leader(self) -> bool:
        return self.host_rank == 0

    def _settled(self, comm: Any) -> None:
        """Until the root of `comm` comes to the next collective, without
        spinning (a non-blocking barrier, tested with sleeps)."""
        barrier = comm.Ibarrier()
        wait_until(lambda: bool(barrier.Test()), self.interval)

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

    def gather_host(self, value: Any) -> Optional[List[Any]]:
        """The host's values, in rank order, on its leader (None elsewhere)."""
        if self.host is None:
            return [value]
        return self.host.gather(value, root=0)

    def gather_leaders(self, value: Any) -> Optional[List[Any]]:
        """Leaders only: every leader's value, on rank 0 (None elsewhere)."""
        if self.leaders is None:
            return [value]
        return self.leaders.gather(value, root=0)

    def scatter_leaders(self, values: Optional[List[Any]]) -> Any:
        """Leaders only: rank 0's `values[i]` to the i-th leader (by rank)."""
        if self.leaders is None:
            return values[0] if values else None
        self._settled(self.leaders)
        return self.leaders.scatter(values, root=0)

    def share_host(self, value: Any) -> Any:
        """The leader's `value`, to every rank of its host."""
        if self.host is None:
            return value
        self._settled(self.host)
        return self.host.bcast(value, root=0)

    # ---------------------------------------------------------------- Stop
    def expect_stop(self) -> None:
        """Every rank but 0, once, before anything starts: the receive of
        Stop's broadcast (from rank 0 to the leaders; from a leader to its
        host), posted now so that Stop finds it at any moment."""
        self._stop, self._direct_stop = None, False  # a restart expects it anew
        if self.size == 1 or self.rank == 0:
            return
        from mpi4py import MPI
        comm = self.leaders if self.is_leader else self.host
        assert comm is not None
        self._stop_in = comm.Ibcast([self._stop_buffer, MPI.INT], root=0)

    def stop_all(self, stop: Stop, direct_to: Sequence[int] = ()) -> None:
        """Rank 0: Stop to every other rank, by a non-blocking broadcast to
        the leaders, each of which relays it to its host (so does rank 0 to
        its own). `direct_to`: leaders that also get it point to point (a
        rank is lost, and with it maybe a link of the broadcast's tree)."""
        if self.size == 1:
            return
        from mpi4py import MPI
        self._fill(stop)
        assert self.leaders is not None
        if self.leaders.Get_size() > 1:
            self._sends.append(self.leaders.Ibcast([self._stop_buffer, MPI.INT], root=0))
        self._relay()
        for leader in direct_to:
            self.send(leader, stop)

    def _relay(self) -> None:
        if self.host is not None and self.host.Get_size() > 1:
            from mpi4py import MPI
            self._sends.append(self.host.Ibcast([self._stop_buffer, MPI.INT], root=0))

    def _fill(self, stop: Stop) -> None:
        """Stop into the broadcast's buffer, in place (a posted receive holds it)."""
        for i, value in enumerate((stop.status, int(stop.together), stop.restart)):
            self._stop_buffer[i] = value

    def stop_news(self) -> Optional[Stop]:
        """Every rank but 0: rank 0's Stop, once it has come (a leader relays
        it to its host the moment it does)."""
        if self._stop is not None or self.size == 1 or self.rank == 0:
            return self._stop
        came = self._stop_in is not None and self._stop_in.Test()
        if not came and self.is_leader:
            direct = self.receive(STOP, source=0)
            if direct is not None:
                stop: Stop = direct[1]
                self._fill(stop)
                came = True
        elif came and self.is_leader and not self._stop_buffer[1]:
            self._direct_stop = True  # not together: a direct copy follows (stop_all)
        if not came:
            return None
        self._stop = Stop(self._stop_buffer[0], together=bool(self._stop_buffer[1]),
                          restart=self._stop_buffer[2])
        if self.is_leader:
            self._relay()
        return self._stop

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
        """Wait (quietly, bounded) until every send has left this rank, and
        this rank's part of Stop's broadcast is complete (it always comes:
        rank 0 always sends it; a rank that took Stop point to point must
        still finish its receive, or MPICH's MPI_Finalize waits for it)."""
        from mpi4py import MPI
        pending = self._sends + ([self._stop_in] if self._stop_in is not None else [])

        def take_direct_copy() -> None:
            # every message sent must be received: MPICH's MPI_Finalize
            # waited forever on rank 0 for a copy of Stop nobody took
            if self._direct_stop and self.receive(STOP, source=0) is not None:
                self._direct_stop = False

        done = wait_until(lambda: bool(MPI.Request.Testall(pending)) and not self._direct_stop,
                          self.interval, deadline, look=take_direct_copy)
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
