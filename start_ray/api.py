"""The lifecycle from inside a Python MPI program (dask-mpi style):

    import start_ray
    with start_ray.cluster(num_cpus=1) as info:
        # only rank 0 runs this, with ray.init() already connected
        ...
    # every rank continues here once the cluster is stopped

Launched with `mpirun -np N python my_program.py`. The worker ranks serve
the cluster inside the `with` statement and skip its body; if the body
raises, rank 0 re-raises it and every other rank raises ClusterError, so
no rank carries on as if all went well.
"""

from __future__ import annotations

import signal
import sys
import threading
import types
from typing import Any, Optional, Type

from . import auth, handshake
from .cluster_state import ClusterInfo
from .errors import ClusterError, JobFailed
from .lifecycle import Job
from .options import make_options
from .signals import SignalInbox

__all__ = ["cluster", "ClusterError"]


class _SkipBody(Exception):
    """Raised into a worker rank's `with` body before its first line runs."""


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # SIGTERM (scancel) during the body: unwind through __exit__, so the
    # cluster is stopped, instead of dying with Ray still running.
    raise SystemExit(128 + signum)


class cluster:
    """A Ray cluster over the ranks of `comm` (default: COMM_WORLD) for the
    duration of a `with` block. Keyword arguments are the command line's
    options (num_cpus, num_gpus, join_timeout, log_dir, temp_dir, ...), with
    the same START_RAY_* environment variables as fallback."""

    def __init__(self, comm: Any = None, **options: Any) -> None:
        self.options = make_options(**options)
        self.comm = comm
        self.job: Optional[Job] = None
        self.info: Optional[ClusterInfo] = None
        self._previous_trace: Any = None
        self._previous_sigterm: Any = None
        self._sigterm_set = False  # our SIGTERM handler is installed

    def _job(self, inbox: SignalInbox) -> Job:
        comm = self.comm if self.comm is not None else handshake.world()
        return Job(self.options, handshake.Channel(comm, self.options.poll_interval), inbox)

    def __enter__(self) -> Optional[ClusterInfo]:
        try:
            with SignalInbox([self.options.walltime_signal]) as inbox:
                self.job = self._job(inbox)
                self.info = self.job.start()
        except JobFailed as failed:
            raise ClusterError(str(failed)) from None
        if self.info is None:
            self._skip_body(sys._getframe(1))
            return None
        try:
            assert self.job.agreed is not None
            attach(self.info.address, self.job.agreed.plan.auth_token)
        except BaseException as err:  # __exit__ will not run: stop the cluster here
            why = f"ray.init() could not attach to the cluster: {err}"
            self.job.end(1, why)
            raise ClusterError(why) from err
        if threading.current_thread() is threading.main_thread():  # else no signal comes
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
            self._sigterm_set = True
        return self.info

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[types.TracebackType]) -> bool:
        assert self.job is not None
        if self.info is None:  # a worker rank: its part ended in __enter__
            sys.settrace(self._previous_trace)
            stop = self.job.stop_message
            if stop is not None and stop.status != 0:
                raise ClusterError(
                    f"rank 0 ended the cluster with status {stop.status}") from None
            return exc_type is _SkipBody
        if self._sigterm_set:  # None: a handler set outside Python; the default then
            signal.signal(signal.SIGTERM, self._previous_sigterm
                          if self._previous_sigterm is not None else signal.SIG_DFL)
        try:
            detach()
        finally:
            status = 0 if exc_type is None else _status_of(exc)
            self.job.end(status, None if exc is None else
                         f"the `with start_ray.cluster()` body raised {type(exc).__name__}: {exc}")
        return False

    def _skip_body(self, frame: types.FrameType) -> None:
        """Make the caller's `with` body raise _SkipBody before its first line
        (the trace function is the only way Python offers); __exit__
        swallows it and restores the previous trace function."""
        self._previous_trace = sys.gettrace()

        def skip(frame: types.FrameType, event: str, arg: Any) -> None:
            raise _SkipBody()

        sys.settrace(lambda *args: None)
        frame.f_trace = skip  # type: ignore[assignment]


def attach(address: str, token: Optional[str]) -> None:
    """Connect this process's Ray to the job's cluster. Ray may have been
    imported (and read its auth settings) before: tell it the job's token."""
    import ray
    auth.use_in_this_process(token)
    ray.init(address=address)


def detach() -> None:
    import ray
    ray.shutdown()


def _status_of(exc: Optional[BaseException]) -> int:
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code or 0
    return 1
