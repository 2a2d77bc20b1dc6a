"""Claims 7 and 8: the exact width gain, its bounds, and the gradients of the lower bounds.

Claim 7 (senn-math 11.7), on random networks grown by random units: ``gain_exact`` equals
``eta(grown) - eta(before)`` (same damping and metric; error / lambda <= 1e-8; at delta = 0 only
on instances where undamped scores are well posed, ``cases.well_posed``); the lower bound
never exceeds the conditioned bound, which never exceeds the gain (excess / lambda <= 1e-10);
the lower bound equals the gain (difference / lambda <= 1e-10; delta = 0 again only where well
posed, else a second damping) when the new unit's activation is uncorrelated with every old
Jacobian column (a constructed instance, ``derivations/15-width-gain.md`` section 3); a
duplicate of existing units gains nothing (delta = 0; gain / lambda <= 1e-8).  Claim 8 (11.8):
the analytic gradients of the K-FAC width lower bound (``WidthProposals.score(grad=True)``, in
W, b and the activation parameters) and of the depth lower bound (``DepthProposals.score``, in
B and s) match Richardson central differences along random directions (relative 1e-6).
``derivations/15-width-gain.md``, ``16-kfac-proposal.md`` sections 4-5, ``17-depth.md`` section 7.
"""
from __future__ import annotations

from importlib import import_module

import numpy as np

from .. import score
from ..grow import depth_gain, kfac_proposal
from ..grow import width_gain as wg
from ..testing import relative_error
from .cases import random_damping, random_invertible, random_problem, random_units, well_posed
from .report import Outcome

add_mod = import_module("senn_ref.grow.add_neurons")        # the package re-exports the function

GAIN_TOL, BOUND_TOL, DUPLICATE_TOL, GRAD_TOL = 1e-8, 1e-10, 1e-8, 1e-6


def _grow(pb, h: int, W, b, act):
    grown = pb.net.copy()
    rec = add_mod.add_neurons(grown, h, W, b, act)
    return grown, rec


def _uncorrelated(rng, groups: int):
    """A rational MLP [2, w, K] whose old units ignore input 2 and a new unit ``phi(x_2)``
    (v = 1, c = 0, l = -1/2, odd, no bias) whose activation sums to zero against every old
    Jacobian column: examples come in groups sharing x_1 with x_2 in {1, -1, s, -s},
    s^2 = 2 + sqrt(5) (15-width-gain.md section 3).  Returns (grown, X, Y, loss, record)."""
    from ..architectures import mlp
    from ..losses import mse
    K, w = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    net = mlp([2, w, K], activation="rational", seed=int(rng.integers(2 ** 31)))
    net.layers[0].params["W"][:, 1] = 0.0
    s = np.sqrt(2.0 + np.sqrt(5.0))
    X = np.stack([np.repeat(rng.standard_normal(groups), 4), np.tile([1.0, -1.0, s, -s], groups)], axis=1)
    Y = rng.standard_normal((X.shape[0], K))
    rec = add_mod.add_neurons(net, 0, np.array([[0.0, 1.0]]), np.zeros(1),
                              {"v": np.ones(1), "c": np.zeros(1), "l": np.full(1, -0.5)})
    return net, X, Y, mse(), rec


