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
import types
from typing import Any, Optional, Type

from . import auth, handshake
from .lifecycle import ClusterInfo, Job, JobFailed
from .options import make_options
from .signals import SignalInbox


class ClusterError(RuntimeError):
    """The cluster could not be brought up, or rank 0's code failed."""


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

    def __enter__(self) -> Optional[ClusterInfo]:
        self.job = Job(self.options, self.comm if self.comm is not None
                       else handshake.world())
        try:
            with SignalInbox([self.options.walltime_signal]) as inbox:
                self.info = self.job.start(inbox)
        except JobFailed as failed:
            raise ClusterError(str(failed)) from None
        if self.info is None:
            self._skip_body(sys._getframe(1))
            return None
        import ray
        try:
            # Ray may have been imported (and read its auth settings) before.
            assert self.job.plan is not None
            auth.use_in_this_process(self.job.plan.auth_token)
            ray.init(address=self.info.address)
        except BaseException as err:  # __exit__ will not run: stop the cluster here
            self.job.end(1)
            raise ClusterError(f"ray.init() could not attach to the cluster: {err}") from err
        self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self.info

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[types.TracebackType]) -> bool:
        assert self.job is not None
        if self.info is None:  # a worker rank: its part ended in __enter__
            sys.settrace(self._previous_trace)
            stop = self.job.stop_message or {}
            if stop.get("status", 0) != 0:
                raise ClusterError(
                    f"rank 0 ended the cluster with status {stop['status']}") from None
            return exc_type is _SkipBody
        import ray
        signal.signal(signal.SIGTERM, self._previous_sigterm)
        try:
            ray.shutdown()
        finally:
            status = 0 if exc_type is None else _status_of(exc)
            self.job.end(status)
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


def _status_of(exc: Optional[BaseException]) -> int:
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code or 0
    return 1
