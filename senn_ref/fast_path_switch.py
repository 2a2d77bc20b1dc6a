"""A process-wide switch that turns a compiled fast path off inside a ``with`` block.

The compiled paths (the whole-network passes of :mod:`senn_ref.network_plan`, the compiled CG
loop of :mod:`senn_ref.natural_gradient`, the compiled proposal search of
:mod:`senn_ref.grow.compiled_search`) each have a twin that gives the same numbers (bit for bit,
or to 1e-12), and benchmarks and tests run the twin by switching the fast path off:
``with switch.off(): ...``.  ``bool(switch)`` is True (the fast path may be taken) unless some
``off()`` block is open, in any thread.

The switch counts open blocks under a lock instead of saving and restoring a flag.  With
save/restore, two overlapping blocks in two threads (A enters, B enters, A leaves, B leaves)
restore in the wrong order and leave the fast path off for the rest of the process; with a
count the path is back on once the last block closes, however the blocks interleave.  While a
block is open the path is off for every thread (a process switch, not a per-thread one);
results do not depend on it, only speed.  Tested in ``tests/test_fast_path_switch.py``.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager


class FastPathSwitch:
    """``bool(switch)``: no :meth:`off` block is open.  ``name`` is for messages only."""

    __slots__ = ("name", "_open", "_lock")

    def __init__(self, name: str) -> None:
        self.name = name
        self._open = 0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return self._open == 0

    @contextmanager
    def off(self):
        """Within this block (and any overlapping one) the fast path is not taken."""
        with self._lock:
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1

    def __repr__(self) -> str:
        return f"FastPathSwitch({self.name!r}, {'on' if self else f'off ({self._open} open)'})"
