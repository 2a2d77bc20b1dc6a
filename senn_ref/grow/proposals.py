"""The best width and depth proposal of one layer: draw candidates, search, score.

For a hidden layer (width) or a consuming layer (depth) this draws ``n_candidates``
candidates, improves them together with :func:`senn_ref.grow.search.search` on a lower bound
of the gain (width: the K-FAC lower bound of ``WidthProposals``; depth: the exact-GGN (v, c)
lower bound of ``DepthProposals``), keeps the best, and reports the
numbers the criterion needs: its lower bound, its exact K-FAC gain (width) and the consuming
layer's K-FAC score.  The exact gain of the chosen proposal, when asked for, is
computed on a copy of the network grown by the real operation.
``derivations/20-proposal-search.md`` section 3; ``tests/test_proposals.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validate import as_float_array, check_network, check_option, check_positive_int, check_rng, check_scalar
from .euclidean_gain import project_units
from .search import SEARCH_METHODS, search

#: what a width proposal is scored with: the natural (K-FAC) gain or the Euclidean one (GradMax-like)
SCORES = ("natural", "euclidean")

#: singular values of an inserted layer's B are kept above this fraction of their mean
#: (the released code clips at 1e-3 of the mean), so B stays invertible during the search
DEPTH_SV_FLOOR = 1e-3
#: :func:`best_depth_proposal` (the trainer's depth proposals) solves for the network's natural
#: gradient with the dense GGN up to this many parameters and by matrix-free CG above
#: (``DepthProposals(natural=...)``).  Not ``depth_gain.EXACT_MAX_PARAMS`` (500, what
#: ``DepthProposals(natural="auto")`` uses when called directly, chosen for its setup cost):
#: the trainer's depth decision is judged against the eta this solve gives
#: (``Proposal.eta_network``), and this cut was set with that change (commit 72a1120); one
#: constant would move the digits-conv demo (382 -> 6162 parameters) from the dense solve to CG
#: between 500 and 2000 parameters and change its logged numbers, so the two stay apart.
ROUND_EXACT_MAX_PARAMS = 2000


@dataclass
class Proposal:
    """One layer's best proposal.

    kind : "width" (add ``params["W"].shape[0]`` units to the layer produced by
        ``net.layers[index]``) or "depth" (insert a layer before ``net.layers[index]``)
    layer : name of ``net.layers[index]``;  params : the operation's arguments
        (width: W, b, act; depth: B, s);  lower_bound : K-FAC lower bound Delta eta';
    kfac_gain : exact K-FAC gain (width; None for depth);  eta_layer : the consuming layer's
        K-FAC score;  initial_best : best lower bound among the unsearched candidates;
    exact_gain : the exact gain, when computed;  eta_network : the network score of the model
        the lower bound belongs to when it is not K-FAC (depth: the exact damped eta)
    """
    kind: str
    index: int
    layer: str
    params: dict
    lower_bound: float
    kfac_gain: float | None
    eta_layer: float
    initial_best: float
    evaluations: int
    exact_gain: float | None = None
    eta_network: float | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"kind": self.kind, "index": self.index, "layer": self.layer,
                "lower_bound": self.lower_bound, "kfac_gain": self.kfac_gain,
                "exact_gain": self.exact_gain, "eta_layer": self.eta_layer,
                "initial_best": self.initial_best, "evaluations": self.evaluations,
                "eta_network_model": self.eta_network, **self.extra}


def _split_width(p: dict):
    act = {k[4:]: v for k, v in p.items() if k.startswith("act.")}
    return p["W"], p["b"], act


def search_subset(N: int, search_batch: int | None, rng) -> np.ndarray | None:
    """Row indices (search_batch,) of the examples the search optimises on, drawn without
    replacement from ``rng`` (sorted), or None when ``search_batch`` is None or >= N.
    ``derivations/20-proposal-search.md`` section 3."""
    N = check_positive_int(N, "N (rows)")
    if search_batch is None:
        return None
    search_batch = check_positive_int(search_batch, "search_batch")
    if search_batch >= N:
        return None
    return np.sort(check_rng(rng, "rng", allow_none=False).choice(N, search_batch, replace=False))


def _check_search_options(n_candidates, rng, method, steps, lr, temperature, search_batch) -> None:
    """The search's own arguments, checked before anything draws from ``rng`` (the contexts check
    the network, data, layer, damping and metric when they are built)."""
    check_positive_int(n_candidates, "n_candidates")
    check_rng(rng, "rng", allow_none=False)
    check_option(method, SEARCH_METHODS, "search method")
    check_positive_int(steps, "search steps", minimum=0)
    check_scalar(lr, "search lr", minimum=0.0, strict=True)
    check_scalar(temperature, "temperature", minimum=0.0, strict=True)
    if search_batch is not None:
        check_positive_int(search_batch, "search_batch")


def _pick(full_scores: np.ndarray, initial_scores: np.ndarray):
    """Index into the stacked (searched points, initial candidates) of the best full-batch score."""
    both = np.concatenate([full_scores, initial_scores])
    both = np.where(np.isfinite(both), both, -np.inf)
    return int(np.argmax(both))


def best_width_proposal(net, X, Y, loss, layer: int, *, n_candidates: int, rng, method: str = "ascent",
                        steps: int = 20, lr: float = 0.1, temperature: float = 0.05,
                        damping: float = 0.0, metric: str = "euclidean", k: int = 1,
                        search_batch: int | None = None, score: str = "natural") -> Proposal:
    """Search ``n_candidates`` new-unit candidates (k units each) for the hidden layer produced by
    ``net.layers[layer]``; returns the best as a :class:`Proposal`.

    X (N,) + in_shape, Y: the scoring batch.  With ``search_batch < N`` the search optimises the
    lower bound on a random subset of ``search_batch`` rows (drawn from ``rng``), then every
    candidate's initial and final point is re-scored on the whole batch and the best of those
    2C points is returned, so the reported scores are whole-batch scores and never below the best
    initial candidate's.  ``score="euclidean"`` searches the Euclidean gain Delta_E of
    :class:`~senn_ref.grow.euclidean_gain.EuclideanWidthProposals` instead (incoming vectors
    on the sphere of radius sqrt(2), projected after every ascent step; ``damping`` and ``metric``
    unused); the proposal's ``lower_bound`` is then Delta_E, ``kfac_gain`` None, ``eta_layer`` the
    consumer's squared gradient norm.  ``derivations/20-proposal-search.md`` section 3,
    ``23-euclidean-gain.md`` section 5; ``tests/test_proposals.py``."""
    check_option(score, SCORES, "score")
    check_network(net)
    _check_search_options(n_candidates, rng, method, steps, lr, temperature, search_batch)
    k = check_positive_int(k, "k (units per candidate)")
    if score == "euclidean":
        from .euclidean_gain import EuclideanWidthProposals

        def context(X_, Y_):
            return EuclideanWidthProposals(net, X_, Y_, loss, layer)
    else:
        from .kfac_proposal import WidthProposals

        def context(X_, Y_):
            return WidthProposals(net, X_, Y_, loss, layer, damping=damping, metric=metric)
    ctx = context(X, Y)
    W, b, act = ctx.random_candidates(n_candidates, rng, k=k)
    params = {"W": W, "b": b, **{f"act.{name}": v for name, v in act.items()}}
    sub = search_subset(int(np.asarray(X).shape[0]), search_batch, rng)
    sctx = ctx if sub is None else context(X[sub], Y[sub])
    project = None
    if score == "euclidean" and method != "langevin":   # MALA keeps detailed balance: the score is
        project = ctx.project                            # scale-invariant, no projection needed

    def objective(p, grad):
        W_, b_, act_ = _split_width(p)
        # the search follows the lower bound; the arrays are the search's own (drawn by
        # random_candidates, moved by finite steps), so WidthProposals.score's per-call checks
        # are skipped (the Euclidean context scores through its checked score)
        if score == "euclidean":
            sc = sctx.score(W_, b_, act_, grad=grad, gain=False)
        else:
            sc = sctx.score_unchecked(W_, b_, act_, grad, False)
        if not grad:
            return sc.lower_bound, None
        grads = {"W": sc.grad_W, "b": sc.grad_b,
                 **{f"act.{name}": g for name, g in (sc.grad_act or {}).items()}}
        return sc.lower_bound, grads

    res = None
    if score == "natural" and method == "ascent" and steps > 0:
        # the same search in one compiled call where it applies (dense k = 1 candidates,
        # derivations/25-compiled-search.md); None otherwise
        from .compiled_search import compiled_width_search
        res = compiled_width_search(sctx, params, steps, lr)
    if res is None:
        res = search(objective, params, method=method, steps=steps, rng=rng, lr=lr, temperature=temperature,
                     project=project)
    if sub is None:
        best = res.best_params()
        initial_best = float(np.max(res.initial))
    else:
        both = {key: np.concatenate([res.params[key], params[key]]) for key in params}
        sc = ctx.score(*_split_width(both), grad=False, gain=False).lower_bound
        j = _pick(sc[:n_candidates], sc[n_candidates:])
        best = {key: v[j].copy() for key, v in both.items()}
        initial_best = float(np.max(sc[n_candidates:]))
    W_b, b_b, act_b = _split_width({key: v[None] for key, v in best.items()})
    if score == "euclidean":            # what is added is the scored point: on the sphere
        W_b, b_b = project_units(W_b, b_b, ctx.radius)
        best = {**best, "W": W_b[0], "b": b_b[0]}
    final = ctx.score(W_b, b_b, act_b, grad=False)
    Wk, bk, actk = _split_width(best)
    if score == "euclidean":
        return Proposal("width", int(layer), net.layers[layer].name, {"W": Wk, "b": bk, "act": actk},
                        float(final.gain[0]), None, float(ctx.eta_layer), initial_best,
                        res.evaluations + (0 if sub is None else 1),
                        extra={"euclidean_gain": float(final.gain[0])})
    return Proposal("width", int(layer), net.layers[layer].name, {"W": Wk, "b": bk, "act": actk},
                    float(final.lower_bound[0]), float(final.gain[0]), float(ctx.eta_layer),
                    initial_best, res.evaluations + (0 if sub is None else 1))


def clip_singular_values(B: np.ndarray, floor: float = DEPTH_SV_FLOOR) -> np.ndarray:
    """``B`` (C, k, k) with every singular value raised to at least ``floor`` times their mean
    (one batched SVD); keeps candidate insertions invertible.
    ``derivations/20-proposal-search.md`` section 3."""
    B = as_float_array(B, "B (candidate insertions)", ndim=3)
    if B.shape[1] != B.shape[2]:
        raise ValueError(f"B (candidate insertions): expected shape (C, k, k), got {B.shape}")
    floor = check_scalar(floor, "floor", minimum=0.0)
    return _clip_singular_values(B, floor)


def _clip_singular_values(B: np.ndarray, floor: float = DEPTH_SV_FLOOR) -> np.ndarray:
    """:func:`clip_singular_values` without the checks (called on every search step)."""
    U, S, Vt = np.linalg.svd(B)
    S = np.maximum(S, floor * S.mean(axis=1, keepdims=True))
    return np.einsum("cij,cj,cjk->cik", U, S, Vt)


def depth_candidates(k: int, n: int, rng, scale: float = 0.5):
    """``n`` candidates ``(B (n, k, k), s (n, k))``: the identity (B = I, s = 0) first, then
    ``B = I + scale G / sqrt(k)`` with ``G`` standard normal and ``s ~ N(0, scale^2)``.
    ``derivations/20-proposal-search.md`` section 3."""
    k = check_positive_int(k, "k (layer width)")
    n = check_positive_int(n, "n (candidates)")
    rng = check_rng(rng, "rng", allow_none=False)
    scale = check_scalar(scale, "scale", minimum=0.0)
    B = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    s = np.zeros((n, k))
    if n > 1:
        B[1:] += scale * rng.standard_normal((n - 1, k, k)) / np.sqrt(k)
        s[1:] = scale * rng.standard_normal((n - 1, k))
    return _clip_singular_values(B), s


def best_depth_proposal(net, X, Y, loss, position: int, *, n_candidates: int, rng, method: str = "ascent",
                        steps: int = 20, lr: float = 0.1, temperature: float = 0.05,
                        damping: float = 0.0, metric: str = "euclidean",
                        search_batch: int | None = None) -> Proposal:
    """Search ``(B, s)`` candidates for a layer inserted before ``net.layers[position]``; with
    ``search_batch`` as :func:`best_width_proposal`.  ``derivations/20-proposal-search.md``
    section 3; ``tests/test_proposals.py``."""
    from .depth_gain import DepthProposals
    check_network(net)
    _check_search_options(n_candidates, rng, method, steps, lr, temperature, search_batch)
    natural = "exact" if net.num_params() <= ROUND_EXACT_MAX_PARAMS else "cg"
    ctx = DepthProposals(net, X, Y, loss, position, damping=damping, metric=metric, natural=natural)
    k = net.layers[position].params["W"].shape[1]
    B, s = depth_candidates(k, n_candidates, rng)
    sub = search_subset(int(np.asarray(X).shape[0]), search_batch, rng)
    sctx = ctx if sub is None else DepthProposals(net, X[sub], Y[sub], loss, position, damping=damping,
                                                  metric=metric, natural=natural)

    def objective(p, grad):
        sc = sctx.score(p["B"], p["s"], grad=grad)
        lb = np.asarray(sc.lower_bound, dtype=np.float64)
        return lb, ({"B": sc.grad_B, "s": sc.grad_s} if grad else None)

    def project(p):
        return {"B": _clip_singular_values(p["B"]), "s": p["s"]}

    if method == "langevin":       # keep detailed balance: no projection, B is checked when scored
        project_fn = None
    else:
        project_fn = project
    res = search(objective, {"B": B, "s": s}, method=method, steps=steps, rng=rng, lr=lr,
                 temperature=temperature, project=project_fn)
    if sub is None:
        best, value, initial_best = res.best_params(), float(res.values[res.best]), float(np.max(res.initial))
    else:
        bB, bs = np.concatenate([res.params["B"], B]), np.concatenate([res.params["s"], s])
        sc = np.asarray(ctx.score(bB, bs).lower_bound, dtype=np.float64)
        j = _pick(sc[:n_candidates], sc[n_candidates:])
        best, value, initial_best = {"B": bB[j].copy(), "s": bs[j].copy()}, float(sc[j]), float(np.max(sc[n_candidates:]))
    return Proposal("depth", int(position), net.layers[position].name, {"B": best["B"], "s": best["s"]},
                    value, None, float(ctx.eta_layer), initial_best,
                    res.evaluations + (0 if sub is None else 1), eta_network=float(ctx.eta))
