"""The paper's experiments at CPU scale (senn-math section 10), one module per demo.

``run_demo(name, ...)`` (``runner.py``) trains SENN on the demo's task, runs the baselines,
writes figures, ``events.json``, ``summary.json`` and ``network.npz``; ``senn-ref demo NAME``
is its command line and ``senn-ref sweep NAME`` (``sweep.py``) repeats it over seeds and settings.
"""
from __future__ import annotations

import importlib

#: demo name -> module (imported on use)
DEMOS = {"regression1d": "regression1d", "moons": "moons", "digits": "digits", "teacher": "teacher",
         "digits-conv": "digits_conv", "width-vs-data": "width_vs_data", "mnist": "mnist"}
DEFAULT = "regression1d"


def demo_module(name: str):
    """The module of demo ``name`` (ValueError listing the demos for an unknown name)."""
    if name not in DEMOS:
        raise ValueError(f"demo: unknown demo {name!r} (choose from {', '.join(DEMOS)})")
    return importlib.import_module(f".{DEMOS[name]}", __name__)


def demo_list() -> list:
    """(name, one-line summary) of every demo, in the order of ``DEMOS``."""
    return [(n, demo_module(n).SUMMARY) for n in DEMOS]


def run_demo(*args, **kwargs):
    """See :func:`senn_ref.demos.runner.run_demo`."""
    from .runner import run_demo as _run
    return _run(*args, **kwargs)


__all__ = ["DEMOS", "DEFAULT", "demo_list", "demo_module", "run_demo"]
