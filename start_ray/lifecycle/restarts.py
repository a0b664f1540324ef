"""--restarts N: when the head is lost, every rank starts the cluster again
on the same ranks and the driver runs again (torchrun's --max-restarts).

The head's raylet carries the driver (it cannot outlive it), and a GCS that
cannot come back in place (an older Ray, its restarts spent, a store that
failed) takes the cluster's state with it: nothing is left to reconnect to.

    RUN      rank 0's watch raises HeadLost (lifecycle/head/watch.py)
    STOP     Stop(restart=k) to every rank; each stops what it started
    REPORT   the reports and this attempt's summary; the ranks part together
    AGREE    again: the same run folder; a new token and job tag (a fresh
             temp dir on every node, nothing of the last attempt's Ray)
    START    the cluster again, the same placement
    RUN      the driver again, with START_RAY_RESTART=k (and, outside a
             chain, START_RAY_CHAIN_ID=<run id>: a driver that checkpoints
             per chain, as drivers/train_ppo.py does, resumes)

Not restarted: after the walltime warning (there is no time left to use),
when a rank was lost (not every rank could start again), past N.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

from start_ray.errors import HeadLost
from start_ray.lifecycle.contracts import Parted
from start_ray.record.events import Event

RESTART_VARIABLE = "START_RAY_RESTART"
CHAIN_VARIABLE = "START_RAY_CHAIN_ID"


class Restarts:
    """One rank's count of the attempts, and whether another follows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.attempt = 0  # this attempt: 0 the first, k the k-th restart
        self.pending = 0  # the attempt that follows this one, once decided
        self.causes: List[str] = []  # what ended each earlier attempt
        self.earlier: List[Event] = []  # rank 0's events of the earlier attempts

    def decide(self, error: BaseException, warned: bool, log: logging.Logger) -> bool:
        """Rank 0, when its driver's phase ended with `error`: whether the
        cluster starts again (then `pending` says which attempt)."""
        if not isinstance(error, HeadLost) or not self.limit:
            return False
        if warned:
            log.warning("not restarted (--restarts): the walltime warning came, so the job "
                        "ends now")
            return False
        if self.attempt >= self.limit:
            log.error("no restart left (--restarts %d): the job ends", self.limit)
            return False
        self.pending = self.attempt + 1
        return True

    def parted(self, parted: Parted, log: logging.Logger) -> None:
        """What the teardown's first half came to: a restart decided on and
        not going ahead was cancelled by a rank lost since (it needs every
        rank)."""
        if self.pending and not parted.restart:
            self.cancel("a rank was lost, so not every rank can start again", log)

    def cancel(self, why: str, log: logging.Logger) -> None:
        if self.pending:
            log.error("not restarted (--restarts): %s", why)
        self.pending = 0

    def begin_next(self, cause: Optional[str], said: Optional[int], timeline: Sequence[Event],
                   log: Optional[logging.Logger]) -> bool:
        """At the end of an attempt: whether another begins (it does now).
        `said`: the attempt rank 0's Stop said follows, as another rank
        received it; `timeline`: rank 0's events so far, which the next
        attempt's keeps (`earlier`); `log`: rank 0's, which says so on the
        console."""
        if said is not None:
            self.pending = said
        if not self.pending:
            return False
        self.causes.append(cause or "the head was lost")
        self.earlier = list(timeline)
        self.attempt, self.pending = self.pending, 0
        if log is not None:
            log.warning("restart %d of at most %d (--restarts): starting the cluster again on "
                        "the same ranks, with a new token and fresh temp dirs; the driver runs "
                        "again with %s=%d", self.attempt, self.limit, RESTART_VARIABLE,
                        self.attempt)
        return True

    def driver_env(self, env: Dict[str, str], run_id: str) -> None:
        """What the driver is told: which attempt it is; outside a chain, a
        chain ID that is the same in every attempt, for its checkpoints."""
        env[RESTART_VARIABLE] = str(self.attempt)
        if self.limit:
            env.setdefault(CHAIN_VARIABLE, run_id)
