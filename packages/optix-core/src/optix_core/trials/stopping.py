"""Stopping a sweep from outside: Ctrl-C, SIGTERM, a parent that went away.

``stop_on_signals()`` turns SIGINT and SIGTERM into ``Interrupted``, an
exception that no ``except Exception`` (Optuna's included) swallows and that
RLOptimizer does not take for a user's Ctrl-C (it ends a run normally on
KeyboardInterrupt, which would hand a half-trained trial a score). Each
process that runs trials catches it, marks its running trials FAIL (with the
``stopped`` user attribute, so they never count against the budget) and ends.

A signal that lands while the process is inside the study's storage (a
journal file's lock, a database transaction) or a checkpoint write is held
back until that code has returned (re-checked every ``RETRY_S`` on SIGALRM),
so stopping never leaves a lock or a half-written record behind.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RETRY_S = 0.02
# Code a stop must not cut in two: storages (and their drivers) and checkpoint writes.
CRITICAL_MODULES = ("optuna.storages", "sqlalchemy", "psycopg", "optix_core.checkpoints")
_pending: list[int] = []  # a signal held back until the critical code has returned


class Interrupted(BaseException):
    """A signal asked the sweep to stop; ``failed`` lists the trials it stopped."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.failed: list[int] = []
        super().__init__(f"stopped by {self.signame}")

    @property
    def signame(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal (130, 143)."""
        return 128 + self.signum


def _in_critical_code(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(CRITICAL_MODULES):
            return True
        frame = frame.f_back
    return False


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    # Stopping is bounded (workers are killed when they do not stop in time), so
    # a second Ctrl-C while it runs is ignored instead of cutting the clean-up short.
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    if _in_critical_code(frame):
        _pending[:] = [signum]
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    raise Interrupted(signum)


def _retry(_: int, frame: FrameType | None) -> None:
    if not _pending:
        return
    if _in_critical_code(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    raise Interrupted(_pending.pop())


@contextmanager
def stop_on_signals(signums: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Inside the block, the signals ``signums`` raise ``Interrupted`` (main thread only)."""
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in signums}
    previous_alarm = signal.signal(signal.SIGALRM, _retry)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _pending.clear()
        signal.signal(signal.SIGALRM, previous_alarm)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Processes started inside the block ignore SIGINT (they inherit SIG_IGN).

    Ctrl-C reaches every process of the terminal's foreground group; a
    sweep's workers leave it to the process that started them, which stops
    them with SIGTERM. Outside the main thread signals cannot be changed, and
    nothing is.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def die_of(signum: int) -> None:
    """End this process as the signal would have, after flushing what it printed."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal that does not end the process by default
