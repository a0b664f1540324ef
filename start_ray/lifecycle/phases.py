"""The job's phases, what each step returns (Outcome), the one table of
transitions (TRANSITIONS) and what an exception means (outcome_of): the
vocabulary of the loop in job.py, which drives them. The diagram is job.py's.
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet, Tuple

from start_ray.errors import Interrupted, JobError, NodeError, UsageError


class Phase(enum.Enum):
    AGREE = "agree"
    OWN = "own"
    START = "start"
    RUN = "run"
    SERVE = "serve"
    STOP = "stop"
    REPORT = "report"
    DONE = "done"


class Outcome(enum.Enum):
    """What a phase's step returns: what happened (TRANSITIONS says what next)."""

    AGREED = "the plan and the placement are known"
    DRY_RUN = "--dry-run: the plan is printed, nothing starts"
    BAD_INPUT = "bad input: exit 2, nothing started"
    OWNED = "subreaper, watchdog and temp dir are set up"
    CLUSTER_UP = "rank 0: every node is alive"
    SERVING = "another rank: its node joined, or a host's node serves it"
    NO_CLUSTER = "another rank: the head never came up"
    PAYLOAD_ENDED = "rank 0: the driver (or the API's body) ended"
    STOP_CAME = "another rank: rank 0 said Stop"
    FAILED = "an expected failure: a node, the job, a signal"
    CRASHED = "anything else: stop what was started, then abort the MPI job"
    STOPPED = "this rank's processes are stopped"
    REPORTED = "the reports are in; the ranks left together"
    RESTARTING = "the head was lost, and every rank starts the cluster again (--restarts)"


P, O = Phase, Outcome
# The one table of transitions: (phase, what its step returned) -> the next
# phase. The loop refuses anything else.
TRANSITIONS: Dict[Tuple[Phase, Outcome], Phase] = {
    (P.AGREE, O.AGREED): P.OWN, (P.AGREE, O.DRY_RUN): P.DONE, (P.AGREE, O.BAD_INPUT): P.DONE,
    (P.AGREE, O.FAILED): P.DONE, (P.AGREE, O.CRASHED): P.DONE,
    (P.OWN, O.OWNED): P.START, (P.OWN, O.FAILED): P.STOP, (P.OWN, O.CRASHED): P.STOP,
    (P.START, O.CLUSTER_UP): P.RUN, (P.START, O.SERVING): P.SERVE,
    (P.START, O.NO_CLUSTER): P.STOP, (P.START, O.FAILED): P.STOP,
    (P.START, O.CRASHED): P.STOP,
    (P.RUN, O.PAYLOAD_ENDED): P.STOP, (P.RUN, O.FAILED): P.STOP, (P.RUN, O.CRASHED): P.STOP,
    (P.SERVE, O.STOP_CAME): P.STOP, (P.SERVE, O.FAILED): P.STOP,
    (P.SERVE, O.CRASHED): P.STOP,
    (P.STOP, O.STOPPED): P.REPORT, (P.STOP, O.FAILED): P.DONE, (P.STOP, O.CRASHED): P.DONE,
    (P.REPORT, O.REPORTED): P.DONE, (P.REPORT, O.FAILED): P.DONE,
    (P.REPORT, O.CRASHED): P.DONE, (P.REPORT, O.RESTARTING): P.AGREE,
}
# Where each phase may lead (the diagram above), derived from the table.
NEXT: Dict[Phase, FrozenSet[Phase]] = {
    phase: frozenset(after for (before, _), after in TRANSITIONS.items() if before is phase)
    for phase in Phase}


def outcome_of(error: BaseException, phase: Phase) -> Outcome:
    """The exceptions that remain, as outcomes, in one place: bad input is
    known only while the ranks agree; a node's, the job's or a signal's end
    is expected until the teardown; anything else is a crash."""
    if isinstance(error, UsageError) and phase is Phase.AGREE:
        return Outcome.BAD_INPUT
    if isinstance(error, (JobError, NodeError, Interrupted)) and \
            phase not in (Phase.STOP, Phase.REPORT):
        return Outcome.FAILED
    return Outcome.CRASHED
