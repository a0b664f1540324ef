"""Signals the job receives (scancel, Ctrl-C, walltime warnings), turned into
news the lifecycle's waiting loops act on instead of a sudden death that
would leave Ray processes behind."""

from __future__ import annotations

import signal
import threading
from typing import Callable, Dict, Iterable, List, Optional

from .errors import Interrupted

# Signals that mean "the job must end" (scancel, Ctrl-C, a closed terminal).
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def is_stopping(signum: int) -> bool:
    return signum in STOPPING


class SignalInbox:
    """Records signals as they arrive; hands each one out once."""

    def __init__(self, forwarded: Iterable[int] = (signal.SIGUSR1,)) -> None:
        """`forwarded`: signals (besides the stopping ones) that are news for
        the driver, such as a walltime warning."""
        self.handled = tuple(dict.fromkeys([*STOPPING, *forwarded]))
        self._pending: List[int] = []
        self._previous: Dict[int, object] = {}
        self._reaction: Optional[Callable[[int], None]] = None

    def __enter__(self) -> "SignalInbox":
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only, and
            # lets no other thread install a handler: the inbox stays empty.
        for signum in self.handled:
            self._previous[signum] = signal.signal(signum, self.record)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def record(self, signum: int, frame: object = None) -> None:
        if self._reaction is not None:
            self._reaction(signum)  # may raise, into the code it interrupted
            return
        self._pending.append(signum)

    def react(self, reaction: Optional[Callable[[int], None]]) -> None:
        """From now on call `reaction(signum)` instead of recording (None:
        record again); the handlers are installed anew, since a library
        (ray.init() sets one for SIGTERM) may have replaced them."""
        self._reaction = reaction
        if reaction is not None and threading.current_thread() is threading.main_thread():
            for signum in self.handled:
                signal.signal(signum, self.record)

    def pop(self) -> Optional[int]:
        return self._pending.pop(0) if self._pending else None

    def raise_if_stopping(self, walltime_too: bool = False) -> None:
        """During start-up there is no driver to forward to: a stopping signal
        stops the job. So does a walltime warning on rank 0 (`walltime_too`):
        the time is nearly up, and a driver started now would get the warning
        before it could handle it. Other ranks leave the warning to rank 0."""
        for signum in self._pending:
            if walltime_too or is_stopping(signum):
                raise Interrupted(signum, walltime=not is_stopping(signum))
