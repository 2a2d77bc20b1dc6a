"""Pruning scores (senn-math section 9): freeze score, removal cost and OBS compensation.

For a curvature ``F_d = F + delta I`` (the whole network's dense GGN, or one layer's K-FAC
block), gradient ``g``, weights ``w`` and a block ``c`` of parameters with the rest ``r``:

    S_c = [F_d]_cc - F_cr [F_d]_rr^+ F_rc        (Schur complement; = ([F_d^-1]_cc)^-1 = P_c)
    r_c = g_c - F_cr [F_d]_rr^+ g_r              (residual gradient)
    u_c = S_c^+ r_c                              (= [F_d^-1 g]_c for delta > 0)

* freeze score   eta - eta_{-c} = r_c^T S_c^+ r_c = u_c^T P_c u_c;
* removal cost   (t_c - u_c)^T S_c (t_c - u_c) = 2 [min_{d_c = -t_c} m(d) - min_d m(d)],
  m(d) = g^T d + 1/2 d^T F_d d, with the pruning displacement ``t_c`` (the block's weights);
* saliency       t_c^T S_c t_c = 2 min { 1/2 d^T F_d d : d_c = -t_c }  (the OBS model change);
* OBS step       d_c = -t_c,  d_r = [F_d]_rr^+ F_rc t_c.

The block of a hidden unit is its outgoing weights (its consumer columns).  ``incoming``
says what happens to the unit's own incoming parameters ``z`` (producer row and bias,
per-unit activation parameters): ``"free"`` (senn-math 9: they are part of ``r``) or
``"fixed"`` (``c = b + z`` with ``t_z = 0``: they are held, as removal does - the OBS default,
since :func:`~.prune_neurons.prune_neurons` discards any change to them).
``delta = 0`` uses pseudo-inverses (derivations/18-pruning.md section 3 shows every identity
above survives).  The exact forms run on the GGN factor ``B`` (``F = B^T B``) with the
machinery of ``residual.py``; the K-FAC forms are in ``pruning_kfac.py``.
``derivations/18-pruning.md``; tests in ``tests/test_pruning.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .._validate import check_positive_int, check_scalar, check_str_option
from ..fisher.exact import check_metric
from ..kfac.damping import factored_damping
from ..layers.conv2d import Conv2D
from ..score import default_rcond
from .prune_neurons import check_units
from .residual import apply_w, kept_svd, width_context
from .structure import check_path, hidden_path, unit_layers

CURVATURES = ("exact", "kfac")
INCOMING = ("free", "fixed")
SCOPES = ("network", "consumer")


@dataclass
class PruningScores:
    """Scores of the unit groups of one hidden layer (18-pruning.md sections 2-5).

    freeze, removal, saliency, eta_without : (G,) per group;  eta : the score of the scope
    (whole network for "exact"/"network", the consumer's block otherwise);  groups : tuple of
    tuples of unit indices;  curvature, damping, incoming, scope : the options used;
    units : the layer's number of units."""
    freeze: np.ndarray
    removal: np.ndarray
    saliency: np.ndarray
    eta_without: np.ndarray
    eta: float
    groups: tuple
    curvature: str
    damping: float
    incoming: str
    scope: str
    units: int = 0


def check_groups(groups, n_units: int) -> tuple:
    """``None`` -> every unit alone; else a non-empty sequence of unit-index groups (each checked
    like :func:`check_units`, except that a group may hold every unit).  18-pruning.md section 1."""
    if groups is None:
        return tuple((u,) for u in range(n_units))
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__") or len(groups) == 0:
        raise ValueError(f"groups: expected a non-empty list of unit-index lists, got {groups!r}")
    return tuple(tuple(int(u) for u in check_units(grp, n_units, "groups entry", leave_one=False))
                 for grp in groups)


def _check_index_args(net, path, units) -> np.ndarray:
    """The public index functions' checks: ``path`` the current :class:`HiddenPath` of ``net``,
    ``units`` distinct in-range unit indices (any number, possibly every unit)."""
    check_path(net, path)
    return check_units(units, path.units, leave_one=False)


def outgoing_index(net, path, units) -> np.ndarray:
    """Flat positions (net.get_flat() order) of the outgoing weights of ``units``: consumer
    ``W[:, consumer_columns(units)]`` (Dense) or ``W[:, units]`` (Conv2D), row-major, in the
    given unit order.  ``path`` = ``hidden_path(net, layer)`` (current), ``units`` distinct
    ints in ``0..U-1`` (TypeError/ValueError naming ``path``/``units`` otherwise).
    18-pruning.md section 1."""
    _check_index_args(net, path, units)
    return _outgoing_index(net, path, units)


def _outgoing_index(net, path, units) -> np.ndarray:
    cons = net.layers[path.consumer]
    W = cons.params["W"]
    units = np.asarray(units, dtype=np.int64)
    sel = units if isinstance(cons, Conv2D) else path.consumer_columns(units)
    start = net.param_slices()[f"{cons.name}.W"].start
    return start + np.arange(W.size).reshape(W.shape)[:, sel].reshape(-1)


def incoming_index(net, path, units) -> np.ndarray:
    """Flat positions of the units' own parameters: producer rows ``W[units]``, ``b[units]`` and
    every per-unit activation parameter; arguments checked as for :func:`outgoing_index`
    (18-pruning.md section 1)."""
    _check_index_args(net, path, units)
    return _incoming_index(net, path, units)


def _incoming_index(net, path, units) -> np.ndarray:
    units = np.asarray(units, dtype=np.int64)
    sl = net.param_slices()
    out = []
    for la in (net.layers[path.producer], *unit_layers(net, path)):
        for k in la.param_names:
            p = la.params[k]
            out.append(sl[f"{la.name}.{k}"].start + np.arange(p.size).reshape(p.shape)[units].reshape(-1))
    return np.concatenate(out)


def _check_common(net, layer, damping, metric, Y, curvature, incoming, scope, pi):
    path = hidden_path(net, layer)
    delta = check_scalar(damping, "damping", minimum=0.0)
    check_metric(metric, Y)
    for value, allowed, name in ((curvature, CURVATURES, "curvature"), (incoming, INCOMING, "incoming"),
                                 (scope, SCOPES, "scope")):
        check_str_option(value, allowed, name)
    factored_damping(np.eye(1), np.eye(1), delta, pi)        # validates pi whatever the curvature
    return path, delta


def _exact_setup(net, X, Y, loss, path, delta, metric, scope):
    """Shared context for the exact forms restricted to ``scope`` (18-pruning.md section 4):
    (ctx over the scope's columns, scope flat indices, theta)."""
    # width_context builds B, g, the whitened residual and the cut-off once; its new/old split
    # (here a placeholder block) is replaced per group by _exact_group
    ctx = width_context(net, X, Y, loss, _outgoing_index(net, path, [0]), delta, metric)
    P = net.num_params()
    if scope == "network":
        idx = np.arange(P)
    else:
        sl = net.param_slices()
        cons = net.layers[path.consumer]
        idx = np.concatenate([np.arange(sl[f"{cons.name}.{k}"].start, sl[f"{cons.name}.{k}"].stop)
                              for k in cons.param_names])
    B = ctx.B[:, idx]
    smax = np.linalg.norm(B, 2) if B.size else 0.0
    ctx = replace(ctx, B=B, g=ctx.g[idx], tau=default_rcond(B.shape) * smax)
    return ctx, idx, net.get_flat()


def _block(net, path, group, incoming, idx, theta):
    """Local (scope) positions of the block c, its target t_c and the rest."""
    out = _outgoing_index(net, path, group)
    glob = out if incoming == "free" else np.concatenate([out, _incoming_index(net, path, group)])
    target = np.concatenate([theta[out], np.zeros(glob.size - out.size)])
    pos = np.full(theta.size, -1, dtype=np.int64)
    pos[idx] = np.arange(idx.size)
    local = pos[glob]
    if np.any(local < 0):
        raise ValueError("incoming: 'fixed' needs scope='network' (the unit's incoming parameters "
                         "lie outside the consumer's block)")
    rest = np.setdiff1d(np.arange(idx.size), local)
    return local, target, rest


def _exact_group(ctx, local, target, rest):
    """(freeze, removal, saliency, eta_without, OBS d over the scope) of one block, from the
    factor: ``Q = W_r^{1/2} B_c`` gives ``S_c = Q^T Q + delta I`` (18-pruning.md section 4)."""
    delta = ctx.delta
    U_o, s_o, Vt_o = kept_svd(ctx.B[:, rest])
    cg = replace(ctx, new=local, old=rest, U_o=U_o, s_o=s_o, Vt_o=Vt_o)
    Q = apply_w(U_o, s_o, delta, ctx.B[:, local], 0.5)
    U_q, s_q, Vt_q = kept_svd(Q, ctx.tau)
    if ctx.b is not None:
        c = U_q.T @ apply_w(U_o, s_o, delta, ctx.b, 0.5)
        u = Vt_q.T @ (s_q * c / (s_q * s_q + delta))
        freeze = float(np.sum(c * c * s_q * s_q / (s_q * s_q + delta)))
    else:
        r = cg.residual()
        a = Vt_q @ r
        u = Vt_q.T @ (a / (s_q * s_q + delta))
        if delta > 0:
            u = u + (r - Vt_q.T @ a) / delta
        freeze = float(r @ u)

    def quad(x):
        return float(np.sum((s_q * (Vt_q @ x)) ** 2) + delta * (x @ x))

    d = np.zeros(ctx.B.shape[1])
    d[local] = -target
    d[rest] = Vt_o.T @ (s_o / (s_o * s_o + delta) * (U_o.T @ (ctx.B[:, local] @ target)))
    return freeze, quad(target - u), quad(target), cg.eta_before(), d


def pruning_scores(net, X, Y, loss, layer, damping=0.0, metric: str = "euclidean",
                   curvature: str = "exact", groups=None, incoming: str = "free",
                   scope: str = "network", pi=1.0) -> PruningScores:
    """Freeze score, removal cost and saliency of every unit (or unit group) of a hidden layer.

    net, X (N,) + in_shape, Y, loss : as for :func:`senn_ref.score.eta`; ``layer`` the index of
    the producer; damping delta >= 0; metric "euclidean" | "true" | "empirical".
    curvature : "exact" (dense GGN factor ``B`` (N r, P); ``scope`` "network" (all parameters)
        or "consumer" (only the consumer's W, b)) or "kfac" (the consumer's K-FAC block
        ``(G + sqrt(d)/pi I) (x) (A + pi sqrt(d) I)``, :mod:`.pruning_kfac`; ``pi`` as in
        :func:`senn_ref.kfac.factored_damping`).
    groups : None (each unit alone, G = units) or a list of unit-index lists (scored jointly).
    incoming : "free" | "fixed" (module docstring; "fixed" only with the exact network scope,
        and immaterial under block-diagonal K-FAC).
    Returns :class:`PruningScores` with (G,) arrays, formulas in the module docstring.
    ``derivations/18-pruning.md`` sections 2-5; ``tests/test_pruning.py``.
    """
    path, delta = _check_common(net, layer, damping, metric, Y, curvature, incoming, scope, pi)
    grps = check_groups(groups, path.units)
    if curvature != "kfac" and incoming == "fixed" and scope != "network":
        raise ValueError("incoming: 'fixed' needs scope='network'")
    prep = _prepare(net, X, Y, loss, path, delta, metric, curvature, scope, pi)
    return _scores(net, path, prep, grps, delta, curvature, incoming, scope)


def _prepare(net, X, Y, loss, path, delta, metric, curvature, scope, pi):
    """The curvature setup that :func:`pruning_scores` and :func:`obs_compensation` both start
    from (they may share it while ``net`` is unchanged): the consumer's damped K-FAC block
    ``(A_d, G_d, V, Wf)`` or the exact ``(ctx, idx, theta)`` of :func:`_exact_setup`."""
    if curvature == "kfac":
        from .pruning_kfac import kfac_block
        return kfac_block(net, X, Y, loss, path, delta, metric, pi)
    return _exact_setup(net, X, Y, loss, path, delta, metric, scope)


def _scores(net, path, prep, grps, delta, curvature, incoming, scope) -> PruningScores:
    """:class:`PruningScores` of the checked groups ``grps`` from a :func:`_prepare` setup."""
    if curvature == "kfac":
        from .pruning_kfac import kfac_pruning_scores
        return kfac_pruning_scores(net, path, prep, grps, delta, incoming)
    ctx, idx, theta = prep
    rows = [_exact_group(ctx, *_block(net, path, grp, incoming, idx, theta))[:4] for grp in grps]
    U_a, s_a, Vt_a = kept_svd(ctx.B)
    eta = replace(ctx, old=np.arange(idx.size), U_o=U_a, s_o=s_a, Vt_o=Vt_a).eta_before()
    arr = np.array(rows).reshape(len(grps), 4)
    return PruningScores(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], eta, grps, curvature, delta,
                         incoming, scope, path.units)


