"""The natural expansion score  eta = g^T (F + delta I)^+ g  and its ceiling lambda_M.

``g`` is the gradient of the mean loss ``L = (1/N) sum_n l_n`` (P,), ``F`` the GGN
``(1/N) sum_n J_n^T M_n J_n`` (P, P) for the chosen output metric, ``delta >= 0``
the Tikhonov damping.  ``eta / 2`` is the decrease of the quadratic model
``L + g^T u + 1/2 u^T F u`` at its minimiser ``u = -F^+ g``; ``eta`` is the rate
``-dL/dt`` along the natural-gradient flow; ``0 <= eta <= lambda_M``.
Derivations: ``derivations/10-expansion-score.md``.  Tests: ``tests/test_score.py``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._validate import check_option, check_scalar
from .fisher.exact import check_metric, ggn_factor
from .natural_gradient import natural_gradient

CURVATURES = ("exact", "cg", "kfac")
EXACT_OPTIONS = ("rcond",)
CG_OPTIONS = ("tol", "maxiter", "x0")


@dataclass
class EtaDetails:
    """Everything behind one exact score: ``g`` (P,), natural gradient ``u = (F + delta I)^+ g``
    (P,), ``eta = g^T u``, ``F = B^T B`` (P, P) undamped, the singular values ``sigma`` of the
    factor ``B`` (descending; ``sigma**2`` are the eigenvalues of F that can be nonzero), ``rank``
    (singular values kept by the cut-off), ``loss`` (mean loss)."""
    g: np.ndarray
    u: np.ndarray
    eta: float
    F: np.ndarray
    sigma: np.ndarray
    rank: int
    loss: float


def _check_options(options: dict, allowed: tuple, curvature: str) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for curvature={curvature!r}; "
                         f"allowed: {list(allowed)}")


def mean_loss_grad(net, X, Y, loss) -> tuple[float, np.ndarray]:
    """``(L, g)``: mean loss and its flat gradient ``g = (1/N) sum_n J_n^T e_n`` (P,)
    (backward pass with ``e / N``; 10-expansion-score.md section 1)."""
    value, res = net.loss_and_grad(X, Y, loss)
    return value, res.flat_grad()


def default_rcond(shape: tuple[int, int]) -> float:
    """Relative singular-value cut-off ``max(rows, cols) * eps`` of the factor ``B``.

    The SVD perturbs every singular value of ``B`` by about ``eps * sigma_max``
    (times a modest dimension factor); singular values at or below
    ``rcond * sigma_max`` cannot be told from zero and are dropped
    (the ``numpy.linalg.matrix_rank`` convention; 10-expansion-score.md section 7).
    """
    return max(max(shape), 1) * np.finfo(np.float64).eps


def whitened_residual(loss, outputs: np.ndarray, Y, metric: str) -> np.ndarray:
    """``h`` (N, r) with ``R_n h_n = e_n``: ``h_n = R_n^+ e_n`` for the metric factor ``R_n`` (K, r).

    Euclidean: ``h = e``.  Otherwise a batched pseudo-inverse of ``loss.metric_sqrt``
    that drops singular values of ``R_n`` below ``max(K, r) * eps * max(1, ||R_n||_2)``:
    the entries of the factors are O(1) numbers that cancel (for cross-entropy
    ``R_n = diag(sqrt p) - p sqrt(p)^T`` is O(1) entrywise even when ``||R_n||`` is
    tiny), so their rounding noise is absolute, about ``eps``, and a purely relative
    cut-off would keep the noise direction of the exact null vector ``1``.
    Exact because ``e_n`` lies in ``range(M_n) = range(R_n)`` for every metric the
    losses offer (10-expansion-score.md section 6); then ``g = B^T h / sqrt(N)`` with
    ``B`` from :func:`senn_ref.fisher.ggn_factor`, and ``||h||^2 / N = lambda_M``.
    """
    out = outputs.reshape(outputs.shape[0], -1)
    E = loss.output_grad(out, Y)
    if metric == "euclidean":
        return E
    R = np.asarray(loss.metric_sqrt(out, Y, metric))
    norms = np.linalg.norm(R, ord=2, axis=(1, 2))
    cutoff = max(R.shape[1], R.shape[2]) * np.finfo(np.float64).eps * np.maximum(norms, 1.0)
    rcond = np.where(norms > 0, cutoff / np.where(norms > 0, norms, 1.0), 1.0)
    return np.matmul(np.linalg.pinv(R, rcond=rcond), E[:, :, None])[:, :, 0]


def eta_exact_details(net, X, Y, loss, damping: float = 0.0, metric: str = "euclidean",
                      rcond: float | None = None) -> EtaDetails:
    """Exact score ``eta = g^T (F + delta I)^+ g`` from the SVD of a factor ``F = B^T B``.

    ``B`` (N r, P) has rows ``R_n^T J_n / sqrt(N)`` (``senn_ref.fisher.ggn_factor``) and
    ``g = B^T b`` with ``b = h / sqrt(N)`` stacked from :func:`whitened_residual`.  With
    ``B = U diag(sigma) V^T`` and ``c = U_r^T b``:

        eta = sum_i c_i^2 sigma_i^2 / (sigma_i^2 + delta),
        u   = (F + delta I)^+ g = V_r diag(sigma_i / (sigma_i^2 + delta)) c,

    where ``r`` keeps the singular values ``sigma_i > rcond * sigma_max`` (``rcond``
    defaults to :func:`default_rcond`), for every ``delta >= 0``.  Dropping the others
    is exact: ``g`` lies in ``range(F) = range(B^T)`` (10-expansion-score.md section 6)
    and the dropped singular values are zero in exact arithmetic.  Computing through
    ``b`` (output space) rather than ``V^T g / sigma^2`` keeps the rounding error of
    eta at ``eps * lambda`` however small ``sigma_min`` is; ``eta <= ||b||^2 = lambda_M``
    then holds to rounding (section 7).  ``g`` itself comes from the backward pass and
    is compared with ``B^T b``; a mismatch beyond 1e-6 (targets outside the loss's
    contract) raises a RuntimeWarning.
    Shapes: X (N,) + in_shape, Y the loss's targets.
    See ``derivations/10-expansion-score.md`` sections 1 and 7.
    """
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    value, g = mean_loss_grad(net, X, Y, loss)
    B = ggn_factor(net, X, loss, metric=metric, Y=Y)
    N = X.shape[0]
    b = whitened_residual(loss, net.forward(X), Y, metric).reshape(-1) / np.sqrt(N)
    U, sigma, Vt = np.linalg.svd(B, full_matrices=False)
    rc = default_rcond(B.shape) if rcond is None else check_scalar(rcond, "rcond", minimum=0.0)
    keep = sigma > rc * sigma[0] if sigma.size and sigma[0] > 0 else np.zeros(sigma.shape, dtype=bool)
    s = sigma[keep]
    c = U[:, keep].T @ b
    eta = float(np.sum(c * c * (s * s / (s * s + delta))))
    u = Vt[keep].T @ (s * c / (s * s + delta))
    mismatch = float(np.linalg.norm(B.T @ b - g))
    scale = max(float(sigma[0]) * float(np.linalg.norm(b)) if sigma.size else 0.0, 1e-300)
    if mismatch > 1e-6 * scale:
        warnings.warn(f"the loss gradient is not B^T h (relative mismatch {mismatch / scale:.2e}): "
                      f"e_n is outside range(M_n) for metric={metric!r}; eta uses the part in range",
                      RuntimeWarning, stacklevel=2)
    return EtaDetails(g, u, eta, B.T @ B, sigma, int(keep.sum()), value)


def eta(net, X, Y, loss, curvature: str = "exact", damping: float = 0.0, metric: str = "euclidean",
        **options) -> float:
    """Natural expansion score ``eta = g^T (F + delta I)^+ g`` (float, >= 0).

    curvature : "exact" (dense GGN factor + SVD; option ``rcond``),
                "cg" (matrix-free CG on ``(F + delta I) u = g``; options ``tol`` (default
                1e-10 relative residual), ``maxiter``, ``x0``), or "kfac"
                (``senn_ref.kfac.kfac_eta``; options passed through).
    damping   : delta >= 0.  metric : "euclidean" (default), "true", "empirical".
    X (N,) + in_shape, Y the targets of ``loss``.
    See ``derivations/10-expansion-score.md``.
    """
    if not isinstance(curvature, str):
        raise TypeError(f"curvature: expected a string, got {type(curvature).__name__}")
    check_option(curvature, CURVATURES, "curvature")
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    if curvature == "exact":
        _check_options(options, EXACT_OPTIONS, curvature)
        return eta_exact_details(net, X, Y, loss, delta, metric, **options).eta
    if curvature == "cg":
        _check_options(options, CG_OPTIONS, curvature)
        u, g, _, _ = natural_gradient(net, X, Y, loss, damping=delta, metric=metric, **options)
        return float(g @ u)
    from .kfac import kfac_eta  # lazy: K-FAC is a separate module
    total, _ = kfac_eta(net, X, Y, loss, damping=delta, metric=metric, **options)
    return float(total)


def ceiling(net, X, Y, loss, metric: str = "euclidean") -> float:
    """``lambda_M = (1/N) sum_n e_n^T M_n^+ e_n`` at the network outputs (``loss.ceiling``).

    For every GGN score with this metric, ``0 <= eta <= lambda_M`` (any damping);
    for MSE ``lambda = 2 L``.  See ``derivations/10-expansion-score.md`` section 4.
    """
    check_option(metric, ("euclidean", "true", "empirical"), "metric")
    out = net.forward(X)
    return float(loss.ceiling(out.reshape(out.shape[0], -1), Y, metric))
