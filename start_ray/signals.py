"""Signals the job receives (scancel, Ctrl-C, walltime warnings), turned into
news the lifecycle's waiting loops act on instead of a sudden death that
would leave Ray processes behind."""

from __future__ import annotations

import signal
from typing import Dict, Iterable, List, Optional

# Signals that mean "the job must end" (scancel, Ctrl-C, a closed terminal).
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def is_stopping(signum: int) -> bool:
    return signum in STOPPING


class Interrupted(Exception):
    """The job got a signal while it was starting up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class SignalInbox:
    """Records signals as they arrive; hands each one out once."""

    def __init__(self, forwarded: Iterable[int] = (signal.SIGUSR1,)) -> None:
        """`forwarded`: signals (besides the stopping ones) that are news for
        the driver, such as a walltime warning."""
        self.handled = tuple(dict.fromkeys([*STOPPING, *forwarded]))
        self._pending: List[int] = []
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "SignalInbox":
        for signum in self.handled:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _record(self, signum: int, frame: object) -> None:
        self._pending.append(signum)

    def pop(self) -> Optional[int]:
        return self._pending.pop(0) if self._pending else None

    def raise_if_stopping(self, walltime_too: bool = False) -> None:
        """During start-up there is no driver to forward to: a stopping signal
        stops the job. So does a walltime warning on rank 0 (`walltime_too`):
        the time is nearly up, and a driver started now would get the warning
        before it could handle it. Other ranks leave the warning to rank 0."""
        for signum in self._pending:
            if walltime_too or is_stopping(signum):
                raise Interrupted(signum)
