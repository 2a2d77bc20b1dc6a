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

from ._validate import check_option, check_scalar
from .fisher.exact import check_metric, exact
from .natural_gradient import natural_gradient

CURVATURES = ("exact", "cg", "kfac")
EXACT_OPTIONS = ("rcond",)
CG_OPTIONS = ("tol", "maxiter", "x0")


@dataclass
class EtaDetails:
    """Everything behind one exact score: ``g`` (P,), natural gradient ``u = (F + delta I)^+ g``
    (P,), ``eta = g^T u``, ``F`` (P, P) undamped, its eigenvalues ``eigvals`` (P,) ascending,
    ``rank`` (eigenvalues kept by the cut-off; P when damped), ``loss`` (mean loss value)."""
    g: np.ndarray
    u: np.ndarray
    eta: float
    F: np.ndarray
    eigvals: np.ndarray
    rank: int
    loss: float


def _check_options(options: dict, allowed: tuple, curvature: str) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for curvature={curvature!r}; "
                         f"allowed: {list(allowed)}")


def mean_loss_grad(net, X, Y, loss) -> tuple[float, np.ndarray]:
    """``(L, g)``: mean loss and its flat gradient ``g = (1/N) sum_n J_n^T e_n`` (P,)."""
    out = net.forward(X)
    N = out.shape[0]
    value, E = loss.value_and_grad(out.reshape(N, -1), Y)
    return value, net.backward(E.reshape(out.shape) / N).flat_grad()


def default_rcond(P: int) -> float:
    """Relative eigenvalue cut-off of the undamped pseudo-inverse: ``max(P, 1) * 1e3 * eps``.

    Rounding in ``F`` perturbs every eigenvalue by about ``eps ||F|| sqrt(P)``;
    eigenvalues below ``rcond * lambda_max`` are treated as zero (10-expansion-score.md
    section 7)."""
    return max(P, 1) * 1e3 * np.finfo(np.float64).eps


def eta_exact_details(net, X, Y, loss, damping: float = 0.0, metric: str = "euclidean",
                      rcond: float | None = None) -> EtaDetails:
    """Exact score from the dense GGN: ``eta = g^T (F + delta I)^+ g`` via ``F = V diag(s) V^T``.

    ``u = V diag(1 / (s_i + delta)) V^T g`` over the kept eigenpairs: all of them
    when ``delta > 0``; for ``delta = 0`` those with ``s_i > rcond * max(s)``
    (``rcond`` defaults to :func:`default_rcond`).  Since ``g`` lies in
    ``range(F)`` for the GGN (10-expansion-score.md section 6), the pseudo-inverse
    is the right generalised inverse.  Shapes: X (N,) + in_shape, Y the loss's
    targets.  See ``derivations/10-expansion-score.md`` sections 1 and 7.
    """
    check_metric(metric, Y)
    delta = check_scalar(damping, "damping", minimum=0.0)
    value, g = mean_loss_grad(net, X, Y, loss)
    F = exact(net, X, loss, metric=metric, Y=Y)
    P = F.shape[0]
    s, V = np.linalg.eigh(F)
    s_max = float(s[-1]) if P else 0.0
    if delta > 0:
        keep = np.ones(P, dtype=bool)
    else:
        rc = default_rcond(P) if rcond is None else check_scalar(rcond, "rcond", minimum=0.0)
        keep = s > rc * s_max if s_max > 0 else np.zeros(P, dtype=bool)
    coeff = V.T @ g
    inv = np.zeros(P)
    inv[keep] = 1.0 / (s[keep] + delta)
    u = V @ (inv * coeff)
    eta = float(np.sum(inv * coeff * coeff))
    return EtaDetails(g, u, eta, F, s, int(keep.sum()), value)


def eta(net, X, Y, loss, curvature: str = "exact", damping: float = 0.0, metric: str = "euclidean",
        **options) -> float:
    """Natural expansion score ``eta = g^T (F + delta I)^+ g`` (float, >= 0).

    curvature : "exact" (dense GGN + eigendecomposition; option ``rcond``),
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
