"""When to add: the expansion criterion and the rate bound of senn-math section 8.

A proposal with gain ``Delta eta`` is **accepted** iff

    Delta eta / eta_c > tau     and     Delta eta > alpha,   alpha = alpha_rel * lambda,

where ``eta_c`` is the current score (before the addition) under the same curvature model
as ``Delta eta``, and ``lambda`` the ceiling.  A depth proposal's gain is divided by the
depth cost multiplier before the test.  Since a function-preserving addition leaves every
``e_n`` and hence ``lambda`` unchanged, ``alpha`` is constant within a round.

**Rate bound.**  If within a round (no parameter update in between) every accepted addition
passes both tests, ``eta`` grows by the accepted gain each time, and ``eta <= lambda``
throughout, then the number ``N_s`` of additions obeys

    N_s < 1 + ln(lambda / alpha) / ln(1 + tau) = 1 + ln(1 / alpha_rel) / ln(1 + tau).

Proof: the first accepted addition makes ``eta > alpha``; each later one multiplies ``eta``
by more than ``1 + tau``; so ``alpha (1 + tau)^(N_s - 1) < eta <= lambda``.  The ceiling holds
for the exact GGN with any damping; under block-diagonal K-FAC it can fail (the K-FAC score can
exceed ``lambda``), and then so can the bound.  ``derivations/19-criterion.md``;
``tests/test_criterion.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_scalar


def rate_bound(tau: float, alpha_rel: float) -> float:
    """``1 + ln(1/alpha_rel) / ln(1 + tau)``: the strict upper bound on additions per round.

    tau > 0, 0 < alpha_rel <= 1.  ``derivations/19-criterion.md`` section 2."""
    tau = check_scalar(tau, "tau", minimum=0.0, strict=True)
    alpha_rel = check_scalar(alpha_rel, "alpha_rel", minimum=0.0, strict=True)
    if alpha_rel > 1.0:
        raise ValueError(f"alpha_rel: must be <= 1 (alpha = alpha_rel * lambda <= lambda), got {alpha_rel}")
    return 1.0 + float(np.log(1.0 / alpha_rel) / np.log1p(tau))


@dataclass(frozen=True)
class Decision:
    """One proposal judged: ``score`` (gain after the depth cost), ``ratio = score / eta_c``,
    the two thresholds and whether each test passed."""
    score: float
    eta_c: float
    ratio: float
    tau: float
    alpha: float
    passes_relative: bool
    passes_absolute: bool

    @property
    def accepted(self) -> bool:
        return self.passes_relative and self.passes_absolute

    def to_dict(self) -> dict:
        return {"score": self.score, "eta_c": self.eta_c, "ratio": self.ratio, "tau": self.tau,
                "alpha": self.alpha, "passes_relative": self.passes_relative,
                "passes_absolute": self.passes_absolute, "accepted": self.accepted}


def decide(gain: float, eta_c: float, lam: float, tau: float, alpha_rel: float,
           cost: float = 1.0) -> Decision:
    """Judge one proposal: accept iff ``gain/cost > tau * eta_c`` and ``gain/cost > alpha_rel * lam``.

    ``eta_c = 0`` (nothing left to explain under the current parameters) makes the relative test
    pass for any positive gain.  A non-finite gain is rejected.  ``derivations/19-criterion.md``
    section 1."""
    tau = check_scalar(tau, "tau", minimum=0.0, strict=True)
    alpha_rel = check_scalar(alpha_rel, "alpha_rel", minimum=0.0, strict=True)
    eta_c = check_scalar(eta_c, "eta_c", minimum=0.0)
    lam = check_scalar(lam, "lambda", minimum=0.0)
    cost = check_scalar(cost, "cost", minimum=0.0, strict=True)
    if isinstance(gain, (bool, np.bool_, str, bytes)) or not isinstance(gain, (int, float, np.integer, np.floating)):
        raise TypeError(f"gain: expected a real number (NaN/inf are rejected proposals), got {type(gain).__name__}")
    if not np.isfinite(gain):
        return Decision(float("nan"), eta_c, float("nan"), tau, alpha_rel * lam, False, False)
    score = float(gain) / cost
    ratio = score / eta_c if eta_c > 0 else (float("inf") if score > 0 else 0.0)
    alpha = alpha_rel * lam
    return Decision(score, eta_c, ratio, tau, alpha, bool(score > tau * eta_c), bool(score > alpha))
