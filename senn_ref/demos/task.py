"""What a demo hands the shared runner: the data, the loss, the starting network and settings.

Each demo module (``regression1d``, ``moons``, ...) has ``NAME``, ``SUMMARY`` (one line for
``senn-ref demo --list``), ``OPTIONS`` (its own options with defaults, settable by ``--set``)
and ``task(seed, quick, **options) -> Task``; optionally ``figures(task, net, log, extra, out)``
and ``make_callback(task, config) -> (callback, extra)`` for demo-specific recordings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..trainer import SENNConfig


@dataclass
class Task:
    """One demo's problem.

    X, Y / X_test, Y_test : training and test data (X (N,) + in_shape; Y (N, K) or labels (N,))
    loss : a senn_ref.losses loss;  classification : report accuracy
    start : () -> Network, the starting network (fresh each call, deterministic)
    build : (hidden_widths list) -> Network of that architecture from scratch (baselines)
    config : the demo's SENNConfig (full run);  quick_steps : steps with ``--quick``
    config_notes : {field: why the demo sets it} (summary.json and the README)
    fixed_widths : widths of the fixed-width sweep baseline (empty: no sweep)
    info : free-form facts written to summary.json (data sizes, teacher width, ...)
    extra_baselines : {name: () -> Network} more fixed networks to train (e.g. logistic regression)
    objects : anything the demo's figures need that is not written (e.g. the teacher network)
    """
    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    loss: object
    classification: bool
    start: Callable
    build: Callable
    config: SENNConfig
    quick_steps: int
    config_notes: dict = field(default_factory=dict)
    fixed_widths: tuple = ()
    info: dict = field(default_factory=dict)
    extra_baselines: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)


def parse_option(options: dict, defaults: dict, demo: str) -> dict:
    """``defaults`` updated by ``options`` (values converted to the defaults' types);
    an unknown name is a ValueError naming it and listing the known ones."""
    out = dict(defaults)
    for key, value in options.items():
        if key == "data" and key not in defaults:
            raise ValueError(f"--data: only the mnist demo reads a data folder, not {demo}")
        if key not in defaults:
            raise ValueError(f"--set: {demo} has no option {key!r} (options: {sorted(defaults) or 'none'})")
        kind = type(defaults[key])
        try:
            out[key] = kind(value) if not isinstance(value, kind) else value
        except (TypeError, ValueError):
            raise ValueError(f"--set: {key} expects {kind.__name__}, got {value!r}") from None
    return out
