"""The life of one job, on every rank, as numbered phases (Job.run):

    1. agree     the plan from rank 0, every rank's probe, the same placement
                 and run folder everywhere                      (agreement.py)
    2. own       subreaper, watchdog, temp dir: before the first child  (owned.py)
    3. start     rank 0: the head, then wait until every node is alive
                                                                (head_rank.py)
                 the others: join with retries, then wait for Stop  (worker_rank.py)
    4. run       rank 0 runs the payload (the driver) and watches the nodes
    5. stop      rank 0 sends Stop; every rank stops exactly what it started
                 (the workers first, while the head is up)       (owned.py)
                 and, if the job failed, copies its node's Ray logs (collect.py)
    6. report    the others send Done; rank 0 sums up (summary.py); the exit status

    rank 0                                   rank 1..N-1
    ------                                   -----------
    Plan (run id, token, head IP) -- share -> Plan
    probes (host, CPUs, IP, <-- gather ----- probes
      Python/Ray versions)
    Layout (the placement)  -- share -----> Layout: the same on every rank
    ray start --head --block
    HeadRecord (address | error) -- share -> HeadRecord
    wait until every node alive (GCS) <-- host leaders: ray start --address
                                          --block, retried until the deadline
                                          (Joined | Failed)
    payload (the driver) runs               wait quietly for Stop (Lost)
    Stop ----------------------------------> stop own process tree
    stop own process tree
    collect Done  <------------------------- Done (what was stopped, what is left)

Errors and the exit status each means: errors.py. What travels between the
ranks: messages.py. The command line and the Python API are thin layers
over `run` and `Job`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Optional

from . import handshake, launcher, logs, raynode
from .agreement import Agreement, agree, log_plan
from .cluster_state import ClusterInfo
from .errors import (EXIT_FAILURE, EXIT_USAGE, Interrupted, JobError,  # noqa: F401
                     JobFailed, NodeError, UsageError, exit_status)
from .head_rank import HeadRank
from .messages import Stop
from .options import Options
from .owned import JOB_MARKER, OwnedProcesses  # noqa: F401  (importable here)
from .role import REPORT_SLACK, Role, Teardown
from .signals import SignalInbox
from .worker_rank import WorkerRank

Payload = Callable[[ClusterInfo, SignalInbox, Callable[[], None]], int]


def run(options: Options, payload: Payload, comm: Any = None,
        check: Callable[[], None] = lambda: None) -> int:
    """Run one job on this rank and return this rank's exit status: the
    cluster comes up, rank 0 runs `payload`, everything is stopped.

    `check` runs on rank 0 before anything starts and raises UsageError for
    bad input; the error then reaches every rank, which all exit with 2.
    """
    # Ray's imports while MPI starts, on the ranks likely to start a node.
    ready = raynode.ReadyRay.early(options.ray_command, options.node_per_rank,
                                   [options.walltime_signal])
    try:
        channel = handshake.Channel(comm if comm is not None else handshake.world(),
                                    options.poll_interval)
        with SignalInbox([options.walltime_signal]) as inbox:
            return Job(options, channel, inbox, ready=ready).run(payload, check)
    finally:
        if ready is not None and ready.process.poll() is None and not ready.used:
            ready.discard()


class Job:
    """One rank's part of the job, and everything it started.

    `channel` (handshake.Channel), `own` (a factory like OwnedProcesses) and
    `log_name` are what the protocol tests replace: ranks as threads, fake
    Ray nodes, a logger per thread.
    """

    def __init__(self, options: Options, channel: Any, inbox: SignalInbox,
                 own: Callable[..., Any] = OwnedProcesses,
                 log_name: str = logs.LOGGER_NAME,
                 ready: Optional[raynode.ReadyRay] = None) -> None:
        self.options = options
        self.channel = channel
        self.inbox = inbox
        self.rank: int = channel.rank
        self.make_own = own
        self.log_name = log_name
        self.log = logs.get(log_name)
        self.started = time.monotonic()
        self.agreed: Optional[Agreement] = None
        self.own: Any = None  # what this rank started (owned.OwnedProcesses)
        self.role: Optional[Role] = None  # HeadRank on rank 0, else WorkerRank
        self.status = EXIT_FAILURE  # this rank's exit status, once ended
        self.failure: Optional[str] = None
        self.ready = ready  # a `ray` started before MPI, for this rank's node
        self._ended = False

    def run(self, payload: Payload, check: Callable[[], None] = lambda: None) -> int:
        """Phases 1 to 6 on this rank; its exit status (see errors.py)."""
        try:
            info = self.start(check)  # phases 1-3
        except UsageError as err:
            self.say_usage_error(err)
            return EXIT_USAGE
        except JobFailed as failed:
            return failed.status
        if info is None:  # a worker rank: its whole part is done
            return self.status
        with self.guard():
            # 4. Run: the payload, which calls keep_watch between its polls.
            assert isinstance(self.role, HeadRank)
            status = payload(info, self.inbox, self.role.keep_watch)
            self.end(status, f"the driver exited with status {status}" if status else None)
        return self.status

    def start(self, check: Callable[[], None] = lambda: None) -> Optional[ClusterInfo]:
        """Bring the cluster up. Rank 0 gets the cluster's description back;
        the other ranks do their whole part (join, wait for Stop, stop) and
        get None. Raises UsageError (nothing started) or JobFailed (whatever
        started is stopped again)."""
        with self.guard():
            # 1. Agree on the plan, the placement and the run folder.
            agreed = agree(self.channel, self.options, check)
            self.log = logs.setup(agreed.run_dir, agreed.rank, agreed.size, self.log_name)
            self.own = self.make_own(agreed, self.options, self.log)
            parts = (agreed, self.options, self.channel, self.own, self.inbox, self.log,
                     self.started)
            self.role = HeadRank(*parts) if self.rank == 0 else WorkerRank(*parts)
            self.agreed = agreed
            if self.rank == 0:
                log_plan(agreed, self.options, self.log, self.channel.mpi_library())
            # 2. Own: nothing this rank starts may escape unseen.
            if agreed.my_node is not None:
                self.own.set_up()
                if self.ready is not None:
                    self.own.adopt(self.ready)
            elif self.ready is not None:
                self.ready.discard()
            # 3. Start: rank 0 brings the cluster up; the others join and serve.
            if isinstance(self.role, HeadRank):
                return self.role.bring_up()
            assert isinstance(self.role, WorkerRank)
            self.end(self.role.serve())
            return None
        raise JobFailed(self.failure or "start-up failed", self.status)

    def end(self, status: int, cause: Optional[str] = None) -> None:
        """Stop everything this rank started, confirm it, and tidy up; `cause`
        says why the job failed, if the job does not know yet. Idempotent."""
        if self._ended or self.role is None:
            return
        self._ended = True
        self.status = status
        self.failure = self.failure or cause
        began = time.monotonic()
        report_by = began + self.options.stop_timeout + REPORT_SLACK
        # 5. Stop: rank 0 stops the others first (and hears their Done), then its own.
        self.role.stop_others(status, report_by)
        stopped, left = self.own.stop()
        if left:
            self.log.error("%d process(es) would not stop: %s", len(left), ", ".join(left))
        else:
            self.log.debug("stopped %d process(es); none left", stopped)
        failed = bool(status) or self.role.job_failed()
        copied = (self.options.collect_logs == "always" or
                  (self.options.collect_logs == "on-failure" and failed)
                  ) and self.own.collect_logs()  # before Done: rank 0's summary reads them
        # 6. Report: Done to rank 0, or rank 0's summary; then tidy up.
        self.role.report(Teardown(status, self.failure, stopped, left, began))
        self.channel.flush(report_by)
        self.own.finish(clean=(not failed or copied) and not left)
        if self.rank == 0:
            self.log.info("exit status %d", status)
        # Leave together: rank 0 may still be stopping its head when the others are done.
        leave_by = self.role.leave_by(report_by + self.options.stop_timeout + REPORT_SLACK)
        if leave_by is not None and not self.channel.part(leave_by):
            self.log.debug("not every rank came to the end of the job; exiting anyway")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Failures inside end the job on this rank: expected ones (start-up
        errors, signals) are logged and stop what was started; anything else
        also aborts the MPI job, so that no rank waits for this one forever."""
        try:
            yield
        except UsageError:
            raise
        except (JobError, NodeError, Interrupted) as err:
            self.log.error("%s during start-up: stopping the job"
                           if isinstance(err, Interrupted) else "%s", err)
            self.failure = str(err)
            self.end(exit_status(err))
        except BaseException:
            self.log.exception("start_ray failed on this rank; stopping its Ray processes")
            self.end(EXIT_FAILURE)
            self.abort()
            raise

    @property
    def stop_message(self) -> Optional[Stop]:
        """Rank 0's Stop (with the job's status), as a worker rank received it."""
        return self.role.stop_message if isinstance(self.role, WorkerRank) else None

    def say_usage_error(self, err: UsageError) -> None:
        """Once per job: by MPI rank 0, and, where MPI saw singletons, only
        by the launcher's task 0."""
        if self.rank == 0 and (self.channel.size > 1 or launcher.launcher_rank() == 0):
            print(f"start_ray: error: {err}", file=sys.stderr, flush=True)

    def abort(self) -> None:
        """After a local failure nothing may wait for this rank forever."""
        logs.close(self.log_name)
        self.channel.abort(EXIT_FAILURE)
