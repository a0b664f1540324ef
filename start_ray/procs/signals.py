"""Signals the job receives (scancel, Ctrl-C, walltime warnings), turned into
news the lifecycle's waiting loops act on instead of a sudden death that
would leave Ray processes behind."""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from start_ray.errors import Interrupted
from start_ray.options import signal_number

# Signals that mean "the job must end" (scancel, Ctrl-C, a closed terminal).
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def is_stopping(signum: int) -> bool:
    return signum in STOPPING


WALLTIME_VARIABLE = "START_RAY_WALLTIME_SIGNAL"


def walltime_signal_given(argv: Sequence[str],
                          environ: Optional[Mapping[str, str]] = None) -> int:
    """The walltime signal a command line asks for, read before its parsing
    (a rank catches it as its first act): `--walltime-signal X`, else the
    variable, else SIGUSR1. Anything unreadable is left to the parser, which
    says what is wrong."""
    env = os.environ if environ is None else environ
    text = env.get(WALLTIME_VARIABLE, "")
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--walltime-signal" and i + 1 < len(argv):
            text = argv[i + 1]
        elif arg.startswith("--walltime-signal="):
            text = arg.split("=", 1)[1]
    try:
        return signal_number(text) if text else signal.SIGUSR1.value
    except ValueError:
        return signal.SIGUSR1.value


# Set by `python -m start_ray.jobs` on a step whose walltime warning came
# before the step started (a time limit shorter than the warning's lead): a
# signal sent then could find no handler, or no job to reach (`flux run`
# before its job runs), so the step starts warned instead.
WARNED_VARIABLE = "START_RAY_WARNED"


def ignore_hydras_failure_word(walltime: int,
                                environ: Optional[Mapping[str, str]] = None) -> bool:
    """Under MPICH's Hydra with -disable-auto-cleanup, SIGUSR1 to the ranks
    that live on says that a rank failed; its default action would end
    this one. When SIGUSR1 is not the walltime warning, a rank that Hydra
    started ignores it (the GCS tells rank 0 of a lost node); when it is,
    the start-up refuses the combination (lifecycle/agree/preflight.py).
    Whether this rank ignores it now."""
    env = os.environ if environ is None else environ
    if walltime == signal.SIGUSR1 or "HYDI_CONTROL_FD" not in env:
        return False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    return True


def ignore_after_the_job(walltime: int, environ: Optional[Mapping[str, str]] = None) -> List[int]:
    """The job is over on this rank, which only exits now (MPI finalizes at
    exit): a walltime warning that comes now means nothing, nor does Hydra's
    SIGUSR1 under -disable-auto-cleanup, which says that another rank ended
    first (rank 0, after a usage error that every rank shares). Neither may
    end the rank by its default action, with "User defined signal 1" for the
    job's status. The signals ignored from now."""
    env = os.environ if environ is None else environ
    ignored = [walltime] if walltime in (signal.SIGUSR1, signal.SIGUSR2) else []
    if "HYDI_CONTROL_FD" in env and signal.SIGUSR1 not in ignored:
        ignored.append(signal.SIGUSR1)
    if threading.current_thread() is not threading.main_thread():
        return []
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)
    return ignored


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
        for signum in self.handled:
            self._install(signum)
        return self

    def _install(self, signum: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only, and
            # lets no other thread install a handler: the inbox stays empty.
        self._previous.setdefault(signum, signal.signal(signum, self.record))

    def also(self, signum: int) -> None:
        """Handle `signum` too from now on (the walltime signal an option
        named, once the options are known)."""
        if signum not in self.handled:
            self.handled += (signum,)
            self._install(signum)

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

    def drain(self) -> List[int]:
        """Every signal received and not handed out yet (then none)."""
        pending, self._pending = self._pending, []
        return pending

    def raise_if_stopping(self, walltime_too: bool = False) -> None:
        """During start-up there is no driver to forward to: a stopping signal
        stops the job. So does a walltime warning on rank 0 (`walltime_too`):
        the time is nearly up, and a driver started now would get the warning
        before it could handle it. Other ranks leave the warning to rank 0."""
        for signum in self._pending:
            if walltime_too or is_stopping(signum):
                raise Interrupted(signum, walltime=not is_stopping(signum))
