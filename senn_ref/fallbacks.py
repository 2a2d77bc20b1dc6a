"""Numerical fallbacks: the places where a computation changes its numerics to get past a
failure, each reported as a warning and, inside :func:`senn_ref.train_senn`, as a log event.

A *fallback* returns a usable answer that is not the one asked for: CG stopping early (iteration
cap, curvature at or below the floor, a non-finite iterate; :class:`senn_ref.natural_gradient.CGWarning`),
an inverse whose damped spectrum is too ill-conditioned to be trusted, or a damped curvature
factor / per-unit block with eigenvalues at the zero tolerance, inverted as a pseudo-inverse so
that those directions get no step (:class:`senn_ref.kfac.CurvatureWarning`).  Every fallback
warning is a :class:`NumericalFallback` carrying ``reason`` (a short fixed string) and ``value``
(the number that triggered it: relative residual, condition number, eigenvalues cut).

:func:`warn_fallback` issues the warning through the ordinary ``warnings`` machinery (so the
caller's filters decide whether it prints, is ignored or raises) *and* hands it to every active
:func:`recording` context of the current thread/context; :func:`log_fallbacks` turns recorded
fallbacks into ``log.events`` entries of kind ``"fallback"``, merging a repeat of the previous
one (same ``during``, warning class and reason, next step) into it (``count``, ``last_step``),
so that a fallback met at every step is one event, not thousands.
The list of fallbacks and where each is logged: ``derivations/22-run-checkpoints.md`` section 5;
``tests/test_fallbacks.py``.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import warnings


class NumericalFallback(RuntimeWarning):
    """A computation changed its numerics to survive a failure.  ``reason``: what happened (e.g.
    ``"iteration cap"``, ``"curvature floor"``, ``"non-finite"``, ``"ill-conditioned"``,
    ``"pseudo-inverse"``); ``value``: the number behind it (float or None)."""

    def __init__(self, message, reason: str = "", value=None) -> None:
        super().__init__(message)
        self.reason = str(reason)
        self.value = None if value is None else float(value)


#: the lists of every active :func:`recording` context, outermost first (nested contexts all
#: record: a caller's ``recording()`` around ``train_senn`` still sees what the trainer logs)
_RECORDER: contextvars.ContextVar = contextvars.ContextVar("senn_ref_fallback_recorder", default=())


def warn_fallback(category: type, message: str, reason: str, value=None, stacklevel: int = 2) -> None:
    """Issue ``category(message, reason, value)`` (a :class:`NumericalFallback` subclass) as a
    warning from the caller's caller (``stacklevel`` as in ``warnings.warn``, counted from the
    function calling this one) and append it to the active :func:`recording` list, if any.
    The recording happens first, so a filter that turns the warning into an error still leaves
    the record."""
    if not (isinstance(category, type) and issubclass(category, NumericalFallback)):
        raise TypeError(f"category: expected a NumericalFallback subclass, got {category!r}")
    w = category(message, reason=reason, value=value)
    for found in _RECORDER.get():
        found.append(w)
    warnings.warn(w, stacklevel=stacklevel + 1)


@contextlib.contextmanager
def recording():
    """``with recording() as found:`` - ``found`` (a list) receives every fallback warning issued
    by :func:`warn_fallback` inside the block, in order, whatever the warning filters do; an
    enclosing ``recording()`` receives them too."""
    found: list = []
    token = _RECORDER.set(_RECORDER.get() + (found,))
    try:
        yield found
    finally:
        _RECORDER.reset(token)


def log_fallbacks(events: list, found, step: int, during: str) -> int:
    """Append the fallbacks ``found`` at training step ``step`` (during ``"optimizer step"``,
    ``"expansion round"`` or ``"pruning round"``) to ``events`` as dicts

        {"kind": "fallback", "accepted": False, "step", "last_step", "count", "during",
         "warning": class name, "reason", "value" (the last one), "message" (the first one)}

    An event equal in ``during``, ``warning`` and ``reason`` to the last event of ``events``
    whose ``last_step`` is ``step`` or ``step - 1`` is merged into it.  Returns how many were
    found."""
    n = 0
    for w in found:
        n += 1
        value = None if w.value is None or not math.isfinite(w.value) else w.value
        last = events[-1] if events else None
        if (last is not None and last.get("kind") == "fallback" and last["during"] == during
                and last["warning"] == type(w).__name__ and last["reason"] == w.reason
                and step - last["last_step"] in (0, 1)):
            last["count"] += 1
            last["last_step"] = int(step)
            last["value"] = value
            continue
        events.append({"kind": "fallback", "accepted": False, "step": int(step), "last_step": int(step),
                       "count": 1, "during": during, "warning": type(w).__name__, "reason": w.reason,
                       "value": value, "message": str(w)})
    return n


def count_fallbacks(events) -> int:
    """Total number of fallbacks recorded in ``events`` (merged events count ``count`` times)."""
    return sum(int(e.get("count", 1)) for e in events if e.get("kind") == "fallback")
