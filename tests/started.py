"""What the tests start and must stop (a Slurm, emulated hosts, a PBS
complex), as context managers: started on entry, stopped on exit, and
stopped too when the start fails half way."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound="Started")


class Started:
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop whatever was started (also after a start that failed)."""
        raise NotImplementedError

    def __enter__(self: T) -> T:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
