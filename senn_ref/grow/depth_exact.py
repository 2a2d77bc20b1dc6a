"""Exact gains of an inserted layer: on a grown copy (generic Schur formula) and in closed form.

The generic gain grows a copy with :func:`senn_ref.grow.insert_layer.insert_layer` and calls
:func:`senn_ref.grow.width_gain.gain_exact` with ``new_index`` = the inserted parameters.  The
closed form needs no grown copy: the new parameters' GGN-factor columns come from the per-unit
formulas of :mod:`senn_ref.grow.depth_rows` (``new_rows``), the old ones are the original
network's, and the same Schur routine evaluates the gain.  One Jacobian of the original network
then serves every candidate ``(B, s)``.  ``derivations/17-depth.md`` section 6;
``tests/test_depth.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_network, check_scalar, check_str_option
from ..fisher.exact import check_metric, ggn_factor
from ..score import WHITENING_TOL, default_rcond, mean_loss_grad, whitened_residual
from .depth_rows import PARAM_SETS, consumer_side, new_rows
from .insert_layer import check_insertion, insert_layer
from .residual import WidthContext, kept_svd


def _check_params(params) -> str:
    """``params`` must be one of the names of ``PARAM_SETS`` ("vc", "vcl", "all")."""
    return check_str_option(params, PARAM_SETS, "params")


def depth_index(grown, record, params: str = "all") -> np.ndarray:
    """Flat positions (int64) in ``grown`` of the inserted parameters of ``params`` ("vc", "vcl",
    "all"), from the :class:`Growth` ``record`` of :func:`insert_layer`.  17-depth.md section 6."""
    _check_params(params)
    lin, act = record.added_layers
    sl = grown.param_slices()
    keys = [f"{lin if n in ('W', 'b') else act}.{n}" for n in PARAM_SETS[params]]
    return np.concatenate([np.arange(sl[k].start, sl[k].stop) for k in keys])


def depth_gain_exact(net, X, Y, loss, position, B, s=None, damping=0.0, metric: str = "euclidean",
                     params: str = "all") -> float:
    """Exact Schur gain ``r_p^T S_p^+ r_p`` of the inserted parameters ``p`` (``params``: "all" =
    B, s, v, c, l; "vc"; "vcl"), on a copy of ``net`` grown by :func:`insert_layer` with
    ``(B (k, k), s (k,))``, by :func:`senn_ref.grow.width_gain.gain_exact` (grown coordinates:
    the other parameters are the grown network's, consumer rewritten).  ``net`` is unchanged.
    17-depth.md section 6; ``tests/test_depth.py::test_closed_form_equals_generic``."""
    from .width_gain import gain_exact
    check_network(net)
    _check_params(params)
    trial = net.copy()
    rec = insert_layer(trial, position, B, s)
    return gain_exact(trial, X, Y, loss, depth_index(trial, rec, params), damping=damping, metric=metric)


def closed_form_context(net, X, Y, loss, position, B, s=None, damping=0.0, metric: str = "euclidean",
                        params: str = "vc") -> WidthContext:
    """The :class:`WidthContext` of the parameterisation ``Phi`` (17-depth.md section 6): old
    parameters = ``net``'s own, in its coordinates (its GGN factor), new = ``params`` of the
    inserted layers with closed-form factor columns ``w / sqrt(N)``."""
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    _check_params(params)
    i, _, _, B, s, _ = check_insertion(net, position, B, s)
    value, g_o = mean_loss_grad(net, X, Y, loss)
    B_o = ggn_factor(net, X, loss, metric=metric, Y=Y)
    side = consumer_side(net, X, Y, loss, i, metric)
    names = PARAM_SETS[params]
    N = side.N
    rows = new_rows(side, B, s, side.q, names)                       # (N, R, m)
    B_p = rows.reshape(-1, rows.shape[-1]) / np.sqrt(N)
    g_p = new_rows(side, B, s, side.e, names).sum(axis=0) / N
    out = net.forward(X)
    h, miss = whitened_residual(loss, out, Y, metric, return_residual=True)
    b = h.reshape(-1) / np.sqrt(N) if miss <= WHITENING_TOL else None
    full = np.concatenate([B_o, B_p], axis=1)
    P = B_o.shape[1]
    U_o, s_o, Vt_o = kept_svd(B_o)
    tau = default_rcond(full.shape) * (np.linalg.norm(full, 2) if full.size else 0.0)
    lam = float(loss.ceiling(out.reshape(N, -1), Y, metric))
    return WidthContext(full, np.concatenate([g_o, g_p]), b, np.arange(P, P + B_p.shape[1]),
                        np.arange(P), None, delta, tau, U_o, s_o, Vt_o, float(value), lam)


def depth_gain_closed(net, X, Y, loss, position, B, s=None, damping=0.0, metric: str = "euclidean",
                      params: str = "vc") -> float:
    """Closed-form exact gain of the inserted ``params`` ("vc" default, "vcl", "all") without
    growing the network: the Schur gain with the old parameters in ``net``'s own coordinates and
    the new columns from the per-unit closed forms (module docstring), evaluated by
    :mod:`senn_ref.grow.width_gain`'s Schur routine.  Equals :func:`depth_gain_exact` with the
    same ``params`` for ``damping = 0`` ("vc"/"vcl": except before a zero-padded conv, where the
    grown network's old set holds the non-redundant shift s); for ``damping > 0`` it is the gain
    of the parameterisation ``Phi`` of 17-depth.md section 6.  X (N,) + in_shape, B (k, k), s (k,).
    ``tests/test_depth.py::test_closed_form_equals_generic``."""
    from .width_gain import _exact
    ctx = closed_form_context(net, X, Y, loss, position, B, s, damping, metric, params)
    return _exact(ctx, ctx.residual())[0]