def _obs(net, path, prep, grp, curvature, incoming) -> np.ndarray:
    """The (P,) OBS update of the checked unit tuple ``grp`` from a :func:`_prepare` setup."""
    if curvature == "kfac":
        from .pruning_kfac import kfac_obs
        return kfac_obs(net, path, prep, grp)
    ctx, idx, theta = prep
    d = np.zeros(theta.size)
    d[idx] = _exact_group(ctx, *_block(net, path, grp, incoming, idx, theta))[4]
    return d


def scores_and_compensation(net, X, Y, loss, layer, damping=0.0, metric: str = "euclidean",
                            curvature: str = "exact"):
    """``(scores, compensation)``: ``scores`` = :func:`pruning_scores` (each unit alone,
    ``incoming="free"``, scope "network", ``pi = 1``) and ``compensation(units)`` =
    :func:`obs_compensation` (``incoming="fixed"``, same scope and ``pi``) of the unchanged
    ``net``, both from one curvature setup instead of two (what a pruning round needs:
    ``senn_ref.grow.pruning_round``).  Arguments checked as for :func:`pruning_scores`.
    ``derivations/18-pruning.md`` section 7; ``tests/test_pruning.py::
    test_shared_setup_equals_the_public_functions_bit_for_bit``."""
    path, delta = _check_common(net, layer, damping, metric, Y, curvature, "free", "network", 1.0)
    prep = _prepare(net, X, Y, loss, path, delta, metric, curvature, "network", 1.0)
    scores = _scores(net, path, prep, check_groups(None, path.units), delta, curvature, "free", "network")

    def compensation(units) -> np.ndarray:
        return _obs(net, path, prep, tuple(int(u) for u in check_units(units, path.units)), curvature,
                    "fixed")
    return scores, compensation


