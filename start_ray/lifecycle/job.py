"""The life of one job on one rank: the phases, what each step returns
(Outcome), the one table of transitions (TRANSITIONS), and the one loop that
drives them (Job.advance); and the one way a Job is made (`opened`), for the
command line (`run`) and the Python API (entry/api.py) alike.

    AGREE ---> OWN ---> START ---> RUN (rank 0) ----> STOP ---> REPORT ---> DONE
      ^  |       |        |   `--> SERVE (others) --^               |
      |  |       `--------+--(a failure, a stopping signal)--^      |
      |  `--(bad input: exit 2, nothing started)------------------------> DONE
      `--(the head lost, --restarts: every rank starts again)--------'

    AGREE   the plan from rank 0, every rank's probe, each rank's part of the
            placement, the same run folder everywhere       (agree/agreement.py)
    OWN     subreaper, watchdog, temp dir: before the first child (procs/owner.py)
    START   rank 0: the head, then every node alive          (head/bring_up.py)
            the others: join with retries                       (worker/role.py)
    RUN     rank 0: the payload (the driver, or an API body), watched (head/watch.py)
    SERVE   the others: wait quietly for Stop                   (worker/role.py)
    STOP    every rank stops exactly what it started, the workers first while
            the head is up (head/teardown.py); a failed job's Ray logs are copied
    REPORT  Done to the host's leader, one HostDone per host to rank 0, rank 0's
            summary (record/summary.py); the ranks leave together; the exit
            status, or, after the head was lost, AGREE again (restarts.py)

    rank 0                                   rank 1..N-1
    ------                                   -----------
    Plan (run id, token, head IP) -- share -> Plan
    host reports <-- gather (leaders) ------ probes (gathered by each leader)
    Seats (each host's part) -- scatter ---> Seat (shared by each leader)
    ray start --head [--block]
    HeadRecord (address | error) -- share -> HeadRecord
    wait until every node alive <---------- ray start --address --block
                                            (Joined | Failed)
    payload runs, watched                   wait for Stop (Lost)
    Stop -- broadcast (leaders, hosts) ----> stop own process tree
    collect HostDone <---------------------- Done (to the leader), HostDone
    stop own process tree

The command line runs every phase (`run`); the Python API (api.py) in two
goes around the user's body (`start`, then `finish`).
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Callable, List, Optional, Union

from start_ray.errors import EXIT_FAILURE, EXIT_USAGE, Interrupted, UsageError
from start_ray.errors import exit_status as status_of
from start_ray.host import resources
from start_ray.lifecycle.agree import preflight
from start_ray.lifecycle.agree.agreement import Agreement, agree
from start_ray.lifecycle.attempt import Attempt
from start_ray.lifecycle.contracts import (
    Channel,
    ClusterInfo,
    Launcher,
    Owner,
    Payload,
    Running,
    Teardown,
)
from start_ray.lifecycle.head.role import HeadRank
from start_ray.lifecycle.phases import (
    TRANSITIONS,
    Outcome,
    Phase,
    outcome_of,
)
from start_ray.lifecycle.restarts import Restarts
from start_ray.lifecycle.worker.role import WorkerRank
from start_ray.mpi import launch_env
from start_ray.node import compat
from start_ray.node.ready_ray import ReadyRay
from start_ray.node.starter import NodeLauncher
from start_ray.options import Options
from start_ray.procs.owner import ProcessOwner
from start_ray.procs.signals import SignalInbox
from start_ray.record import logs
from start_ray.record.log_sync import NodeLogs

# Teardown reports may take this long past the stop timeout (a busy rank).
REPORT_SLACK = 15.0


class Job:
    """One rank's part of the job: its phases, the restarts' budget, its exit;
    what the current attempt found and started is `attempt` (a restart is a
    new one). The roles answer for the phases with typed results (Started,
    Parted); the loop dispatches on those, not on the role's class.

    `channel`, `own` and `launch` (factories of the process owner and the
    node launcher) and `log_name` are the seams the protocol tests replace:
    ranks as threads, fake Ray nodes, a logger per thread. Making a Job
    changes nothing outside it: what it does, its steps do."""

    def __init__(self, options: Options, channel: Channel, inbox: SignalInbox,
                 payload: Optional[Payload] = None, check: Callable[[], None] = lambda: None,
                 own: Callable[..., Owner] = ProcessOwner,
                 launch: Callable[..., Launcher] = NodeLauncher,
                 log_name: str = logs.LOGGER_NAME,
                 ready: Optional[ReadyRay] = None,
                 open_files: Optional[str] = None) -> None:
        self.options, self.channel, self.inbox = options, channel, inbox
        self.payload, self.check = payload, check
        self.make_owner, self.make_launcher = own, launch
        self.log_name = log_name
        self.log = logs.get(log_name)
        self.open_files = open_files  # what raising the open-files limit did, if done
        self.started = time.monotonic()
        self.phase = Phase.AGREE
        self.history = [Phase.AGREE]  # every phase this rank went through
        self.outcomes: List[Outcome] = []  # what each step returned
        self.restarts = Restarts(options.restarts)  # the attempts (--restarts)
        self.run_id: Optional[str] = None  # the run's, kept by every attempt
        self.attempt = Attempt(ready)  # what this attempt found and started

    # what the entry points and the tests read of the attempt
    @property
    def status(self) -> int:
        return self.attempt.status

    @property
    def cause(self) -> Optional[str]:
        return self.attempt.cause

    @property
    def agreed(self) -> Optional[Agreement]:
        return self.attempt.agreed

    @property
    def role(self) -> Optional[Union[HeadRank, WorkerRank]]:
        return self.attempt.role

    # ------------------------------------------------------------ the loop
    def advance(self, until: Phase) -> int:
        """Run phases until `until` (or DONE); this rank's exit status. After
        a crash every rank's processes are stopped first; then the MPI job
        is aborted (no rank may wait for this one forever) and it is raised."""
        steps = {Phase.AGREE: self._agree, Phase.OWN: self._own, Phase.START: self._start,
                 Phase.RUN: self._run, Phase.SERVE: self._serve, Phase.STOP: self._stop,
                 Phase.REPORT: self._report}
        while self.phase not in (until, Phase.DONE):
            self.go(self.step(steps[self.phase]))
        if self.phase is Phase.DONE and self.attempt.crash is not None:
            self.abort()
            raise self.attempt.crash
        return self.attempt.status

    def go(self, outcome: Outcome) -> None:
        after = TRANSITIONS.get((self.phase, outcome))
        if after is None:
            raise RuntimeError(f"no transition from {self.phase.name} on {outcome.name}")
        self.log.debug("phase %s -> %s (%s)", self.phase.name, after.name, outcome.name)
        self.outcomes.append(outcome)
        self.phase = after
        self.history.append(after)

    def step(self, run_step: Callable[[], Outcome]) -> Outcome:
        """What the step returned, or what its exception means (outcome_of);
        the one place where a failure is logged and becomes the job's status."""
        try:
            return run_step()
        except BaseException as err:
            outcome = outcome_of(err, self.phase)
            if outcome is Outcome.BAD_INPUT:
                assert isinstance(err, UsageError)
                self.say_usage_error(err)
                self.attempt.status = EXIT_USAGE
            elif outcome is Outcome.FAILED:
                if isinstance(err, Interrupted):
                    self.log.error("%s during start-up: stopping the job%s", err,
                                   " (exit status 75: not done yet)" if err.walltime else "")
                else:
                    self.log.error("%s", err)
                self.attempt.fail(status_of(err), str(err))
                if self.phase is Phase.RUN and self.attempt.info is not None:
                    self.restarts.decide(err, self.attempt.info.walltime_warning.is_set(), self.log)
            else:
                self.log.exception("start_ray failed on this rank; stopping its Ray processes")
                self.attempt.fail(EXIT_FAILURE, "start_ray failed on this rank")
                self.attempt.crash = self.attempt.crash or err
            return outcome

    # ---------------------------------------------------------- the phases
    def _agree(self) -> Outcome:
        """The plan is O(ranks) objects on rank 0: the garbage collector, whose
        full collections walk them all, is paused meanwhile and kept off them
        (on, agreeing grew x19 from 1,000 to 10,000 simulated hosts)."""
        gc.disable()
        try:
            return self._make_plan()
        finally:
            gc.freeze()
            gc.enable()

    def _make_plan(self) -> Outcome:
        def check() -> None:  # rank 0's, before anything starts
            self.check()
            preflight.check(self.options, self.channel.size)
        now = self.attempt
        agreed = agree(self.channel, self.options, check, compat.gpu_variables(), self.run_id)
        self.log = logs.setup(agreed.run_dir, agreed.rank, agreed.size, self.log_name)
        now.agreed, self.run_id = agreed, agreed.plan.run_id
        now.owner = self.make_owner(agreed.identity, self.options, self.log)
        now.launcher = self.make_launcher(agreed.identity, agreed.my_node, agreed.plan.auth_token,
                                          self.options, self.log, now.owner)
        parts = (agreed, self.options, self.channel, now.owner, now.launcher, self.inbox,
                 self.log, self.started)
        now.role = HeadRank(*parts) if agreed.rank == 0 else WorkerRank(*parts)
        if self.restarts.attempt:
            now.role.restarted(self.restarts.attempt, self.restarts.causes[-1],
                               self.restarts.earlier)
        elif agreed.rank == 0:
            preflight.log_plan(agreed, self.options, self.log, self.channel.mpi_library())
        if self.options.dry_run:  # every rank probed; nothing starts
            if agreed.rank == 0:
                self.log.info("dry run: nothing was started (without --dry-run, this would)")
            now.status = 0
            return Outcome.DRY_RUN
        return Outcome.AGREED

    def _own(self) -> Outcome:
        """Nothing this rank starts may escape unseen; rank 0's Stop finds
        every other rank at any moment from now on."""
        now = self.attempt
        assert now.agreed and now.owner and now.launcher
        self.channel.expect_stop()
        if now.agreed.my_node is not None:
            # before the first child (unless done before the `ray` imported ahead)
            self.log.debug("%s", self.open_files or resources.raise_open_files_limit())
            now.owner.set_up()
            if now.ready is not None:
                now.launcher.adopt(now.ready)
            if now.owner.temp_dir is not None:
                period = self.options.sync_logs if self.options.collect_logs != "never" else 0
                me = now.agreed.identity
                dest = logs.ray_logs_dir(me.run_dir, me.rank, me.size, me.host,
                                         self.restarts.attempt)
                now.node_logs = NodeLogs(dest, now.owner.temp_dir, period, self.log)
        elif now.ready is not None:
            now.ready.discard()
        return Outcome.OWNED

    def _start(self) -> Outcome:
        """The role's START; the outcome says what came of it (rank 0's
        cluster, another rank serving, or no cluster to serve)."""
        now = self.attempt
        assert now.role is not None
        started = now.role.start()
        now.status, now.info, now.tick = started.status, started.info, started.tick
        if now.info is not None:
            self.restarts.driver_env(now.info.env, self.run_id or "")
            return Outcome.CLUSTER_UP
        return Outcome.SERVING if started.serves else Outcome.NO_CLUSTER

    def _run(self) -> Outcome:
        now = self.attempt
        assert self.payload is not None and now.info is not None
        assert now.tick is not None and now.owner is not None
        now.status = self.payload(Running(now.info, self.inbox, now.tick, now.owner.popen,
                                          now.explain))
        if now.status:
            now.explain(f"the driver exited with status {now.status}")
        return Outcome.PAYLOAD_ENDED

    def _serve(self) -> Outcome:
        assert self.attempt.role is not None
        self.attempt.role.serve()
        return Outcome.STOP_CAME

    def _stop(self) -> Outcome:
        """Rank 0 stops the others first (and hears their hosts), then every
        rank its own processes; a failed job's Ray logs are copied."""
        now = self.attempt
        assert now.agreed and now.owner and now.launcher and now.role
        now.teardown_began = time.monotonic()
        report_by = now.teardown_began + self.options.stop_timeout + REPORT_SLACK
        parted = now.role.stop_others(now.status, report_by, self.restarts.pending)
        self.restarts.parted(parted, self.log)
        now.stopped, now.left = now.owner.stop(now.launcher.node)
        if now.left:
            self.log.error("%d process(es) would not stop: %s", len(now.left),
                           ", ".join(now.left))
        else:
            self.log.debug("stopped %d process(es); none left", now.stopped)
        failed = bool(now.status) or now.role.logs_wanted()
        collect = self.options.collect_logs
        wanted = collect == "always" or (collect == "on-failure" and failed)
        # before Done: rank 0's summary reads them
        copied = now.node_logs is not None and now.node_logs.finish(wanted)
        now.logs_safe = not failed or copied
        return Outcome.STOPPED

    def _report(self) -> Outcome:
        """Done to the leader (a leader: its host's, to rank 0), or rank 0's
        summary; then tidy up and leave together; then the next attempt, if
        the restarts say so."""
        now = self.attempt
        assert now.role and now.owner
        report_by = now.teardown_began + self.options.stop_timeout + REPORT_SLACK
        now.role.report(Teardown(now.status, now.cause, now.stopped, now.left,
                                 now.teardown_began))
        self.channel.flush(report_by)
        now.owner.finish(clean=now.logs_safe and not now.left)
        # Leave together: rank 0 may still be stopping its head when the others are done.
        leave_by = now.role.leave_by(report_by + self.options.stop_timeout + REPORT_SLACK)
        if leave_by is not None and not self.channel.part(leave_by):
            self.log.debug("not every rank came to the end of the job; exiting anyway")
            self.restarts.cancel("not every rank came to the end of the attempt", self.log)
        if not self.restarts.begin_next(now.cause, now.role.restart_said(), now.role.timeline(),
                                        self.log if self.channel.rank == 0 else None):
            if self.channel.rank == 0:
                self.log.info("exit status %d", self.attempt.status)
            return Outcome.REPORTED
        self.attempt = Attempt()
        return Outcome.RESTARTING

    # ------------------------------------------------- for the Python API
    def start(self) -> Optional[ClusterInfo]:
        """AGREE to START: rank 0's cluster (None elsewhere, and None on
        rank 0 when the start failed: `phase` is DONE then)."""
        self.advance(Phase.RUN if self.channel.rank == 0 else Phase.SERVE)
        return self.attempt.info if self.phase is Phase.RUN else None

    def serve(self) -> int:
        """A worker rank, after `start`: SERVE to DONE."""
        return self.advance(Phase.DONE)

    def finish(self, status: Optional[int] = None, cause: Optional[str] = None) -> int:
        """Rank 0 after its body (the payload of the API): STOP to DONE; any
        rank after a failure: what is left of the loop."""
        if status is not None:
            self.attempt.status = status
            if status:
                self.attempt.explain(cause)
        if self.phase is Phase.RUN:
            self.go(Outcome.PAYLOAD_ENDED)
        return self.advance(Phase.DONE)

    @property
    def stop_status(self) -> Optional[int]:
        """Rank 0's Stop status, as a worker rank received it."""
        return self.attempt.role.stop_status if self.attempt.role is not None else None

    def say_usage_error(self, err: UsageError) -> None:
        """Once per job: by rank 0 (of the launcher's tasks, if MPI saw singletons)."""
        if self.channel.rank == 0 and (self.channel.size > 1 or launch_env.launcher_rank() == 0):
            print(f"start_ray: error: {err}", file=sys.stderr, flush=True)

    def abort(self) -> None:
        """After a local failure nothing may wait for this rank forever."""
        logs.close(self.log_name)
        self.channel.abort(EXIT_FAILURE)
