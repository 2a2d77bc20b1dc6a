"""Adam with decoupled (AdamW-style) weight decay, a per-element step count and grown entries.

Update for each parameter array ``p`` with gradient ``g`` (elementwise; slots
``m``, ``v`` float64, ``t`` int64 and ``grown`` uint8, all of ``p``'s shape, zeros
at the start):

    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    t <- t + 1
    m_hat = m / (1 - beta1^t)  (m where grown = 1),   v_hat = v / (1 - beta2^t)
    p <- p - lr * ( m_hat / (sqrt(v_hat) + eps) + weight_decay * p_old )

The weight decay is decoupled from the adaptive scaling (AdamW, Loshchilov &
Hutter): it shrinks ``p`` by ``lr * weight_decay * p`` and never enters ``m`` or
``v``.  The step count ``t`` is kept per element, not per optimiser, so that
after :meth:`pad_state` a new entry (``m = v = t = 0``) follows exactly the
trajectory of a freshly started Adam (full bias correction on its first steps)
while old entries continue unchanged.  With a single global counter the new
entries would get bias corrections ``1 - beta^t ~ 1`` and a first step of size
about ``lr * (1 - beta1) / sqrt(1 - beta2) = 3.16 lr`` instead of ``lr``.

Entries created by growth after training has begun (``pad_state``'s new entries and an
inserted layer's keys, :meth:`~senn_ref.optim.state.Optimizer.add_grown_state`) carry
``grown = 1``: their first moment is not bias-corrected, so at their k-th step the adaptive
term ``m_hat / (sqrt(v_hat) + eps)`` is ``(1 - beta1^k)`` times a fresh Adam's on the same
gradients (the decoupled weight decay term is not scaled): at k = 1, m = (1 - beta1) g and
v_hat = g^2 give ``0.1 lr sign(g)`` (up to eps) instead of a full ``lr sign(g)`` step on every
new weight of a trained, function-preserving network (digits-conv: the loss jumped from 0.74
to 2.91 after a layer insertion); the factor ramps up with Adam's own time constant
1 / (1 - beta1).  This is a project choice, not standard Adam and not from the paper or
senn-math (which asks only for zero moments); the flag is never cleared (its effect decays
as beta1^k).  A run that never grows has ``grown = 0`` everywhere and computes exactly what it
computed without the flag.

Derivations: ``derivations/08-optimisers.md`` sections 2, 4 and 4.1.  Tests: ``tests/test_optim.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_scalar
from .state import Optimizer


def _bias_correction(beta: float, t: np.ndarray) -> np.ndarray:
    """``1 - beta^t`` elementwise for the int step counts ``t`` (any shape, entries >= 1).

    The power is evaluated once per distinct step count with Python's scalar
    ``float.__pow__``, so an entry's value never depends on where it sits in the
    array (a vectorised ``np.power`` may use a SIMD routine for some positions and
    the scalar libm routine for others, which differ in the last bit).
    """
    lo, hi = (int(t.min()), int(t.max())) if t.size else (1, 1)
    if lo == hi:
        return np.full(t.shape, 1.0 - beta ** lo)
    values, inverse = np.unique(t, return_inverse=True)
    table = np.array([1.0 - beta ** int(k) for k in values])
    return table[inverse].reshape(t.shape)


class Adam(Optimizer):
    """``Adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)``; see the module docstring.

    ``lr > 0`` may be changed between steps; ``0 <= beta1, beta2 < 1``; ``eps > 0``;
    ``weight_decay >= 0`` is decoupled (AdamW).
    """

    slots = {"m": np.float64, "v": np.float64, "t": np.int64, "grown": np.uint8}
    grown_fill = {"grown": 1}

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.beta1 = check_scalar(beta1, "Adam beta1", minimum=0.0)
        self.beta2 = check_scalar(beta2, "Adam beta2", minimum=0.0)
        for name, b in (("beta1", self.beta1), ("beta2", self.beta2)):
            if b >= 1.0:
                raise ValueError(f"Adam {name}: must be < 1, got {b}")
        self.eps = check_scalar(eps, "Adam eps", minimum=0.0, strict=True)
        self.weight_decay = check_scalar(weight_decay, "Adam weight_decay", minimum=0.0)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        """One Adam step on ``p`` (any shape) in place; slots ``m, v, t`` have ``p``'s shape."""
        m, v, t = state["m"], state["v"], state["t"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        t += 1
        c1 = _bias_correction(self.beta1, t)
        grown = state["grown"]
        if grown.any():                  # entries created by growth: m starts from rest (section 4)
            c1 = np.where(grown != 0, 1.0, c1)
        m_hat = m / c1
        v_hat = v / _bias_correction(self.beta2, t)
        step = m_hat / (np.sqrt(v_hat) + self.eps)
        if self.weight_decay:
            step += self.weight_decay * p
        p -= self._lr * step

    def load_state_dict(self, d) -> None:
        """As :meth:`Optimizer.load_state_dict`; a key saved without the ``grown`` slot (state
        written before the flag existed) gets ``grown = 0``, i.e. the update it had then."""
        if isinstance(d, dict) and isinstance(d.get("state"), dict):
            state = {}
            for key, slots in d["state"].items():
                if isinstance(slots, dict) and "grown" not in slots and "m" in slots:
                    slots = {**slots, "grown": np.zeros(np.shape(slots["m"]), dtype=np.uint8)}
                state[key] = slots
            d = {**d, "state": state}
        super().load_state_dict(d)

    def __repr__(self) -> str:
        return (f"Adam(lr={self._lr}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"weight_decay={self.weight_decay})")
