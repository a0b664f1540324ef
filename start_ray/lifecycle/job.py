"""The life of one job on one rank: the phases, their transitions, and the
one loop that drives them (Job.advance).

    AGREE ---> OWN ---> START ---> RUN (rank 0) ----> STOP ---> REPORT ---> DONE
      |          |        |   `--> SERVE (others) --^
      |          `--------+--(a failure, a stopping signal)--^
      `--(bad input: exit 2, nothing started)------------------------------> DONE

    AGREE   the plan from rank 0, every rank's probe, the same placement and
            run folder everywhere                                (agreement.py)
    OWN     subreaper, watchdog, temp dir: before the first child   (owned.py)
    START   rank 0: the head, then every node alive             (bring_up.py)
            the others: join with retries                    (worker_rank.py)
    RUN     rank 0: the payload (the driver, or an API body), watched (watch.py)
    SERVE   the others: wait quietly for Stop                (worker_rank.py)
    STOP    every rank stops exactly what it started, the workers first while
            the head is up (head_teardown.py); a failed job's Ray logs are copied
    REPORT  Done to rank 0, rank 0's summary (summary.py); the ranks leave
            together; the exit status

    rank 0                                   rank 1..N-1
    ------                                   -----------
    Plan (run id, token, head IP) -- share -> Plan
    probes <-- gather --------------------- probes
    Layout (the placement)  -- share -----> Layout
    ray start --head --block
    HeadRecord (address | error) -- share -> HeadRecord
    wait until every node alive <---------- ray start --address --block
                                            (Joined | Failed)
    payload runs, watched                   wait for Stop (Lost)
    Stop ----------------------------------> stop own process tree
    stop own process tree
    collect Done  <------------------------- Done

The command line runs every phase (`run`); the Python API (api.py) runs
them in two goes around the user's body (`start`, then `finish`). Errors and
the exit status each means: errors.py; what travels between ranks: messages.py.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import time
from typing import Callable, Dict, FrozenSet, List, Optional, Union

from start_ray.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Interrupted,
    JobError,
    NodeError,
    UsageError,
)
from start_ray.errors import exit_status as status_of
from start_ray.host import resources
from start_ray.lifecycle.agree import preflight
from start_ray.lifecycle.agree.agreement import Agreement, agree
from start_ray.lifecycle.contracts import (
    Channel,
    Launcher,
    Owner,
    Payload,
    Running,
    Teardown,
)
from start_ray.lifecycle.head.role import HeadRank
from start_ray.lifecycle.worker.role import WorkerRank
from start_ray.mpi import launch_env
from start_ray.mpi.channel import Channel as MpiChannel
from start_ray.mpi.channel import world
from start_ray.node import raynode
from start_ray.node.gcs_table import ClusterInfo
from start_ray.node.starter import NodeLauncher
from start_ray.options import Options
from start_ray.procs.owner import ProcessOwner
from start_ray.procs.signals import SignalInbox
from start_ray.record import logs
from start_ray.record.log_sync import NodeLogs

# Teardown reports may take this long past the stop timeout (a busy rank).
REPORT_SLACK = 15.0


class Phase(enum.Enum):
    AGREE = "agree"
    OWN = "own"
    START = "start"
    RUN = "run"
    SERVE = "serve"
    STOP = "stop"
    REPORT = "report"
    DONE = "done"


# Every allowed transition (the diagram above); the loop refuses any other.
NEXT: Dict[Phase, FrozenSet[Phase]] = {
    Phase.AGREE: frozenset({Phase.OWN, Phase.DONE}),
    Phase.OWN: frozenset({Phase.START, Phase.STOP}),
    Phase.START: frozenset({Phase.RUN, Phase.SERVE, Phase.STOP}),
    Phase.RUN: frozenset({Phase.STOP}),
    Phase.SERVE: frozenset({Phase.STOP}),
    Phase.STOP: frozenset({Phase.REPORT}),
    Phase.REPORT: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}


def run(options: Options, payload: Payload, comm: object = None,
        check: Callable[[], None] = lambda: None,
        inbox: Optional[SignalInbox] = None) -> int:
    """The command line's job on this rank: every phase; its exit status.
    `check` runs on rank 0 before anything starts and raises UsageError for
    bad input; the error then reaches every rank, which all exit with 2.
    `inbox`: the signals caught since the rank began (python -m start_ray)."""
    # Before the first child, which inherits it (Job would do it too).
    open_files = resources.raise_open_files_limit()
    # Ray's imports while MPI starts, on the ranks likely to start a node.
    ready = raynode.ReadyRay.early(options.ray_command, options.node_per_rank,
                                   [options.walltime_signal])
    try:
        channel = MpiChannel(comm if comm is not None else world(),
                                    options.poll_interval)
        with contextlib.nullcontext(inbox) if inbox else SignalInbox() as inbox:
            inbox.also(options.walltime_signal)
            job = Job(options, channel, inbox, ready=ready, open_files=open_files)
            job.payload = payload
            job.check = check
            return job.advance(Phase.DONE)
    finally:
        if ready is not None and ready.process.poll() is None and not ready.used:
            ready.discard()


class Job:
    """One rank's part of the job: its phase, its outcome, what it started.

    `channel`, `own` and `launch` (factories of the process owner and the
    node launcher) and `log_name` are the seams the protocol tests replace:
    ranks as threads, fake Ray nodes, a logger per thread."""

    def __init__(self, options: Options, channel: Channel, inbox: SignalInbox,
                 own: Callable[..., Owner] = ProcessOwner,
                 launch: Callable[..., Launcher] = NodeLauncher,
                 log_name: str = logs.LOGGER_NAME,
                 ready: Optional[raynode.ReadyRay] = None,
                 open_files: Optional[str] = None) -> None:
        self.options, self.channel, self.inbox = options, channel, inbox
        self.make_owner, self.make_launcher = own, launch
        self.log_name = log_name
        self.log = logs.get(log_name)
        self.ready = ready  # a `ray` started before MPI, for this rank's node
        # The open-files limit is raised before this rank's first child.
        self.open_files = open_files or resources.raise_open_files_limit()
        self.started = time.monotonic()
        self.phase = Phase.AGREE
        self.history = [Phase.AGREE]  # every phase this rank went through, in order
        self.status = EXIT_FAILURE  # this rank's exit status, final once DONE
        self.cause: Optional[str] = None  # why the job failed, when it did
        self.payload: Optional[Payload] = None
        self.check: Callable[[], None] = lambda: None
        self.info: Optional[ClusterInfo] = None  # rank 0's cluster, from START
        self.agreed: Optional[Agreement] = None
        self.owner: Optional[Owner] = None
        self.launcher: Optional[Launcher] = None
        self.role: Optional[Union[HeadRank, WorkerRank]] = None
        self.teardown_began = 0.0
        self.stopped = 0  # processes this rank's teardown stopped
        self.left: List[str] = []  # `pid name` of those it could not stop
        self.logs_safe = True  # the job succeeded, or its Ray logs are copied
        self.node_logs: Optional[NodeLogs] = None  # this rank's node's Ray logs

    # ------------------------------------------------------------ the loop
    def advance(self, until: Phase) -> int:
        """Run phases until `until` (or DONE); this rank's exit status."""
        steps = {Phase.AGREE: self._agree, Phase.OWN: self._own, Phase.START: self._start,
                 Phase.RUN: self._run, Phase.SERVE: self._serve, Phase.STOP: self._stop,
                 Phase.REPORT: self._report}
        while self.phase not in (until, Phase.DONE):
            self.go(self._guarded(steps[self.phase]))
        return self.status

    def go(self, phase: Phase) -> None:
        if phase not in NEXT[self.phase]:
            raise RuntimeError(f"no transition from {self.phase.name} to {phase.name}")
        self.log.debug("phase %s -> %s", self.phase.name, phase.name)
        self.phase = phase
        self.history.append(phase)

    def _guarded(self, step: Callable[[], Phase]) -> Phase:
        """A step's next phase. Expected failures (start-up errors, signals,
        the job's end) are logged and lead to STOP, or DONE if nothing was
        started; anything else also aborts the MPI job, so that no rank
        waits for this one forever."""
        ending = self.phase in (Phase.STOP, Phase.REPORT)
        try:
            return step()
        except UsageError as err:
            if self.phase is not Phase.AGREE or ending:
                raise
            self.say_usage_error(err)
            self.status = EXIT_USAGE
            return Phase.DONE
        except (JobError, NodeError, Interrupted) as err:
            if ending:
                raise
            if isinstance(err, Interrupted):
                self.log.error("%s during start-up: stopping the job%s", err,
                               " (exit status 75: not done yet)" if err.walltime else "")
            else:
                self.log.error("%s", err)
            self.fail(status_of(err), str(err))
            return Phase.DONE if self.phase is Phase.AGREE else Phase.STOP
        except BaseException:
            self.log.exception("start_ray failed on this rank; stopping its Ray processes")
            if not ending and self.phase is not Phase.AGREE:
                self.fail(EXIT_FAILURE, "start_ray failed on this rank")
                self.go(Phase.STOP)
                self.advance(Phase.DONE)
            self.abort()
            raise

    def fail(self, status: int, cause: Optional[str]) -> None:
        """The outcome, if not known yet (the first failure is the cause)."""
        self.status = status
        self.cause = self.cause or cause

    # ---------------------------------------------------------- the phases
    def _agree(self) -> Phase:
        def check() -> None:  # rank 0's, before anything starts
            self.check()
            preflight.check(self.options, self.channel.size)
        agreed = agree(self.channel, self.options, check)
        self.log = logs.setup(agreed.run_dir, agreed.rank, agreed.size, self.log_name)
        self.agreed = agreed
        self.owner = self.make_owner(agreed, self.options, self.log)
        self.launcher = self.make_launcher(agreed, self.options, self.log, self.owner)
        parts = (agreed, self.options, self.channel, self.owner, self.launcher, self.inbox,
                 self.log, self.started)
        self.role = HeadRank(*parts) if agreed.rank == 0 else WorkerRank(*parts)
        if agreed.rank == 0:
            preflight.log_plan(agreed, self.options, self.log, self.channel.mpi_library())
        if self.options.dry_run:  # every rank probed; nothing starts
            if agreed.rank == 0:
                self.log.info("dry run: nothing was started (without --dry-run, this would)")
            self.status = 0
            return Phase.DONE
        return Phase.OWN

    def _own(self) -> Phase:
        """Nothing this rank starts may escape unseen."""
        assert self.agreed and self.owner and self.launcher
        if self.agreed.my_node is not None:
            self.owner.set_up()
            self.log.debug("%s", self.open_files)
            if self.ready is not None:
                self.launcher.adopt(self.ready)
            if self.owner.temp_dir is not None:
                period = self.options.sync_logs if self.options.collect_logs != "never" else 0
                self.node_logs = NodeLogs(self.agreed, self.owner.temp_dir, period, self.log)
        elif self.ready is not None:
            self.ready.discard()
        return Phase.START

    def _start(self) -> Phase:
        if isinstance(self.role, HeadRank):
            self.info = self.role.start()
            self.status = 0
            return Phase.RUN
        assert isinstance(self.role, WorkerRank)
        serve = self.role.start()
        self.status = self.role.status
        return Phase.SERVE if serve else Phase.STOP

    def _run(self) -> Phase:
        assert self.payload is not None and self.info is not None
        assert isinstance(self.role, HeadRank)
        assert self.owner is not None
        status = self.payload(Running(self.info, self.inbox, self.role.watch.tick,
                                      self.owner.popen, self._explain))
        self.status = status
        if status:
            self.cause = self.cause or f"the driver exited with status {status}"
        return Phase.STOP

    def _explain(self, cause: str) -> None:
        self.cause = self.cause or cause

    def _serve(self) -> Phase:
        assert isinstance(self.role, WorkerRank)
        self.role.serve()
        return Phase.STOP

    def _stop(self) -> Phase:
        """Rank 0 stops the others first (and hears their Done), then every
        rank its own processes; a failed job's Ray logs are copied."""
        assert self.agreed and self.owner and self.launcher and self.role
        self.teardown_began = time.monotonic()
        report_by = self.teardown_began + self.options.stop_timeout + REPORT_SLACK
        self.role.stop_others(self.status, report_by)
        self.stopped, self.left = self.owner.stop(self.launcher.node)
        if self.left:
            self.log.error("%d process(es) would not stop: %s", len(self.left),
                           ", ".join(self.left))
        else:
            self.log.debug("stopped %d process(es); none left", self.stopped)
        failed = bool(self.status) or self.role.logs_wanted()
        collect = self.options.collect_logs
        wanted = collect == "always" or (collect == "on-failure" and failed)
        # before Done: rank 0's summary reads them
        copied = self.node_logs is not None and self.node_logs.finish(wanted)
        self.logs_safe = not failed or copied
        return Phase.REPORT

    def _report(self) -> Phase:
        """Done to rank 0, or rank 0's summary; then tidy up and leave together."""
        assert self.role and self.owner
        report_by = self.teardown_began + self.options.stop_timeout + REPORT_SLACK
        self.role.report(Teardown(self.status, self.cause, self.stopped, self.left,
                                  self.teardown_began))
        self.channel.flush(report_by)
        self.owner.finish(clean=self.logs_safe and not self.left)
        if self.channel.rank == 0:
            self.log.info("exit status %d", self.status)
        # Leave together: rank 0 may still be stopping its head when the others are done.
        leave_by = self.role.leave_by(report_by + self.options.stop_timeout + REPORT_SLACK)
        if leave_by is not None and not self.channel.part(leave_by):
            self.log.debug("not every rank came to the end of the job; exiting anyway")
        return Phase.DONE

    # ------------------------------------------------- for the Python API
    def start(self) -> Optional[ClusterInfo]:
        """AGREE to START: rank 0's cluster (None elsewhere, and None on
        rank 0 when the start failed: `phase` is DONE then)."""
        self.advance(Phase.RUN if self.channel.rank == 0 else Phase.SERVE)
        return self.info if self.phase is Phase.RUN else None

    def serve(self) -> int:
        """A worker rank, after `start`: SERVE to DONE."""
        return self.advance(Phase.DONE)

    def finish(self, status: Optional[int] = None, cause: Optional[str] = None) -> int:
        """Rank 0 after its body (or any rank after a failure): STOP to DONE."""
        if status is not None:
            self.status = status
            if status:
                self.cause = self.cause or cause
        if self.phase in (Phase.RUN, Phase.SERVE):
            self.go(Phase.STOP)
        if self.phase is Phase.STOP or self.phase is Phase.REPORT:
            return self.advance(Phase.DONE)
        return self.status

    @property
    def stop_status(self) -> Optional[int]:
        """Rank 0's Stop status, as a worker rank received it."""
        if isinstance(self.role, WorkerRank) and self.role.stop_message is not None:
            return self.role.stop_message.status
        return None

    # ------------------------------------------------------------- errors
    def say_usage_error(self, err: UsageError) -> None:
        """Once per job: by MPI rank 0, and, where MPI saw singletons, only
        by the launcher's task 0."""
        if self.channel.rank == 0 and (self.channel.size > 1 or launch_env.launcher_rank() == 0):
            print(f"start_ray: error: {err}", file=sys.stderr, flush=True)

    def abort(self) -> None:
        """After a local failure nothing may wait for this rank forever."""
        logs.close(self.log_name)
        self.channel.abort(EXIT_FAILURE)
