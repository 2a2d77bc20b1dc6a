"""The natural expansion score  eta = g^T (F + delta I)^+ g  and its ceiling lambda_M.

``g`` is the gradient of the mean loss ``L = (1/N) sum_n l_n`` (P,), ``F`` the GGN
``(1/N) sum_n J_n^T M_n J_n`` (P, P) for the chosen output metric, ``delta >= 0``
the Tikhonov damping.  ``eta / 2`` is the decrease of the quadratic model
``L + g^T u + 1/2 u^T F u`` at its minimiser ``u = -F^+ g``; ``eta`` is the rate
``-dL/dt`` along the natural-gradient flow; ``0 <= eta <= lambda_M``.
Derivations: ``derivations/10-expansion-score.md``.  Tests: ``tests/test_score.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_float_array, check_flag, check_network, check_scalar, check_str_option
from .fisher.exact import check_metric, ggn_factor
from .losses.base import check_loss
from .natural_gradient import natural_gradient

CURVATURES = ("exact", "cg", "kfac")
EXACT_OPTIONS = ("rcond",)
CG_OPTIONS = ("tol", "maxiter", "x0")
KFAC_OPTIONS = ("mode", "damping_mode", "include_rational", "n_samples", "rng", "pi")


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
    check_network(net)
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


def whitened_residual(loss, outputs: np.ndarray, Y, metric: str, return_residual: bool = False):
    """``h`` (N, r) with ``R_n h_n = e_n``: ``h_n = R_n^+ e_n`` for the metric factor ``R_n`` (K, r).

    The closed form of each loss, :meth:`senn_ref.losses.base.Loss.whitened`: ``h = e``
    (euclidean, and true MSE), ``h_n = e_n / sqrt(p_n)`` elementwise (true softmax
    cross-entropy), ``h_n = [1]`` or ``[0]`` (empirical).  Exact because ``e_n`` lies in
    ``range(M_n) = range(R_n)`` for every metric the losses offer (10-expansion-score.md
    section 6); then ``g = B^T h / sqrt(N)`` with ``B`` from :func:`senn_ref.fisher.ggn_factor`,
    and ``||h||^2 / N = lambda_M`` (the ceiling terms, to rounding).

    With ``return_residual=True`` also the whitening miss, the largest over n of
    ``max(||R_n h_n - e_n||, ||e_n - P_n e_n||) / ||e_n||`` after subtracting the rounding
    level ``c max(1, ||e_n||)`` of ``e_n``'s entries, with ``c = max(K, r) eps``, ``R_n`` from
    ``loss.metric_sqrt`` (as ``B`` is built) and ``P_n`` the projector onto the left singular
    vectors of ``R_n`` with singular values above ``c max(1, ||R_n||_2)``; ``inf`` if not
    finite.  The first term checks ``g = B^T b``; the second flags an ``e_n`` that needs
    directions of ``R_n`` below its rounding level (a target class with ``sqrt(p) < c``,
    softmax logit gaps above ~70), where ``h_n`` is huge and the output-space evaluation
    loses accuracy: callers then use the parameter-space path (section 7).
    """
    check_loss(loss)
    check_metric(metric, Y)
    check_flag(return_residual, "return_residual")
    outputs = as_float_array(outputs, "outputs")
    if outputs.ndim < 2:
        raise ValueError(f"outputs: expected (N,) + out_shape with at least 2 dimensions, got shape "
                         f"{outputs.shape}")
    out = outputs.reshape(outputs.shape[0], -1)
    H = loss.whitened(out, Y, metric)
    if not return_residual:
        return H
    if metric == "euclidean":
        return H, 0.0
    E = loss.output_grad(out, Y)
    R = np.asarray(loss.metric_sqrt(out, Y, metric))
    U, sv, _ = np.linalg.svd(R, full_matrices=False)
    level = max(R.shape[1], R.shape[2]) * np.finfo(np.float64).eps
    Uk = U * (sv > level * np.maximum(sv[:, :1], 1.0))[:, None, :]          # R_n's reliable directions
    outside = E - np.matmul(Uk, np.matmul(Uk.transpose(0, 2, 1), E[:, :, None]))[:, :, 0]
    with np.errstate(invalid="ignore", over="ignore"):
        through = np.matmul(R, H[:, :, None])[:, :, 0] - E
    miss = np.maximum(np.linalg.norm(through, axis=1), np.linalg.norm(outside, axis=1))
    scale = np.linalg.norm(E, axis=1)
    miss = np.maximum(miss - level * np.maximum(scale, 1.0), 0.0)          # beyond e_n's own rounding
    rel = np.where(scale > 0, miss / np.where(scale > 0, scale, 1.0), np.where(miss > 0, np.inf, 0.0))
    worst = float(np.max(rel, initial=0.0))
    return H, (worst if np.isfinite(worst) else float("inf"))


#: largest relative whitening residual for which the output-space path is used
WHITENING_TOL = 1e-8


def eta_exact_details(net, X, Y, loss, damping: float = 0.0, metric: str = "euclidean",
                      rcond: float | None = None) -> EtaDetails:
    """Exact score ``eta = g^T (F + delta I)^+ g`` from the SVD of a factor ``F = B^T B``.

    ``B`` (N r, P) has rows ``R_n^T J_n / sqrt(N)`` (``senn_ref.fisher.ggn_factor``);
    ``B = U diag(sigma) V^T`` keeps the singular values ``sigma_i > rcond * sigma_max``
    (``rcond`` defaults to :func:`default_rcond`).  Two evaluations, both exact in exact
    arithmetic (10-expansion-score.md section 7):

    * output space (used when the whitening miss of :func:`whitened_residual` is at most
      ``WHITENING_TOL``): ``g = B^T b`` with ``b = h / sqrt(N)``,
      ``c = U_r^T b``, ``eta = sum_i c_i^2 sigma_i^2 / (sigma_i^2 + delta)`` and
      ``u = V_r diag(sigma_i / (sigma_i^2 + delta)) c``.  Its rounding error is about
      ``eps * lambda`` however small ``sigma_min`` is, so ``eta <= lambda_M`` holds to rounding;
    * parameter space (otherwise, e.g. softmax probabilities below ~1e-31 under the true
      metric): with ``a = V_r^T g`` and ``g_perp = g - V_r a``,
      ``eta = sum_i a_i^2 / (sigma_i^2 + delta) + ||g_perp||^2 / delta`` (the last term
      only for ``delta > 0``; for ``delta = 0`` the pseudo-inverse drops it).

    Shapes: X (N,) + in_shape, Y the loss's targets.  ``derivations/10-expansion-score.md``
    sections 1 and 7; ``tests/test_score.py``.
    """
    check_network(net)
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    value, g = mean_loss_grad(net, X, Y, loss)
    B = ggn_factor(net, X, loss, metric=metric, Y=Y)
    outputs = net.forward(X)
    N = outputs.shape[0]
    h, residual = whitened_residual(loss, outputs, Y, metric, return_residual=True)
    U, sigma, Vt = np.linalg.svd(B, full_matrices=False)
    rc = default_rcond(B.shape) if rcond is None else check_scalar(rcond, "rcond", minimum=0.0)
    keep = sigma > rc * sigma[0] if sigma.size and sigma[0] > 0 else np.zeros(sigma.shape, dtype=bool)
    s = sigma[keep]
    if residual <= WHITENING_TOL:
        c = U[:, keep].T @ (h.reshape(-1) / np.sqrt(N))
        eta = float(np.sum(c * c * (s * s / (s * s + delta))))
        u = Vt[keep].T @ (s * c / (s * s + delta))
    else:
        a = Vt[keep] @ g
        eta = float(np.sum(a * a / (s * s + delta)))
        u = Vt[keep].T @ (a / (s * s + delta))
        if delta > 0:
            g_perp = g - Vt[keep].T @ a
            eta += float(g_perp @ g_perp) / delta
            u = u + g_perp / delta
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
    check_network(net)
    check_str_option(curvature, CURVATURES, "curvature")
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    if curvature == "exact":
        _check_options(options, EXACT_OPTIONS, curvature)
        return eta_exact_details(net, X, Y, loss, delta, metric, **options).eta
    if curvature == "cg":
        _check_options(options, CG_OPTIONS, curvature)
        u, g, _, _ = natural_gradient(net, X, Y, loss, damping=delta, metric=metric, **options)
        return float(g @ u)
    _check_options(options, KFAC_OPTIONS, curvature)
    from .kfac import kfac_eta  # lazy: K-FAC is a separate module
    total, _ = kfac_eta(net, X, Y, loss, damping=delta, metric=metric, **options)
    return float(total)


def ceiling(net, X, Y, loss, metric: str = "euclidean") -> float:
    """``lambda_M = (1/N) sum_n e_n^T M_n^+ e_n`` at the network outputs (``loss.ceiling``).

    For every GGN score with this metric, ``0 <= eta <= lambda_M`` (any damping);
    for MSE ``lambda = 2 L``.  See ``derivations/10-expansion-score.md`` section 4.
    """
    check_network(net)
    check_loss(loss)
    check_metric(metric, Y)
    out = net.forward(X)
    return float(loss.ceiling(out.reshape(out.shape[0], -1), Y, metric))
