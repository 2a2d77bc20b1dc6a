"""Damping and inverses of Kronecker-factored curvature, never in place.

* Tikhonov:  ``F + delta I``  (:func:`tikhonov`).
* Factored Tikhonov (Martens & Grosse 2015):  ``(A + pi sqrt(delta) I) (x) (G + sqrt(delta)/pi I)``
  with ``pi = 1`` or the trace-norm ``pi = sqrt((tr A / dim A) / (tr G / dim G))``
  (:func:`factored_damping`, :func:`trace_norm_pi`).  Its expansion is
  ``G (x) A + delta I + pi sqrt(delta) I (x) A ... `` - it over-damps compared with exact damping.
* Exact damping of the Kronecker product, ``(G (x) A + delta I)^-1 vec(V)``, through the
  eigendecompositions ``G = U diag(lam) U^T``, ``A = Q diag(mu) Q^T``:
  ``X = U [ (U^T V Q) / (lam_i mu_j + delta) ] Q^T`` (:func:`kron_solve_exact`).

Inverses use the symmetric eigendecomposition.  Eigenvalues ``<= dim * eps * max|lam|``
(``eps`` = float64 machine epsilon, numpy's rank tolerance) count as exact zeros and get
a pseudo-inverse (zero) instead of a huge reciprocal; this is the path for
exactly singular factors (inactive units, ``N < in+1``).  If the kept spectrum's
condition number exceeds :data:`COND_LIMIT` (1e12) a :class:`CurvatureWarning` is
issued - the inverse is then dominated by rounding and more damping is needed.
``derivations/11-kfac.md`` section 6; ``tests/test_kfac_damping.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_scalar
from ..fallbacks import NumericalFallback, warn_fallback

#: condition number (after damping) above which an inverse is reported as unreliable
COND_LIMIT = 1e12
EPS = np.finfo(np.float64).eps


def zero_tolerance(dim: int, scale=1.0):
    """``dim * eps * scale``: the zero tolerance of :func:`sym_eig` for a symmetric PSD
    (dim, dim) matrix whose largest eigenvalue is ``scale`` (an eigenvalue at most this is
    rounding noise; ``scale`` may be an array).  One definition for every rank cut-off that must
    agree with it (``grow/kfac_proposal.py``, ``grow/pruning_kfac.py``).  11-kfac.md section 6."""
    return dim * EPS * scale


class CurvatureWarning(NumericalFallback):
    """A curvature inverse is not the inverse asked for: ``reason`` "ill-conditioned" (the damped
    spectrum's condition number ``value`` exceeds :data:`COND_LIMIT`, the inverse is used anyway)
    or "pseudo-inverse" (``value`` eigenvalues of a *damped* factor or block were at the zero
    tolerance and got no step; only reported where asked, ``report_cut=True``, as the K-FAC
    optimiser does).  A :class:`senn_ref.fallbacks.NumericalFallback`, hence a RuntimeWarning;
    logged by the trainer (``derivations/22-run-checkpoints.md`` section 5)."""


def _square(M, name: str) -> np.ndarray:
    M = as_float_array(M, name, ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {M.shape}")
    return M


def _delta(delta) -> float:
    return check_scalar(delta, "damping", minimum=0.0)


def tikhonov(M, delta) -> np.ndarray:
    """``M + delta I`` as a new array; ``M`` (D, D) is not modified.  11-kfac.md section 6."""
    M = _square(M, "matrix")
    return M + _delta(delta) * np.eye(M.shape[0])


def trace_norm_pi(A, G) -> float:
    """``pi = sqrt((tr A / dim A) / (tr G / dim G))`` (Martens & Grosse 2015, section 6.3);
    1 when either trace is zero.  Derived in 11-kfac.md section 6."""
    A, G = _square(A, "A"), _square(G, "G")
    ta, tg = np.trace(A) / A.shape[0], np.trace(G) / G.shape[0]
    if ta <= 0.0 or tg <= 0.0:
        return 1.0
    return float(np.sqrt(ta / tg))


def factored_damping(A, G, delta, pi=1.0):
    """``(A + pi sqrt(delta) I, G + sqrt(delta)/pi I)`` as new arrays.

    ``A`` (a, a), ``G`` (g, g); ``pi`` a positive number or ``"trace"`` for
    :func:`trace_norm_pi`.  The Kronecker product of the result is the
    factored-Tikhonov approximation of ``G (x) A + delta I`` (11-kfac.md section 6;
    ``tests/test_kfac_damping.py::test_factored_damping_equals_dense_solve``).
    """
    A, G = _square(A, "A"), _square(G, "G")
    delta = _delta(delta)
    if isinstance(pi, str):
        if pi != "trace":
            raise ValueError(f"unknown pi {pi!r}; use a positive number or 'trace'")
        pi = trace_norm_pi(A, G)
    pi = check_scalar(pi, "pi", minimum=0.0, strict=True)
    s = np.sqrt(delta)
    return A + pi * s * np.eye(A.shape[0]), G + (s / pi) * np.eye(G.shape[0])


def _psd_spectrum(M: np.ndarray, name: str):
    """Eigen-decomposition of the symmetric part of one matrix (D, D) or a stack (U, D, D),
    with the zero tolerance ``D * eps * max|lam|`` applied per matrix and a ValueError for a
    clearly negative eigenvalue (naming the matrix, or the first bad block of a stack)."""
    lam, U = np.linalg.eigh(0.5 * (M + np.swapaxes(M, -1, -2)))
    tol = zero_tolerance(M.shape[-1], np.abs(lam).max(axis=-1, initial=0.0))
    bad = lam[..., 0] < -np.maximum(tol, 1e-300) * 1e3
    if np.any(bad):
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape) if bad.ndim else ()
        where = f"{name} {idx[0]}" if idx else name
        raise ValueError(f"{where}: not positive semi-definite (smallest eigenvalue {lam[idx][0]:.3e}, "
                         f"largest {lam[idx][-1]:.3e})")
    return np.where(lam <= np.expand_dims(tol, -1), 0.0, lam), U


def sym_eig(M, name: str = "factor"):
    """Eigenvalues (D,) ascending and eigenvectors (D, D) of the symmetric part of ``M``.

    Eigenvalues within the zero tolerance ``dim * eps * max|lam|`` are set to 0;
    a clearly negative eigenvalue (a non-PSD factor) raises ValueError.  11-kfac.md section 6.
    """
    return _psd_spectrum(_square(M, name), name)


def _reciprocal(values: np.ndarray, name: str) -> np.ndarray:
    """``1/values`` where ``values > 0``, 0 elsewhere; warns when the kept range exceeds COND_LIMIT."""
    kept = values > 0.0
    out = np.zeros_like(values)
    out[kept] = 1.0 / values[kept]
    if kept.any():
        cond = values[kept].max() / values[kept].min()
        if cond > COND_LIMIT:
            warn_fallback(CurvatureWarning, f"{name}: condition number {cond:.3e} > {COND_LIMIT:.0e} after "
                          f"damping; its inverse is unreliable - increase the damping", "ill-conditioned",
                          cond, stacklevel=3)
    return out


def _report_cut(cut: int, total: int, name: str) -> None:
    """The pseudo-inverse fallback of a damped factor: ``cut`` of ``total`` eigenvalues at the
    zero tolerance got 0 instead of a reciprocal (``report_cut=True`` callers only)."""
    if cut:
        warn_fallback(CurvatureWarning, f"{name}: {cut} of {total} eigenvalues at or below the zero tolerance "
                      f"after damping; pseudo-inverse used (those directions get no step) - increase the "
                      f"damping", "pseudo-inverse", cut, stacklevel=3)


def sym_inverse(M, name: str = "factor", report_cut: bool = False) -> np.ndarray:
    """(Pseudo-)inverse ``U diag(1/lam) U^T`` of a symmetric PSD ``M`` (D, D); zero eigenvalues
    (see :func:`sym_eig`) get 0.  Warns (:class:`CurvatureWarning`) above :data:`COND_LIMIT`,
    and with ``report_cut=True`` (``M`` a damped factor that should be invertible) when any
    eigenvalue got 0.  11-kfac.md section 6;
    ``tests/test_kfac_damping.py::test_pseudo_inverse_of_singular_factors``, ``tests/test_fallbacks.py``."""
    lam, U = sym_eig(M, name)
    if report_cut:
        _report_cut(int(np.count_nonzero(lam == 0.0)), lam.size, name)
    return (U * _reciprocal(lam, name)) @ U.T


def _check_v(A, G, V) -> np.ndarray:
    V = as_float_array(V, "V (gradient matrix)", ndim=2)
    if V.shape != (G.shape[0], A.shape[0]):
        raise ValueError(f"V (gradient matrix): expected shape {(G.shape[0], A.shape[0])} "
                         f"= (dim G, dim A), got {V.shape}")
    return V


def kron_solve_factored(A, G, V, delta, pi=1.0) -> np.ndarray:
    """``X = (G + sqrt(d)/pi I)^-1 V (A + pi sqrt(d) I)^-1`` (out, in+1), i.e. the row-major
    ``vec(X) = [(G_d) (x) (A_d)]^-1 vec(V)``; pseudo-inverses for singular factors.
    ``A`` (a, a), ``G`` (g, g), ``V`` (g, a).  11-kfac.md section 6."""
    A, G = _square(A, "A"), _square(G, "G")
    V = _check_v(A, G, V)
    A_d, G_d = factored_damping(A, G, delta, pi)
    return sym_inverse(G_d, "G (damped)") @ V @ sym_inverse(A_d, "A (damped)")


def kron_solve_exact(A, G, V, delta) -> np.ndarray:
    """``X`` (out, in+1) with row-major ``vec(X) = (G (x) A + delta I)^+ vec(V)``.

    Uses ``(G (x) A) vec(V) = vec(G V A)`` and the two eigendecompositions, so the
    Kronecker product is never formed: ``X = U [(U^T V Q) / (lam_i mu_j + delta)] Q^T``.
    With ``delta = 0`` pairs where ``lam_i`` or ``mu_j`` is a zero eigenvalue get 0
    (the Moore-Penrose inverse, since ``(G (x) A)^+ = G^+ (x) A^+``).
    ``A`` (a, a), ``G`` (g, g), ``V`` (g, a).  11-kfac.md section 6 eq. (6.1);
    ``tests/test_kfac_damping.py::test_exact_damping_equals_dense_solve``.
    """
    A, G = _square(A, "A"), _square(G, "G")
    V = _check_v(A, G, V)
    delta = _delta(delta)
    mu, Q = sym_eig(A, "A")
    lam, U = sym_eig(G, "G")
    prod = lam[:, None] * mu[None, :]
    if delta == 0.0:
        prod = np.where((lam[:, None] > 0) & (mu[None, :] > 0), prod, 0.0)
    inv = _reciprocal((prod + delta).ravel(), "G (x) A + delta I").reshape(prod.shape)
    return U @ ((U.T @ V @ Q) * inv) @ Q.T


class DampedKronInverse:
    """A reusable damped inverse of ``G (x) A`` (eigendecompositions computed once).

    ``damping_mode="factored"`` stores ``G_d^+`` and ``A_d^+``; ``"exact"`` stores the
    eigenpairs.  ``apply(V)`` returns the (out, in+1) solution for a gradient matrix
    ``V`` (out, in+1).  11-kfac.md sections 6-7.
    """

    def __init__(self, A, G, delta, damping_mode: str = "factored", pi=1.0) -> None:
        A, G = _square(A, "A"), _square(G, "G")
        self.delta = _delta(delta)
        if damping_mode not in ("factored", "exact"):
            raise ValueError(f"unknown damping_mode {damping_mode!r}; choose one of ['exact', 'factored']")
        self.mode = damping_mode
        self.shape = (G.shape[0], A.shape[0])
        if damping_mode == "factored":
            A_d, G_d = factored_damping(A, G, self.delta, pi)
            self.A_inv = sym_inverse(A_d, "A (damped)")
            self.G_inv = sym_inverse(G_d, "G (damped)")
        else:
            self.mu, self.Q = sym_eig(A, "A")
            self.lam, self.U = sym_eig(G, "G")
            prod = self.lam[:, None] * self.mu[None, :]
            if self.delta == 0.0:
                prod = np.where((self.lam[:, None] > 0) & (self.mu[None, :] > 0), prod, 0.0)
            self.inv = _reciprocal((prod + self.delta).ravel(), "G (x) A + delta I").reshape(prod.shape)

    def apply(self, V) -> np.ndarray:
        V = np.asarray(V, dtype=np.float64)
        if V.shape != self.shape:
            raise ValueError(f"V: expected shape {self.shape}, got {V.shape}")
        if self.mode == "factored":
            return self.G_inv @ V @ self.A_inv
        return self.U @ ((self.U.T @ V @ self.Q) * self.inv) @ self.Q.T


def block_inverse(B, delta, rcond: float | None = None, report_cut: bool = False) -> np.ndarray:
    """Per-block pseudo-inverses ``(B_u + delta I)^+`` (U, k, k) of PSD blocks ``B`` (U, k, k).

    Eigenvalues of ``B_u + delta I`` at or below ``rcond * max eigenvalue`` count as zero
    (``rcond=None``: the :func:`sym_eig` tolerance ``k * eps``).  Warns
    (:class:`CurvatureWarning`, at most once per call) when a kept spectrum's
    condition number exceeds :data:`COND_LIMIT`, and with ``report_cut=True`` when any eigenvalue
    of some ``B_u + delta I`` was cut.  ``B`` is not modified.
    13-rational-curvature.md sections 3-4.
    """
    B = as_float_array(B, "blocks B", ndim=3)
    if B.shape[1] != B.shape[2]:
        raise ValueError(f"blocks B: expected shape (U, k, k), got {B.shape}")
    delta = _delta(delta)
    lam, U = _psd_spectrum(B, "block")          # all blocks in one batched call
    vals = lam + delta
    if rcond is not None:
        vals = np.where(vals <= rcond * vals.max(axis=1, initial=0.0)[:, None], 0.0, vals)
    kept = vals > 0
    inv = np.zeros_like(vals)
    inv[kept] = 1.0 / vals[kept]
    big = np.where(kept, vals, 0.0).max(axis=1)
    small = np.where(kept, vals, np.inf).min(axis=1)
    worst = float(np.max(np.where(kept.any(axis=1), big / small, 0.0), initial=0.0))
    out = np.einsum("upk,uk,uqk->upq", U, inv, U)
    if report_cut:
        _report_cut(int(kept.size - np.count_nonzero(kept)), kept.size, "per-unit blocks (damped)")
    if worst > COND_LIMIT:
        warn_fallback(CurvatureWarning, f"per-unit block: condition number {worst:.3e} > {COND_LIMIT:.0e} after "
                      f"damping; its inverse is unreliable - increase the damping", "ill-conditioned", worst)
    return out


def block_solve(B, g, delta, rcond: float | None = None) -> np.ndarray:
    """Per-block pseudo-solves ``x_u = (B_u + delta I)^+ g_u``; ``B`` (U, k, k), ``g`` (U, k) -> (U, k).
    Cut-off and warning as in :func:`block_inverse`.  13-rational-curvature.md sections 3-4."""
    g = as_float_array(g, "g (block gradients)", ndim=2)
    Binv = block_inverse(B, delta, rcond)
    if g.shape != Binv.shape[:2]:
        raise ValueError(f"g (block gradients): expected shape {Binv.shape[:2]}, got {g.shape}")
    return np.einsum("upq,uq->up", Binv, g)
