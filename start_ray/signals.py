"""Signals the job receives (scancel, Ctrl-C, walltime warnings), turned into
news the lifecycle's waiting loops act on instead of a sudden death that
would leave Ray processes behind."""

from __future__ import annotations

import signal
from typing import Dict, List, Optional

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class Interrupted(Exception):
    """The job got a signal while it was starting up."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class SignalInbox:
    """Records signals as they arrive; hands each one out once."""

    def __init__(self) -> None:
        self._pending: List[int] = []
        self.received: List[int] = []
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "SignalInbox":
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _record(self, signum: int, frame: object) -> None:
        self._pending.append(signum)
        self.received.append(signum)

    def pop(self) -> Optional[int]:
        return self._pending.pop(0) if self._pending else None

    def raise_if_stopping(self) -> None:
        """During start-up there is no driver to forward to: stop the job."""
        for signum in self._pending:
            if signum != signal.SIGUSR1:
                raise Interrupted(signum)
        self._pending = [s for s in self._pending if s == signal.SIGUSR1]