def claim_width_gain(rng, trials: int) -> Outcome:
    """Claim 7: ``|Delta eta - (eta_after - eta_before)| / lambda``, bound ordering, equality and
    duplicates (module docstring).  ``derivations/15-width-gain.md`` sections 2-6."""
    out = Outcome(trials)
    diff, order, equal, dup = [], [], [], []
    nontrivial = skipped = compared = 0
    for _ in range(trials):
        # tanh half the time: rational units have a nearly null scale direction (13-rational-curvature.md
        # section 3), which makes most undamped rational instances ill-posed (cases.well_posed)
        pb = random_problem(rng, N=int(rng.integers(4, 40)), act="tanh" if rng.random() < 0.5 else None)
        h = pb.hidden[int(rng.integers(len(pb.hidden)))]
        k = int(rng.integers(1, 3))
        grown, rec = _grow(pb, h, *random_units(rng, pb.net, h, k))
        lam = score.ceiling(pb.net, pb.X, pb.Y, pb.loss, metric=pb.metric)
        cons = wg.layer_flat_index(grown, h + 2, exclude=rec.new_index)
        posed = all(well_posed(n, pb.X, pb.Y, pb.loss, pb.metric) for n in (pb.net, grown))
        skipped += not posed
        for d in ((0.0,) if posed else ()) + (random_damping(rng, 0.0),):
            args = (pb.X, pb.Y, pb.loss, rec.new_index, d, pb.metric)
            before = score.eta(pb.net, pb.X, pb.Y, pb.loss, damping=d, metric=pb.metric)
            after = score.eta(grown, pb.X, pb.Y, pb.loss, damping=d, metric=pb.metric)
            gain = wg.gain_exact(grown, *args)
            lower = wg.gain_lower_bound(grown, *args)
            cond = wg.gain_lower_bound(grown, *args, condition_on=cons)
            diff.append(abs(gain - (after - before)) / lam)
            order += [(lower - cond) / lam, (cond - gain) / lam]
            nontrivial += gain > 1e-6 * lam
            compared += 1
        units = np.sort(rng.choice(pb.net.layers[h].params["W"].shape[0], size=1))
        act = {p: pb.net.layers[h + 1].params[p][units].copy() for p in pb.net.layers[h + 1].param_names}
        prod = pb.net.layers[h].params
        twin, rec2 = _grow(pb, h, prod["W"][units].copy(), prod["b"][units].copy(), act)
        dup.append(wg.gain_exact(twin, pb.X, pb.Y, pb.loss, rec2.new_index, 0.0, pb.metric) / lam)
        net, X, Y, loss, rec3 = _uncorrelated(rng, int(rng.integers(4, 10)))
        lam3 = score.ceiling(net, X, Y, loss)
        posed = well_posed(net, X, Y, loss, "euclidean")        # rational units: rarely at delta = 0
        skipped += not posed
        for d in ((0.0,) if posed else (random_damping(rng, 0.0),)) + (random_damping(rng, 0.0),):
            g3 = wg.gain_exact(net, X, Y, loss, rec3.new_index, d)
            equal.append(abs(wg.gain_lower_bound(net, X, Y, loss, rec3.new_index, d) - g3) / lam3)
    out.add("|gain_exact - (eta_after - eta_before)| / lambda", diff, GAIN_TOL)
    out.add("lower <= conditioned <= exact: largest excess / lambda", order, BOUND_TOL)
    out.add("|lower bound - gain| / lambda, uncorrelated new unit", equal, BOUND_TOL)
    out.add("duplicate unit: gain / lambda (delta = 0)", dup, DUPLICATE_TOL)
    out.measurements["non-trivial gains (> 1e-6 lambda)"] = f"{nontrivial} of {compared}"
    out.measurements["delta = 0 comparisons skipped as ill-posed (cases.well_posed)"] = f"{skipped} of {2 * trials}"
    return out


def _richardson(f, h: float) -> np.ndarray:
    """(4 D(h/2) - D(h)) / 3 with D(t) = (f(t) - f(-t)) / (2 t)."""
    def D(t):
        return (f(t) - f(-t)) / (2 * t)
    return (4 * D(h / 2) - D(h)) / 3


def claim_gain_gradient(rng, trials: int) -> Outcome:
    """Claim 8: directional derivatives of the width and depth lower bounds, analytic vs
    Richardson central differences (step 1e-3 width, 1e-4 depth)."""
    out = Outcome(trials)
    width, depth = [], []
    for _ in range(trials):
        pb = random_problem(rng, N=int(rng.integers(6, 20)))
        h = pb.hidden[int(rng.integers(len(pb.hidden)))]
        ctx = kfac_proposal.WidthProposals(pb.net, pb.X, pb.Y, pb.loss, h, damping=random_damping(rng, 0.0),
                                           metric=pb.metric)
        W, b, act = ctx.random_candidates(3, rng, k=int(rng.integers(1, 3)))
        sc = ctx.score(W, b, act, grad=True)
        dW, db = rng.standard_normal(W.shape), rng.standard_normal(b.shape)
        da = {k: rng.standard_normal(v.shape) for k, v in act.items()}
        an = (sc.grad_W * dW).reshape(len(W), -1).sum(axis=1) + np.einsum("ck,ck->c", sc.grad_b, db)
        for key in act:
            an = an + np.einsum("ck,ck->c", sc.grad_act[key], da[key])
        fd = _richardson(lambda t: ctx.score(W + t * dW, b + t * db,
                                             {k: v + t * da[k] for k, v in act.items()}).lower_bound, 1e-3)
        width.append(relative_error(an, fd))
        pos = [i for i, la in enumerate(pb.net.layers) if "W" in la.params]
        i = pos[int(rng.integers(len(pos)))]
        dp = depth_gain.DepthProposals(pb.net, pb.X, pb.Y, pb.loss, i, damping=random_damping(rng, 0.0),
                                       metric=pb.metric)
        kk = dp.k
        B = np.stack([random_invertible(rng, kk) for _ in range(2)])
        s = rng.standard_normal((2, kk))
        sd = dp.score(B, s, grad=True)
        dB, ds = rng.standard_normal(B.shape), rng.standard_normal(s.shape)
        an = np.einsum("cij,cij->c", sd.grad_B, dB) + np.einsum("ci,ci->c", sd.grad_s, ds)
        fd = _richardson(lambda t: dp.score(B + t * dB, s + t * ds).lower_bound, 1e-4)
        depth.append(relative_error(an, fd))
    out.add("width lower bound: analytic vs finite-difference directional derivative", width, GRAD_TOL)
    out.add("depth lower bound: analytic vs finite-difference directional derivative", depth, GRAD_TOL)
    return out
