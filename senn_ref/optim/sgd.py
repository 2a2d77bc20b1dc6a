"""Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

Update for each parameter array ``p`` with gradient ``g`` (all elementwise,
same shape as ``p``):

    d = g + weight_decay * p                 (L2 penalty folded into the gradient)
    momentum == 0:  p <- p - lr * d
    momentum  > 0:  v <- momentum * v + d    (v: "velocity" slot, zeros at the start)
                    p <- p - lr * (d + momentum * v)   if nesterov
                    p <- p - lr * v                    otherwise

Growth: a padded velocity slot is zero, exactly the state of a fresh optimiser.

Derivations: ``derivations/08-optimisers.md`` section 1.  Tests: ``tests/test_optim.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_flag, check_scalar
from .state import Optimizer


class SGD(Optimizer):
    """``SGD(lr, momentum=0.0, nesterov=False, weight_decay=0.0)``; see the module docstring.

    ``lr > 0`` may be changed between steps (``opt.lr = ...``); ``0 <= momentum < 1``;
    ``nesterov`` needs ``momentum > 0``; ``weight_decay >= 0`` is an L2 penalty
    (coupled: it passes through the momentum buffer).
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.momentum = check_scalar(momentum, "SGD momentum", minimum=0.0)
        if self.momentum >= 1.0:
            raise ValueError(f"SGD momentum: must be < 1, got {self.momentum}")
        check_flag(nesterov, "SGD nesterov")
        if nesterov and self.momentum == 0.0:
            raise ValueError("SGD nesterov: Nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = check_scalar(weight_decay, "SGD weight_decay", minimum=0.0)
        self.slots = {"velocity": np.float64} if self.momentum > 0 else {}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        """One SGD step on ``p`` (any shape) in place; ``state["velocity"]`` has ``p``'s shape."""
        d = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            v = state["velocity"]
            v *= self.momentum
            v += d
            d = d + self.momentum * v if self.nesterov else v
        p -= self._lr * d

    def __repr__(self) -> str:
        return (f"SGD(lr={self._lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")