def pruning_candidates(scores: PruningScores, tau, eta_c=None, min_width: int = 1) -> list:
    """The groups that senn-math 9 allows to prune, best first: group g passes iff

        freeze_g < tau * eta_c   and   removal_g < tau * eta_c,

    and removing it leaves at least ``min_width`` units; sorted by increasing removal cost
    (ties: freeze).  ``scores`` a :class:`PruningScores` (G groups); ``tau`` >= 0; ``eta_c``
    the current score (default ``scores.eta``; pass the same curvature's network score when
    the scores are per block); ``min_width`` >= 1.  Returns a list of unit tuples.  The scores
    of different groups are not additive: prune the first, then re-score (as a growth round
    does).  ``derivations/18-pruning.md`` section 7;
    ``tests/test_pruning.py::test_pruning_candidates``.
    """
    if not isinstance(scores, PruningScores):
        raise TypeError(f"scores: expected PruningScores, got {type(scores).__name__}")
    tau = check_scalar(tau, "tau", minimum=0.0)
    eta_c = scores.eta if eta_c is None else check_scalar(eta_c, "eta_c", minimum=0.0)
    min_width = check_positive_int(min_width, "min_width")
    limit = tau * eta_c
    ok = [g for g in range(len(scores.groups))
          if scores.freeze[g] < limit and scores.removal[g] < limit
          and scores.units - len(scores.groups[g]) >= min_width]
    ok.sort(key=lambda g: (scores.removal[g], scores.freeze[g]))
    return [scores.groups[g] for g in ok]


