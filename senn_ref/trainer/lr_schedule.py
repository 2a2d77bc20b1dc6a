"""The learning-rate schedule of a SENN run: the lr the optimiser uses at each global step.

    constant:  lr_t = lr
    cosine:    lr_t = lr * (1 + cos(pi t / T)) / 2,   t = 0 .. T-1, T = ``config.steps``

The cosine schedule starts at ``lr`` and decays to lr * (1 + cos(pi (T-1)/T)) / 2 > 0 at the
last step (never 0, so the optimisers, which all refuse lr = 0, accept it).  It is a
pure function of the step, so a run resumed from a checkpoint sees the same sequence.
``derivations/21-trainer.md`` section 11; ``tests/test_trainer.py::test_lr_schedule_*``.
"""
from __future__ import annotations

import math

from .config import SENNConfig


def scheduled_lr(config: SENNConfig, step: int) -> float:
    """lr_t of ``config.lr_schedule`` at global step ``step`` (0 <= step < config.steps): ``lr``
    or ``lr (1 + cos(pi step / steps)) / 2``; ``derivations/21-trainer.md`` section 11."""
    if config.lr_schedule == "constant":
        return float(config.lr)
    if config.lr_schedule == "cosine":
        return float(config.lr) * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))
    raise ValueError(f"lr_schedule: unknown schedule {config.lr_schedule!r}")
