"""The landscape of Figure 2: Delta eta' / eta_c over a new unit's location p and scale q.

A candidate unit for the hidden layer of a ``[1, w, 1]`` network has kernel ``1/q`` and bias
``-p/q`` (so its input ``(x - p)/q`` is centred at ``x = p`` with width ``q``).  Its K-FAC lower
bound Delta eta' (``WidthProposals.score``, derivations/16-kfac-proposal.md) divided by the
network's K-FAC score eta_c (``kfac_eta``, the trainer's ``eta_c="network"``), both at the
trainer's scoring damping, is evaluated on a grid of (p, q).  The rational activation
parameters (v, c, l) of the grid's candidates are held fixed at those of the best *optimised*
proposal of the same state (the released code's search: ``config.n_candidates`` random
candidates improved by ``config.search``), so the grid is the slice of the score through it.
The optimised candidates themselves are returned with their own (p, q) and whether they pass
the criterion (Delta eta'/eta_c > tau and Delta eta' > alpha_rel lambda).
"""
from __future__ import annotations

import numpy as np

P_RANGE = (-3.0, 3.0)
LOG10_Q_RANGE = (-1.5, 1.5)


def landscape(net, X, Y, loss, config, rng, n_p: int = 61, n_q: int = 41) -> dict:
    """Grid and optimised candidates of one network state (module docstring).

    net: a Network whose first growable hidden layer has a 1-d input (X (N, 1)); config: the
    run's SENNConfig; rng: numpy Generator.  Returns {"p" (n_p,), "q" (n_q,), "ratio" (n_q, n_p)
    Delta eta'/eta_c, "act" {name: value} used on the grid, "cand_p", "cand_q", "cand_ratio",
    "cand_passed" (C,), "eta_c", "lambda"}.  Formula: derivations/16-kfac-proposal.md sections 2-4."""
    from .. import score
    from ..grow.kfac_proposal import WidthProposals
    from ..grow.search import search
    from ..grow.structure import growable_layers
    from ..kfac import kfac_eta

    damping, metric = config.scoring_damping, config.metric
    ctx = WidthProposals(net, X, Y, loss, growable_layers(net)[0], damping=damping, metric=metric)
    if ctx.candidates.w_shape != (1,):
        raise ValueError(f"net: the landscape needs a 1-d input to the hidden layer, got {ctx.candidates.w_shape}")
    eta_c = float(kfac_eta(net, X, Y, loss, damping=damping, metric=metric)[0])
    lam = float(score.ceiling(net, X, Y, loss, metric=metric))
    names = ctx.act_names
    W, b, act = ctx.random_candidates(config.n_candidates, rng)
    params = {"W": W, "b": b, **{f"act.{k}": v for k, v in act.items()}}

    def objective(p, grad):
        sc = ctx.score(p["W"], p["b"], {k: p[f"act.{k}"] for k in names}, grad=grad)
        if not grad:
            return sc.lower_bound, None
        return sc.lower_bound, {"W": sc.grad_W, "b": sc.grad_b,
                                **{f"act.{k}": g for k, g in (sc.grad_act or {}).items()}}

    res = search(objective, params, method=config.search, steps=config.search_steps, rng=rng,
                 lr=config.search_lr, temperature=config.temperature)
    best_act = {k: float(res.params[f"act.{k}"][res.best, 0]) for k in names}
    p = np.linspace(*P_RANGE, n_p)
    q = np.logspace(*LOG10_Q_RANGE, n_q)
    PP, QQ = np.meshgrid(p, q)
    C = PP.size
    Wg = (1.0 / QQ).reshape(C, 1, 1)
    bg = (-PP / QQ).reshape(C, 1)
    actg = {k: np.full((C, 1), v) for k, v in best_act.items()}
    ratio = (ctx.score(Wg, bg, actg).lower_bound / eta_c).reshape(n_q, n_p)
    w_c = res.params["W"][:, 0, 0]
    b_c = res.params["b"][:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        cand_q = 1.0 / w_c
        cand_p = -b_c / w_c
    passed = (res.values / eta_c > config.tau) & (res.values > config.alpha_rel * lam)
    return {"p": p, "q": q, "ratio": ratio, "act": best_act, "cand_p": cand_p, "cand_q": cand_q,
            "cand_ratio": res.values / eta_c, "cand_passed": passed, "eta_c": eta_c, "lambda": lam}


def unit_locations(net) -> np.ndarray:
    """Centres ``p = -b/w`` of the first hidden layer's units of a net with a 1-d input (width,)."""
    from ..grow.structure import growable_layers
    layer = net.layers[growable_layers(net)[0]]
    w, b = layer.params["W"][:, 0], layer.params["b"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -b / w
