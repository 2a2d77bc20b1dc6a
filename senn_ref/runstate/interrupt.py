"""Ctrl-C at a step boundary: a SIGINT handler that only raises a flag, and the exception that
ends a run once its checkpoint is written.

Inside :func:`deferred_interrupt` a first Ctrl-C sets a flag instead of raising
``KeyboardInterrupt`` somewhere in the middle of a step (where the network, the optimiser and
the log could be half updated); :class:`senn_ref.runstate.RunCheckpoints` sees the flag after
the step, writes a checkpoint and raises :class:`RunInterrupted`.  A second Ctrl-C raises
``KeyboardInterrupt`` at once (the last checkpoint on disk stays loadable).  Outside the
context (or off the main thread) nothing changes, and neither does a SIGINT that was ignored
when the context was entered (a process started with ``&`` from a non-interactive shell or under
``nohup`` inherits SIGINT ignored; it keeps ignoring it, as Python's own start-up does).
``derivations/22-run-checkpoints.md`` section 4; ``tests/test_resume.py``.
"""
from __future__ import annotations

import contextlib
import signal
import threading

_flag = {"requested": False}


class RunInterrupted(KeyboardInterrupt):
    """The run stopped after ``step`` steps because of Ctrl-C; ``path`` is the checkpoint written
    then (None when the run had no checkpoint folder)."""

    def __init__(self, step: int, path: str | None) -> None:
        self.step, self.path = step, path
        where = f"checkpoint {path}" if path else "no checkpoint (no checkpoint folder)"
        super().__init__(f"interrupted after {step} steps; {where}")


def requested() -> bool:
    """Whether a Ctrl-C arrived inside :func:`deferred_interrupt` and was not acted on yet."""
    return _flag["requested"]


def request() -> None:
    """Raise the flag as a first Ctrl-C would (for tests and for callers with their own signals)."""
    _flag["requested"] = True


def clear() -> None:
    _flag["requested"] = False


@contextlib.contextmanager
def deferred_interrupt():
    """Within this context a first SIGINT only sets :func:`requested`; a second one raises
    ``KeyboardInterrupt``.  The previous handler and a clear flag are restored on exit.  Off the
    main thread, or when SIGINT is ignored (``SIG_IGN``) on entry, nothing is installed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return

    def handler(signum, frame):
        if _flag["requested"]:
            raise KeyboardInterrupt
        _flag["requested"] = True

    previous = signal.signal(signal.SIGINT, handler)
    clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        clear()
