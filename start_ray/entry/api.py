"""The lifecycle from inside a Python MPI program, in dask-mpi's shapes.

    import start_ray

    def main(info):            # rank 0 only, with ray.init() connected
        ...                    # info.walltime_warning: set when the walltime signal came
        return 42

    result = start_ray.execute(main, num_cpus=1)   # 42 on rank 0, None elsewhere

or, for code that every rank runs around the cluster:

    with start_ray.cluster(num_cpus=1) as info:
        if info:               # rank 0; the other ranks served the cluster
            ...                # inside `with` and get None here
    # every rank continues here once the cluster is stopped

Launched with `mpirun -np N python my_program.py`. It is the command line's
lifecycle (lifecycle.Job) with the user's code as the payload: while the
body runs, rank 0 watches the cluster (watch.WatchThread): a lost node is
logged within seconds, and with fail_fast=True it interrupts the body with
ClusterError. The walltime signal (SIGUSR1 by default) sets
`info.walltime_warning` and nothing else: the cluster stays up until the
body returns. SIGTERM/SIGHUP end the body with SystemExit(128+N), SIGINT
with KeyboardInterrupt, both through the teardown. If the body raises, rank
0 re-raises it and every other rank raises ClusterError, so no rank carries
on as if all went well.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import signal
import sys
import types
from typing import (
    Any,
    Callable,
    ContextManager,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
)

from start_ray.errors import EXIT_FAILURE, EXIT_NOT_DONE, ClusterError
from start_ray.lifecycle.contracts import ClusterInfo
from start_ray.lifecycle.head.role import HeadRank
from start_ray.lifecycle.head.watch import WatchThread
from start_ray.lifecycle.job import Job, Phase
from start_ray.lifecycle.opening import opened
from start_ray.node import auth
from start_ray.options import make_options
from start_ray.procs.signals import is_stopping

__all__ = ["cluster", "execute", "ClusterError"]

T = TypeVar("T")


def execute(fn: Callable[..., T], *args: Any, comm: Any = None,
            **options: Any) -> Optional[T]:
    """Bring a cluster up over the ranks of `comm` (default: COMM_WORLD),
    run `fn(info, *args)` on rank 0 with ray.init() connected, stop the
    cluster; fn's result on rank 0, None on the others. Keyword arguments
    are the command line's options (num_cpus, fail_fast, log_dir, ...)."""
    with cluster(comm=comm, **options) as info:
        if info is not None:
            return fn(info, *args)
    return None


class cluster:
    """A Ray cluster over the ranks of `comm` (default: COMM_WORLD) for the
    duration of a `with` block; rank 0 gets its ClusterInfo, the others
    serve the cluster inside `__enter__` and get None. Keyword arguments are
    the command line's options (num_cpus, num_gpus, join_timeout, fail_fast,
    log_dir, temp_dir, ...), with the same START_RAY_* variables as fallback."""

    def __init__(self, comm: Any = None, **options: Any) -> None:
        self.options = make_options(**options)
        self.comm = comm
        self.job: Optional[Job] = None
        self.info: Optional[ClusterInfo] = None
        self._opened: Optional[ContextManager[Job]] = None  # the Job and its signals
        self._watch: Optional[WatchThread] = None
        self._no_ray: Optional[NoRayHere] = None  # a worker rank's body

    def _open(self) -> ContextManager[Job]:
        """The Job, made the one way every Job is (lifecycle.opening.opened)."""
        return opened(self.options, self.comm)

    def __enter__(self) -> Optional[ClusterInfo]:
        self._opened = self._open()
        self.job = self._opened.__enter__()
        try:
            self.info = self.job.start()
            if self.job.phase is Phase.SERVE:  # a worker rank: its whole part
                self._serve(self.job)
                self._no_ray = NoRayHere().__enter__()
                return None
            if self.info is None:  # on a worker rank: rank 0's Stop says why
                self._not_done(self.job.stop_status or self.job.status)
                raise ClusterError(self.job.cause or "the cluster did not come up")
            self._attach(self.job, self.info)
        except BaseException:
            self._release()
            raise
        return self.info

    def _serve(self, job: Job) -> None:
        status = job.serve()
        self._release()
        stop = job.stop_status
        self._not_done(stop or status)
        if stop:
            raise ClusterError(f"rank 0 ended the cluster with status {stop}")
        if status:
            raise ClusterError(f"this rank's part of the cluster failed (status {status}; "
                               "see its log in the run folder)")

    @staticmethod
    def _not_done(status: Optional[int]) -> None:
        """The walltime warning came before the cluster was up: the job
        ends "not done" (75), as the command line does, so that a chain
        goes on instead of taking it for a failure."""
        if status == EXIT_NOT_DONE:
            raise SystemExit(EXIT_NOT_DONE)

    def _attach(self, job: Job, info: ClusterInfo) -> None:
        """Rank 0: ray.init() to the cluster, then the body's watch and signals."""
        assert job.agreed is not None and isinstance(job.role, HeadRank)
        try:
            attach(info.address, job.agreed.plan.auth_token)
        except BaseException as err:
            why = f"ray.init() could not attach to the cluster: {err}"
            job.finish(EXIT_FAILURE, why)
            raise ClusterError(why) from err
        self._watch = WatchThread(job.role.watch, self.options.poll_interval,
                                  job.channel.threads_ok(), job.log).start()
        job.inbox.react(self._body_signal)  # after ray.init(), which sets its own

    def _body_signal(self, signum: int) -> None:
        """A signal while the body runs (rank 0, main thread)."""
        assert self.job is not None and self.info is not None
        if signum == signal.SIGINT and self._watch is not None and self._watch.error:
            raise ClusterError(str(self._watch.error))
        if is_stopping(signum):
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        if signum == self.options.walltime_signal:
            self.info.walltime_warning.set()
            self.job.log.info("received %s (the walltime warning): info.walltime_warning "
                              "is set; the cluster stays up until the body returns",
                              signal.Signals(signum).name)

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException],
                 tb: Optional[types.TracebackType]) -> Literal[False]:
        if self._no_ray is not None:
            self._no_ray.__exit__()
            self._no_ray = None
        if self.job is None or self.job.phase is not Phase.RUN:
            return False  # a worker rank: its part ended in __enter__
        watched: Optional[BaseException] = None
        try:
            self.job.inbox.react(None)
            watched = self._watch.stop() if self._watch is not None else None
            detach()
        finally:
            status, cause = _outcome(exc, watched)
            self.job.finish(status, cause)
            self._release()
        if watched is not None and exc is None:  # the body could not be interrupted
            raise ClusterError(str(watched))
        return False

    def _release(self) -> None:
        """The Job's signal handlers go (and its Channel with it)."""
        if self._opened is not None:
            self._opened.__exit__(None, None, None)
            self._opened = None


