"""Every exception start_ray raises, and the exit status each one means.

    UsageError    bad input; nothing was started                      2
    AddressError  no usable address on a host (reported as bad input)  2
    NodeError     a Ray node did not start (Ray's own words)           1
    JobError      the job cannot go on (no cluster, a lost node
                  under --fail-fast, the head gone)                    1
    Interrupted   a stopping signal while the cluster was starting     128 + N
                  (the walltime warning: not done yet, as for a chain)  75
    JobFailed     what start-up failures become once every rank has
                  stopped what it started; carries the status          its status
    HelperLost    a helper a rank relies on ended twice (helpers.py)   1
    ClusterError  the Python API's one error for its caller            -

Import them from here (or `start_ray.ClusterError`, `start_ray.UsageError`).
The watchdog's internal `RankGone` never leaves it. This module imports
nothing: every other module may import it.
"""

from __future__ import annotations

import signal

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_DONE = 75  # EX_TEMPFAIL: out of time before the work began (start_ray.chain)


class UsageError(ValueError):
    """Bad input from the user: one message, exit status 2, nothing started."""


class AddressError(ValueError):
    """No usable address on this host (e.g. no such interface)."""


class NodeError(RuntimeError):
    """A Ray node did not start; the message carries Ray's own words."""


class JobError(RuntimeError):
    """The job cannot go on (the cluster did not come up, or a node was lost
    under --fail-fast); the message says which rank and why."""


class HeadLost(JobError):
    """The head is gone (its raylet, or its GCS for good): the cluster with it.
    --restarts starts it again (lifecycle/restarts.py)."""


class Interrupted(Exception):
    """The job got a stopping signal, or the walltime warning, while it was
    starting up."""

    def __init__(self, signum: int, walltime: bool = False) -> None:
        super().__init__(f"received {signal.Signals(signum).name}" +
                         (" (the walltime warning)" if walltime else ""))
        self.signum = signum
        self.walltime = walltime


class JobFailed(RuntimeError):
    """The job could not start, or was stopped while starting; every rank
    has already stopped what it started. `status` is the exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class ClusterError(RuntimeError):
    """The Python API's cluster could not be brought up, or rank 0's code failed."""


def exit_status(error: BaseException) -> int:
    """The exit status that `error` means for a rank (see the table above)."""
    if isinstance(error, (UsageError, AddressError)):
        return EXIT_USAGE
    if isinstance(error, Interrupted):
        return EXIT_NOT_DONE if error.walltime else 128 + error.signum
    if isinstance(error, JobFailed):
        return error.status
    return EXIT_FAILURE
