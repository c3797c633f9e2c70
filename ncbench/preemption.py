"""Stop signals (SIGTERM, Ctrl-C, SLURM's pre-timeout signal) turned into a stop that loses no
finished training step.

:func:`handling` installs the handler for a command's lifetime and restores the previous handlers
afterwards. Outside the steps of an epoch a stop signal raises :class:`~ncbench.errors.Preempted`
at once: the last checkpoint already holds all finished work (a resumed epoch recomputes its
start, e.g. NCR's per-sample losses, and a resumed validation is simply run again). Inside the
steps (:func:`deferred`) the signal is only remembered: the current step finishes, the trainer
writes a mid-epoch checkpoint and raises ``Preempted`` itself. A second signal stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from .errors import Preempted

_pending = 0  # the signal waiting for the next step boundary (0: none)
_deferring = 0  # depth of ``deferred`` blocks


def _handle(signum: int, frame) -> None:
    global _pending
    if _deferring and not _pending:
        _pending = signum
        print(f"\nncbench: {signal.Signals(signum).name}: stopping after the current training step to save a "
              "checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)
        return
    _pending = 0
    raise Preempted(signum)


@contextmanager
def handling(*signums: int) -> Iterator[None]:
    """Within: the given signals stop training cleanly. Outside the main thread nothing is installed
    (Python only delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Within: a stop signal waits for :func:`pending` to be checked at the next step boundary."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


def pending() -> int:
    """The stop signal received during a ``deferred`` block and not yet acted on (0: none)."""
    return _pending


def stop(saved: str) -> Preempted:
    """The exception to raise once the pending stop has been acted on (``saved``: what was kept)."""
    global _pending
    signum, _pending = _pending, 0
    return Preempted(signum, saved)