def obs_compensation(net, X, Y, loss, layer, units, damping=0.0, metric: str = "euclidean",
                     curvature: str = "exact", incoming: str = "fixed", scope: str = "network",
                     pi=1.0) -> np.ndarray:
    """Optimal-Brain-Surgeon update ``d`` (P,) for pruning ``units`` (flat order before pruning).

    ``d_b = -w_b`` on the units' outgoing weights, ``d_z = 0`` on their incoming parameters
    (``incoming="fixed"``, the default; "free" lets them move as senn-math 9 states it),
    ``d_r = [F_d]_rr^+ F_rc t_c`` on the rest of the scope, 0 outside it: the minimiser of
    ``1/2 d^T F_d d`` subject to ``d_c = -t_c``.  curvature "exact" (scope "network" or
    "consumer") or "kfac" (within the consumer's block: ``D_R = W_C A_CR A_RR^+`` with the
    damped ``A``; 18-pruning.md section 5).  Pass it to ``prune_neurons(..., compensation=d)``.
    Other arguments as in :func:`pruning_scores`.  ``derivations/18-pruning.md`` section 2;
    ``tests/test_pruning.py::test_obs_is_kkt_minimiser``.
    """
    path, delta = _check_common(net, layer, damping, metric, Y, curvature, incoming, scope, pi)
    grp = tuple(int(u) for u in check_units(units, path.units))
    if curvature != "kfac" and incoming == "fixed" and scope != "network":
        raise ValueError("incoming: 'fixed' needs scope='network'")
    return _obs(net, path, _prepare(net, X, Y, loss, path, delta, metric, curvature, scope, pi), grp,
                curvature, incoming)
