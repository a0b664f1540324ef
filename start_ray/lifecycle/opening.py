"""The one way a Job is made (`opened`), for the command line (`run`) and the
Python API (entry/api.py) alike: the signals caught first, the channel over
MPI, and Ray's imports done while MPI starts."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

from start_ray.host import resources
from start_ray.lifecycle.contracts import Payload
from start_ray.lifecycle.job import Job
from start_ray.lifecycle.phases import Phase
from start_ray.mpi.channel import Channel as MpiChannel
from start_ray.mpi.channel import world
from start_ray.node.ready_ray import ReadyRay
from start_ray.options import Options
from start_ray.procs.signals import SignalInbox


@contextlib.contextmanager
def opened(options: Options, comm: Any = None, inbox: Optional[SignalInbox] = None,
           payload: Optional[Payload] = None, check: Callable[[], None] = lambda: None,
           ray_ahead: bool = False) -> Iterator[Job]:
    """The one way a Job is made (the command line's `run`, the API): the
    signals caught, the channel over `comm` (COMM_WORLD), and with
    `ray_ahead` Ray's imports done while MPI starts (after the open-files
    limit, which that child inherits). On the way out, an unused `ray`
    imported ahead goes, and the signal handlers are restored."""
    ready: Optional[ReadyRay] = None
    open_files: Optional[str] = None
    if ray_ahead:
        open_files = resources.raise_open_files_limit()
        ready = ReadyRay.early(options.ray_command, options.node_per_rank,
                               [options.walltime_signal])
    try:
        with contextlib.nullcontext(inbox) if inbox else SignalInbox() as caught:
            caught.also(options.walltime_signal)
            channel = MpiChannel(comm if comm is not None else world(), options.poll_interval)
            yield Job(options, channel, caught, payload=payload, check=check, ready=ready,
                      open_files=open_files)
    finally:
        if ready is not None and ready.process.poll() is None and not ready.used:
            ready.discard()


def run(options: Options, payload: Payload, comm: object = None,
        check: Callable[[], None] = lambda: None,
        inbox: Optional[SignalInbox] = None) -> int:
    """The command line's job on this rank: every phase; its exit status.
    `check` (rank 0's, before anything starts) raises UsageError for bad
    input, which every rank then exits 2 on; `inbox`: the signals so far."""
    with opened(options, comm, inbox, payload, check, ray_ahead=True) as job:
        return job.advance(Phase.DONE)