def _outcome(exc: Optional[BaseException],
             watched: Optional[BaseException]) -> Tuple[int, Optional[str]]:
    """(status, cause) of the job from how the body ended."""
    if watched is not None:
        return EXIT_FAILURE, str(watched)
    if exc is None:
        return 0, None
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code, f"the body exited with status {exc.code}" if exc.code else None
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT, "interrupted (SIGINT)"
    return EXIT_FAILURE, f"the body raised {type(exc).__name__}: {exc}"


NOT_HERE = (
    "this rank has no Ray cluster: `with start_ray.cluster() as info:` runs its body "
    "on every rank, and only rank 0's `info` is a cluster (the other ranks served it "
    "inside `with` and get None, once it has stopped). Guard Ray calls with `if info:`, "
    "or use start_ray.execute(fn), which runs fn on rank 0 alone. (Here ray.init() "
    "would start a stray local Ray, and may save a token in ~/.ray that later clusters "
    "of yours pick up.)")


class NoRayHere(importlib.abc.MetaPathFinder):
    """While a worker rank runs the body of `with cluster()`: any Ray call
    (ray.init(), or a remote call, a get or a put, which call ray.init()
    themselves) raises ClusterError at once, naming the contract. Ray is
    guarded where it is imported already, and as it is imported otherwise."""

    def __init__(self) -> None:
        self._original: Optional[Callable[..., Any]] = None

    def __enter__(self) -> "NoRayHere":
        if "ray" in sys.modules:
            self._guard(sys.modules["ray"])
        else:
            sys.meta_path.insert(0, self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        ray = sys.modules.get("ray")
        if ray is not None and self._original is not None:
            setattr(ray, "init", self._original)
            self._original = None

    def _guard(self, ray: types.ModuleType) -> None:
        self._original = getattr(ray, "init")

        def init(*args: Any, **kwargs: Any) -> Any:
            raise ClusterError(NOT_HERE)
        setattr(ray, "init", init)

    # importlib.abc.MetaPathFinder: `import ray` in the body gets the guard
    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[types.ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != "ray":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("ray")
        if spec is None or spec.loader is None:
            return spec
        run_module, guard = spec.loader.exec_module, self._guard

        def exec_module(module: types.ModuleType) -> None:
            run_module(module)
            guard(module)
        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def attach(address: str, token: Optional[str]) -> None:
    """Connect this process's Ray to the job's cluster. Ray may have been
    imported (and read its auth settings) before: tell it the job's token."""
    import ray
    auth.use_in_this_process(token)
    ray.init(address=address)


def detach() -> None:
    import ray
    ray.shutdown()

