"""Claim 9: the rate bound over recursive expansion rounds with the exact Fisher.

A round (senn-math 8, ``derivations/19-criterion.md`` sections 2 and 4) on a random small
network first brought near a minimum by damped Gauss-Newton steps (:func:`fit`), with random
``tau``, ``alpha_rel`` (bound at most MAX_BOUND) and damping > 0, and no parameter update: draw a few
random one-unit proposals on random hidden layers, take the one with the largest exact gain
(``grow.width_gain.gain_exact`` on a grown copy), judge it with ``grow.criterion.decide``
against the exact ``eta_c`` (``score.eta``) and the ceiling, apply it (``add_neurons``) if
accepted, repeat until a proposal is rejected.  The number of additions ``N_s`` must stay
below ``rate_bound(tau, alpha_rel) = 1 + ln(1/alpha_rel)/ln(1 + tau)`` (checked: max
``N_s / bound`` < 1); along the way ``eta`` must grow by exactly the accepted gains and stay
<= lambda.  The round stops after ``floor(bound) + 1`` additions, enough to see a violation.

The same rounds scored with block-diagonal K-FAC (``kfac.kfac_eta`` before and after each
proposal) are measured, not judged: how often ``N_s`` reaches the bound and how often the K-FAC
score exceeds lambda during a round.
"""
from __future__ import annotations

from importlib import import_module

import numpy as np

from .. import kfac, score
from ..grow import criterion
from ..grow import width_gain as wg
from .cases import producers, random_damping, random_problem, random_units
from .report import Outcome

add_mod = import_module("senn_ref.grow.add_neurons")        # the package re-exports the function

TAUS = (0.05, 0.1, 0.2, 0.5, 1.0)
N_PROPOSALS = 6
MAX_BOUND = 30.0
SUM_TOL, CEILING_TOL = 1e-8, 1e-10


def _exact_scorer(pb, d):
    def eta_of(net):
        return score.eta(net, pb.X, pb.Y, pb.loss, curvature="exact", damping=d, metric=pb.metric)

    def gain_of(grown, rec, eta_c):
        return wg.gain_exact(grown, pb.X, pb.Y, pb.loss, rec.new_index, d, pb.metric)
    return eta_of, gain_of


def _kfac_scorer(pb, d):
    def eta_of(net):
        return float(kfac.kfac_eta(net, pb.X, pb.Y, pb.loss, damping=d, metric=pb.metric)[0])

    def gain_of(grown, rec, eta_c):
        return eta_of(grown) - eta_c
    return eta_of, gain_of


def one_round(pb, rng, tau: float, alpha_rel: float, scorer) -> dict:
    """Run one recursive round (module docstring) on a copy of ``pb.net``; returns
    {additions, bound, lam, eta_before, eta_after, gain_sum, max_eta}."""
    eta_of, gain_of = scorer
    net = pb.net.copy()
    lam = score.ceiling(net, pb.X, pb.Y, pb.loss, metric=pb.metric)
    bound = criterion.rate_bound(tau, alpha_rel)
    eta_c = eta_before = max_eta = eta_of(net)
    adds, gain_sum = 0, 0.0
    while adds <= int(np.floor(bound)):
        best = None
        for _ in range(N_PROPOSALS):
            hidden = producers(net)
            h = hidden[int(rng.integers(len(hidden)))]
            grown = net.copy()
            rec = add_mod.add_neurons(grown, h, *random_units(rng, net, h, 1))
            gain = gain_of(grown, rec, eta_c)
            if best is None or gain > best[0]:
                best = (gain, grown)
        if not criterion.decide(best[0], eta_c, lam, tau, alpha_rel).accepted:
            break
        net, adds, gain_sum = best[1], adds + 1, gain_sum + best[0]
        eta_c = eta_of(net)
        max_eta = max(max_eta, eta_c)
    return {"additions": adds, "bound": bound, "lam": lam, "eta_before": eta_before, "eta_after": eta_c,
            "gain_sum": gain_sum, "max_eta": max_eta}


def fit(pb, steps: int = 12, damping: float = 1e-3) -> None:
    """Damped Gauss-Newton steps ``theta -= (F + delta I)^+ g`` (``score.eta_exact_details``'s u),
    halving a step that does not lower the loss, so that a round starts where growth happens in
    SENN: near a minimum of the current architecture (eta_c small, lambda not)."""
    metric = "euclidean" if pb.metric == "empirical" else pb.metric
    net = pb.net
    for _ in range(steps):
        det = score.eta_exact_details(net, pb.X, pb.Y, pb.loss, damping=damping, metric=metric)
        theta = net.get_flat()
        for t in (1.0, 0.5, 0.25, 0.125):
            net.set_flat(theta - t * det.u)
            if net.loss_and_grad(pb.X, pb.Y, pb.loss)[0] < det.loss:
                break
        else:
            net.set_flat(theta)
            return


def _draw(rng):
    """A random problem, tau, alpha_rel (redrawn until the bound is at most MAX_BOUND, so that a
    round reaching it stays cheap) and a damping delta > 0 (see cases.well_posed)."""
    pb = random_problem(rng, N=int(rng.integers(10, 40)), max_width=int(rng.integers(1, 4)))
    fit(pb)
    while True:
        tau = float(TAUS[int(rng.integers(len(TAUS)))])
        alpha_rel = float(10 ** rng.uniform(-3.0, -0.5))
        if criterion.rate_bound(tau, alpha_rel) <= MAX_BOUND:
            return pb, tau, alpha_rel, random_damping(rng, 0.0)


def claim_rate_bound(rng, trials: int) -> Outcome:
    """Claim 9 (module docstring): ``trials`` exact rounds (N_s / (1 + ln(1/alpha_rel)/ln(1 + tau))
    < 1) and ``trials`` K-FAC rounds (measured).  ``derivations/19-criterion.md`` section 2."""
    out = Outcome(trials)
    frac, sums, ceil, side = [], [], [], []
    for _ in range(trials):
        pb, tau, alpha_rel, d = _draw(rng)
        r = one_round(pb, rng, tau, alpha_rel, _exact_scorer(pb, d))
        frac.append(r["additions"] / r["bound"])
        sums.append(abs(r["eta_after"] - r["eta_before"] - r["gain_sum"]) / r["lam"])
        ceil.append((r["max_eta"] - r["lam"]) / r["lam"])
        side.append(f"{r['additions']}<{r['bound']:.1f}")
    out.add("additions / rate bound, exact Fisher (must be < 1)", frac, 1.0, strict=True)
    out.add("|eta_after - eta_before - sum of accepted gains| / lambda", sums, SUM_TOL)
    out.add("(max eta in the round - lambda) / lambda", ceil, CEILING_TOL)
    out.measurements["additions < bound per exact round"] = ", ".join(side)
    reached, over, kf = 0, 0, []
    for _ in range(trials):
        pb, tau, alpha_rel, d = _draw(rng)
        if pb.metric == "empirical":
            pb.metric = "euclidean"
        r = one_round(pb, rng, tau, alpha_rel, _kfac_scorer(pb, d))
        reached += r["additions"] >= r["bound"]
        over += r["max_eta"] > r["lam"]
        kf.append(r["additions"] / r["bound"])
    out.measurements["K-FAC rounds with additions >= bound"] = f"{reached} of {trials}"
    out.measurements["K-FAC rounds whose score exceeded lambda"] = f"{over} of {trials}"
    out.measurements["K-FAC max additions / bound"] = float(max(kf))
    return out
