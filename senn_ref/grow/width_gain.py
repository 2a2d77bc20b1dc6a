"""The exact width gain of new parameters and its two cheaper lower bounds (dense GGN).

Split a grown network's parameters into old ``o`` and new ``p`` (``new_index``).  With
``u = (F_oo + delta I)^+ g_o`` and the residual gradient ``r_p = g_p - F_po u``
(:func:`senn_ref.grow.residual.residual_gradient`):

* exact (Schur) gain   Delta eta  = r_p^T S_p^+ r_p,
                       S_p = F_pp + delta I - F_po (F_oo + delta I)^+ F_op,
  which equals ``score.eta(after) - score.eta(before)`` (block elimination);
* conditioned bound    r_p^T S_c^+ r_p,  S_c = F_pp + delta I - F_pc (F_cc + delta I)^+ F_cp
  for a subset ``c`` of the old parameters (e.g. the consuming layer's);
* lower bound          r_p^T (F_pp + delta I)^+ r_p;

lower bound <= conditioned bound <= exact gain.  All three are evaluated in output space
from the GGN factor ``B`` as projections of the whitened residual (stable: every term is a
square times a weight in [0, 1]), or in parameter space when the whitening fails.
``derivations/15-width-gain.md``; tests in ``tests/test_width_gain.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_network
from ..score import default_rcond
from .residual import apply_w, check_flat_index, kept_svd, quad_output, quad_param, width_context


@dataclass
class WidthGains:
    """All width gains of one grown network from one Jacobian (15-width-gain.md section 6).

    exact : Delta eta (float);  conditioned : r_p^T S_c^+ r_p, or None without ``condition_on``;
    lower_bound : r_p^T (F_pp + delta I)^+ r_p;  residual : r_p (k,) in ``new_index`` order;
    eta_before : g_o^T (F_oo + delta I)^+ g_o;  lam : the ceiling lambda_M (unchanged by a
    function-preserving growth);  rank : singular values of the Schur factor kept;
    output_space : whether the output-space forms were used."""
    exact: float
    conditioned: float | None
    lower_bound: float
    residual: np.ndarray
    eta_before: float
    lam: float
    rank: int
    output_space: bool

    @property
    def eta_after(self) -> float:
        """``eta_before + exact``: the score of the grown network."""
        return self.eta_before + self.exact

    def to_dict(self) -> dict:
        """JSON-friendly summary (the residual as a list)."""
        return {"exact": self.exact, "conditioned": self.conditioned, "lower_bound": self.lower_bound,
                "residual": self.residual.tolist(), "eta_before": self.eta_before, "lam": self.lam,
                "rank": self.rank, "output_space": self.output_space}


def _quad_output(D: np.ndarray, z: np.ndarray, delta: float, tau: float) -> tuple[float, int]:
    """``z^T D (D^T D + delta I)^+ D^T z = sum_i c_i^2 s_i^2 / (s_i^2 + delta)`` with
    ``D = U diag(s) V^T`` (singular values ``> tau`` kept), ``c = U^T z``.  Returns (value, kept)."""
    U, s, _ = kept_svd(D, tau)
    return quad_output(U, s, z, delta), int(s.size)


def _quad_param(D: np.ndarray, r: np.ndarray, delta: float, tau: float) -> tuple[float, int]:
    """``r^T (D^T D + delta I)^+ r = sum_i a_i^2 / (s_i^2 + delta) + ||r_perp||^2 / delta``
    (``a = V^T r``; the last term only for delta > 0), singular values ``> tau`` kept."""
    _, s, Vt = kept_svd(D, tau)
    return quad_param(s, Vt, r, delta), int(s.size)


def _exact(ctx, r) -> tuple[float, int]:
    """Schur gain: ``C = W_o^{1/2} B_p`` has ``S_p = C^T C + delta I`` and ``r_p = C^T W_o^{1/2} b``."""
    C = apply_w(ctx.U_o, ctx.s_o, ctx.delta, ctx.B_p, 0.5)
    if ctx.output_space:
        return _quad_output(C, apply_w(ctx.U_o, ctx.s_o, ctx.delta, ctx.b, 0.5), ctx.delta, ctx.tau)
    return _quad_param(C, r, ctx.delta, ctx.tau)


def _lower(ctx, r) -> float:
    """Lower bound: ``F_pp = B_p^T B_p`` and ``r_p = B_p^T W_o b``."""
    if ctx.output_space:
        return _quad_output(ctx.B_p, apply_w(ctx.U_o, ctx.s_o, ctx.delta, ctx.b, 1.0), ctx.delta, ctx.tau)[0]
    return _quad_param(ctx.B_p, r, ctx.delta, ctx.tau)[0]


def _conditioned(ctx, r) -> float:
    """Conditioned bound: ``D = W_c^{1/2} B_p`` has ``S_c = D^T D + delta I`` and
    ``r_p = D^T W_c^{-1/2} W_o b`` (for delta = 0, W_c is a projection that fixes W_o b)."""
    U_c, s_c, _ = kept_svd(ctx.B[:, ctx.cond], _old_cut(ctx))
    D = apply_w(U_c, s_c, ctx.delta, ctx.B_p, 0.5)
    if ctx.output_space:
        y = apply_w(ctx.U_o, ctx.s_o, ctx.delta, ctx.b, 1.0)
        return _quad_output(D, apply_w(U_c, s_c, ctx.delta, y, -0.5), ctx.delta, ctx.tau)[0]
    return _quad_param(D, r, ctx.delta, ctx.tau)[0]


def _old_cut(ctx) -> float:
    """The absolute cut-off used on B_o, reused for the conditioning block B_c (section 5)."""
    smax = float(ctx.s_o[0]) if ctx.s_o.size else 0.0
    return default_rcond((ctx.B.shape[0], ctx.old.size)) * smax


def width_gains(net, X, Y, loss, new_index, damping=0.0, metric: str = "euclidean",
                condition_on=None) -> WidthGains:
    """Exact gain, conditioned bound, lower bound, residual, eta_before and lambda at once
    (one Jacobian, P forward-mode passes), as a :class:`WidthGains`.

    ``net`` the grown network; X (N,) + in_shape; Y the loss's targets; ``new_index`` int (k,)
    distinct flat positions of the added parameters (``Growth.new_index``); damping delta >= 0
    (0 means pseudo-inverses with the cut-offs of ``score.eta_exact_details``); metric
    "euclidean", "true" or "empirical"; ``condition_on`` None or int (c,) flat positions of old
    parameters (e.g. :func:`layer_flat_index` of the consumer).  Formulas in the module
    docstring.  ``derivations/15-width-gain.md`` sections 2-6;
    ``tests/test_width_gain.py::test_bound_ordering``.
    """
    ctx = width_context(net, X, Y, loss, new_index, damping, metric, condition_on)
    r = ctx.residual()
    exact, rank = _exact(ctx, r)
    cond = None if ctx.cond is None else _conditioned(ctx, r)
    return WidthGains(exact, cond, _lower(ctx, r), r, ctx.eta_before(), ctx.lam, rank, ctx.output_space)


def gain_exact(net, X, Y, loss, new_index, damping=0.0, metric: str = "euclidean") -> float:
    """Exact width gain ``Delta eta = r_p^T S_p^+ r_p`` (float >= 0),

        S_p = F_pp + delta I - F_po (F_oo + delta I)^+ F_op,   r_p = g_p - F_po (F_oo + delta I)^+ g_o,

    equal to ``score.eta(grown) - score.eta(before)`` with the same damping and metric.
    Evaluated as ``z^T P_delta(C) z`` with ``z = W_o^{1/2} b`` (N r,), ``C = W_o^{1/2} B_p`` (N r, k)
    and the damped hat matrix ``P_delta(C) = C (C^T C + delta I)^+ C^T`` (a projection for delta = 0).  Arguments as in
    :func:`width_gains`.  ``derivations/15-width-gain.md`` sections 2 and 5;
    ``tests/test_width_gain.py::test_gain_exact_equals_eta_difference``.
    """
    ctx = width_context(net, X, Y, loss, new_index, damping, metric)
    return _exact(ctx, ctx.residual())[0]


def gain_lower_bound(net, X, Y, loss, new_index, damping=0.0, metric: str = "euclidean",
                     condition_on=None) -> float:
    """Cheap lower bound of the width gain (float >= 0): ``r_p^T (F_pp + delta I)^+ r_p``, or with
    ``condition_on`` (int (c,) flat positions of old parameters) the bound in between,
    ``r_p^T S_c^+ r_p`` with ``S_c = F_pp + delta I - F_pc (F_cc + delta I)^+ F_cp``.  ``r_p`` is
    always the residual against all old parameters.  Arguments as in :func:`width_gains`.
    ``derivations/15-width-gain.md`` sections 3-4;
    ``tests/test_width_gain.py::test_bound_ordering``.
    """
    ctx = width_context(net, X, Y, loss, new_index, damping, metric, condition_on)
    r = ctx.residual()
    return _lower(ctx, r) if ctx.cond is None else _conditioned(ctx, r)


def layer_flat_index(net, layer, exclude=None) -> np.ndarray:
    """Sorted flat positions (int64 (m,)) of every parameter of ``net.layers[layer]`` (``layer``
    an index or a layer name), leaving out ``exclude`` (flat positions, e.g. ``new_index``);
    the ``condition_on`` of the consuming layer's old parameters.
    ``derivations/15-width-gain.md`` section 4; ``tests/test_width_gain.py::test_layer_flat_index``."""
    check_network(net)
    if isinstance(layer, str):
        try:
            layer = net.index_of(layer)
        except KeyError as exc:
            raise KeyError(f"layer: {exc.args[0]}") from None
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"layer: expected an index into net.layers or a layer name, got {type(layer).__name__}")
    if not 0 <= layer < len(net.layers):
        raise ValueError(f"layer: index {layer} out of range 0..{len(net.layers) - 1}")
    P = net.num_params()
    ex = np.zeros(0, dtype=np.int64) if exclude is None else check_flat_index(exclude, P, "exclude", True)
    la = net.layers[layer]
    sl = net.param_slices()
    idx = [np.arange(sl[f"{la.name}.{p}"].start, sl[f"{la.name}.{p}"].stop) for p in la.param_names]
    if not idx:
        raise ValueError(f"layer: net.layers[{layer}] ({la.name}) has no parameters")
    return np.setdiff1d(np.concatenate(idx), ex).astype(np.int64)
