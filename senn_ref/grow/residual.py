"""The residual gradient of new parameters:  r_p = g_p - F_po (F_oo + delta I)^+ g_o.

A grown network's parameters split into the new ones ``p`` (``new_index``, flat positions
in ``net.get_flat()`` order) and all others ``o``.  With the GGN factor ``F = B^T B``
(``B`` (N r, P), rows ``R_n^T J_n / sqrt(N)``, :func:`senn_ref.fisher.ggn_factor`) and the
whitened residual ``b`` (N r,) with ``g = B^T b`` (:func:`senn_ref.score.whitened_residual`),

    r_p = B_p^T W_o b,      W_o = delta (B_o B_o^T + delta I)^{-1}     (delta > 0),
                            W_o = I - P_{B_o}                          (delta = 0),

i.e. the new parameters' gradient against the part of the output-space residual that the
current (damped) natural-gradient step on the old parameters leaves unexplained.
:class:`WidthContext` holds everything that several gains share (the Jacobian costs P
forward-mode passes, so it is built once per call).
``derivations/15-width-gain.md`` sections 1 and 5; tests in ``tests/test_width_gain.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_network, check_scalar, refuse_huge_indices
from ..fisher.exact import check_metric, ggn_factor
from ..score import WHITENING_TOL, default_rcond, mean_loss_grad, whitened_residual


def check_flat_index(index, P: int, name: str, allow_empty: bool = False) -> np.ndarray:
    """Validate flat parameter positions: 1-d integers (not bools), distinct, in ``0..P-1``,
    non-empty unless ``allow_empty``.  Returns an int64 copy in the given order.
    ``derivations/15-width-gain.md`` section 7; ``tests/test_width_gain.py::test_errors``."""
    if isinstance(index, (bool, np.bool_)):
        raise TypeError(f"{name}: expected integer flat indices, got a bool")
    arr = np.asarray(index)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64)
        raise ValueError(f"{name}: empty; select at least one parameter")
    refuse_huge_indices(arr, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer flat indices, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array of flat indices, got shape {arr.shape}")
    bad = arr[(arr < 0) | (arr >= P)]
    if bad.size:
        raise ValueError(f"{name}: indices {bad[:5].tolist()} out of range 0..{P - 1} "
                         f"(the network has {P} parameters)")
    arr = arr.astype(np.int64)
    if np.unique(arr).size != arr.size:
        vals, counts = np.unique(arr, return_counts=True)
        raise ValueError(f"{name}: repeated indices {vals[counts > 1][:5].tolist()}")
    return arr


def kept_svd(M: np.ndarray, cut: float | None = None):
    """Thin SVD of ``M`` (m, n) keeping singular values ``> cut``; ``cut=None`` means
    ``default_rcond(M.shape) * sigma_max(M)`` (the cut-off of ``score.eta_exact_details``).
    Returns ``(U_r (m, q), s_r (q,), Vt_r (q, n))``.  15-width-gain.md section 5."""
    if M.shape[1] == 0:
        return np.zeros((M.shape[0], 0)), np.zeros(0), np.zeros((0, 0))
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    if cut is None:
        cut = default_rcond(M.shape) * s[0] if s.size else 0.0
    keep = s > cut if s.size and s[0] > 0 else np.zeros(s.shape, dtype=bool)
    return U[:, keep], s[keep], Vt[keep]


def apply_w(U: np.ndarray, s: np.ndarray, delta: float, x: np.ndarray, power: float) -> np.ndarray:
    """``W^power x`` for ``W = delta (B B^T + delta I)^{-1}`` with ``B = U diag(s) V^T`` (U (m, q)
    orthonormal, s (q,)); for ``delta = 0``, ``W = I - U U^T`` (a projection: every power is W,
    applied twice for re-orthogonalisation).  ``x`` (m,) or (m, j); ``power`` 1, 1/2 or -1/2
    (``W`` is invertible for ``delta > 0``).  15-width-gain.md section 5."""
    if U.shape[1] == 0:
        return x.copy()
    if delta == 0.0:
        y = x - U @ (U.T @ x)
        return y - U @ (U.T @ y)
    w = (delta / (s * s + delta)) ** power
    coef = U.T @ x
    scale = (w - 1.0).reshape((-1,) + (1,) * (coef.ndim - 1))
    return x + U @ (scale * coef)


def quad_output(U: np.ndarray, s: np.ndarray, z: np.ndarray, delta: float) -> float:
    """``sum_i c_i^2 s_i^2 / (s_i^2 + delta)`` with ``c = U^T z``: ``z^T D (D^T D + delta I)^+ D^T z``
    for ``D = U diag(s) V^T`` (a kept SVD).  15-width-gain.md section 5."""
    c = U.T @ z
    return float(np.sum(c * c * (s * s / (s * s + delta))))


def quad_param(s: np.ndarray, Vt: np.ndarray, r: np.ndarray, delta: float) -> float:
    """``sum_i a_i^2 / (s_i^2 + delta) + ||r_perp||^2 / delta`` with ``a = V^T r`` (the last term
    only for delta > 0): ``r^T (D^T D + delta I)^+ r`` for ``D = U diag(s) V^T`` (a kept SVD).
    15-width-gain.md section 5."""
    a = Vt @ r
    value = float(np.sum(a * a / (s * s + delta)))
    if delta > 0:
        perp = r - Vt.T @ a
        value += float(perp @ perp) / delta
    return value


@dataclass
class WidthContext:
    """Shared pieces of the width gains of one grown network (15-width-gain.md section 5).

    B (N r, P) the GGN factor; g (P,) the gradient; b (N r,) the whitened residual scaled by
    1/sqrt(N), or None when the whitening fails (then every form runs in parameter space);
    new (k,), old (P - k,) flat indices (old sorted); cond (c,) the old indices to condition on,
    or None; delta the damping; tau the absolute singular-value cut-off
    ``default_rcond(B.shape) * sigma_max(B)`` for the new-parameter blocks (the cut-off of
    ``score.eta`` on the grown network); (U_o, s_o, Vt_o) the kept SVD of B_o (cut-off of
    ``score.eta`` on the old network); loss_value the mean loss; lam the ceiling lambda_M."""
    B: np.ndarray
    g: np.ndarray
    b: np.ndarray | None
    new: np.ndarray
    old: np.ndarray
    cond: np.ndarray | None
    delta: float
    tau: float
    U_o: np.ndarray
    s_o: np.ndarray
    Vt_o: np.ndarray
    loss_value: float
    lam: float

    @property
    def B_p(self) -> np.ndarray:
        return self.B[:, self.new]

    @property
    def output_space(self) -> bool:
        """True when the whitened residual is valid (the stable output-space forms are used)."""
        return self.b is not None

    def eta_before(self) -> float:
        """``g_o^T (F_oo + delta I)^+ g_o``, evaluated as ``score.eta_exact_details`` does."""
        if self.b is not None:
            return quad_output(self.U_o, self.s_o, self.b, self.delta)
        return quad_param(self.s_o, self.Vt_o, self.g[self.old], self.delta)

    def residual(self) -> np.ndarray:
        """``r_p`` (k,): ``B_p^T W_o b`` (output space) or
        ``g_p - B_p^T U_o diag(s/(s^2+delta)) V_o^T g_o`` (parameter space)."""
        if self.b is not None:
            return self.B_p.T @ apply_w(self.U_o, self.s_o, self.delta, self.b, 1.0)
        s = self.s_o
        coef = s / (s * s + self.delta) * (self.Vt_o @ self.g[self.old])
        return self.g[self.new] - self.B_p.T @ (self.U_o @ coef)


def width_context(net, X, Y, loss, new_index, damping=0.0, metric: str = "euclidean",
                  condition_on=None) -> WidthContext:
    """Validate every argument, then build the :class:`WidthContext` (one Jacobian).
    ``condition_on``: None or old flat indices (disjoint from ``new_index``; may be empty).
    15-width-gain.md sections 5 and 7."""
    check_network(net)
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    P = net.num_params()
    new = check_flat_index(new_index, P, "new_index")
    cond = None
    if condition_on is not None:
        cond = check_flat_index(condition_on, P, "condition_on", allow_empty=True)
        both = np.intersect1d(cond, new)
        if both.size:
            raise ValueError(f"condition_on: indices {both[:5].tolist()} are also in new_index; "
                             f"condition only on old parameters")
    value, g = mean_loss_grad(net, X, Y, loss)
    B = ggn_factor(net, X, loss, metric=metric, Y=Y)
    outputs = net.forward(X)
    N = outputs.shape[0]
    h, miss = whitened_residual(loss, outputs, Y, metric, return_residual=True)
    b = h.reshape(-1) / np.sqrt(N) if miss <= WHITENING_TOL else None
    lam = float(loss.ceiling(outputs.reshape(N, -1), Y, metric))
    mask = np.ones(P, dtype=bool)
    mask[new] = False
    old = np.flatnonzero(mask)
    U_o, s_o, Vt_o = kept_svd(B[:, old])
    smax = np.linalg.norm(B, 2) if B.size else 0.0
    tau = default_rcond(B.shape) * smax
    return WidthContext(B, g, b, new, old, cond, delta, tau, U_o, s_o, Vt_o, float(value), lam)


def residual_gradient(net, X, Y, loss, new_index, damping=0.0, metric: str = "euclidean") -> np.ndarray:
    """Residual gradient of the new parameters, shape (k,) with k = len(new_index):

        r_p = g_p - F_po (F_oo + delta I)^+ g_o = (1/N) sum_n J_{n,p}^T (e_n - M_n J_{n,o} u),
        u = (F_oo + delta I)^+ g_o,

    computed as ``B_p^T W_o b`` (module docstring) when the whitened residual is valid, else in
    parameter space.  ``net`` the grown network; X (N,) + in_shape; Y the loss's targets;
    ``new_index`` int (k,) distinct flat positions (order kept in the result); damping
    delta >= 0; metric "euclidean", "true" or "empirical".
    ``derivations/15-width-gain.md`` section 1;
    ``tests/test_width_gain.py::test_residual_brute_force``.
    """
    return width_context(net, X, Y, loss, new_index, damping, metric).residual()
