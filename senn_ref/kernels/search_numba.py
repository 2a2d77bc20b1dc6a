"""The width-proposal search of one dense hidden layer in one Numba call: objective, gradient, Adam.

For ``C`` candidate units (one unit each, ``k = 1``) of a hidden layer ``Dense producer ->
activation -> Dense consumer`` the candidates are packed as rows of ``theta`` (C, P),
``P = F + 1 + A``: the incoming weights ``W`` (F columns), the bias ``b``, then the activation's
own parameters (``A = 3``: rational ``v, c, l``; ``A = 0``: tanh).  With the producer's inputs
``x`` (N, F), the consumer's residual cotangents ``R`` (N, m), ``G_inv`` (m, m) and
``shift = sqrt(damping)``, candidate ``c``'s lower bound (``derivations/16-kfac-proposal.md``
sections 2-5 at ``q = 1``, ``derivations/25-compiled-search.md`` section 1):

    z_n = sum_f W_f x_nf + b,   h_n = phi(z_n)
    a   = (1/N) sum_n h_n^2 + shift,   d_j = (1/N) sum_n h_n R_nj
    Q   = sum_j (sum_i d_i G_inv_ij) d_j,   a+ = 1/a if a > eps |a| else 0
    LB  = a+ Q
    dLB/dh_n = (2/N) (sum_j R_nj a+ (d G_inv)_j - h_n a+ Q a+)

and the adjoint ``dz_n = dLB/dh_n phi'(z_n)``, ``dW_f = sum_n dz_n x_nf``, ``db = sum_n dz_n``,
``dp = sum_n dLB/dh_n dphi/dp(z_n)`` for the rational parameters.  A candidate whose score is
not finite scores ``-inf`` and gets a zero gradient row; a non-finite gradient entry zeroes that
candidate's gradient of its parameter array only (W's F entries, or b, v, c, l alone), as the
search does per array (``search._finite_scores`` / ``_zero_bad_rows``).  :func:`width_search_numba` runs the
Adam ascent of ``search._adam_ascent`` on these rows: the same elementwise operations in the
same order, with the bias corrections ``1 - beta^t`` passed in (formed by Python's ``**``).

The rational element is ``rational_numba._element`` with ``_unit_constants`` (the Rational
layer's bits); tanh and its slope come from one ``m = expm1(2|z|)`` as in ``sequential_numba``
(``tanh = sign(z) m / (m + 2)``, ``phi' = 4 (m + 1) / (m + 2)^2``; a few ulp from the layer's
``np.tanh`` and ``4 e / (1 + e)^2``).  Sums run in index order (NumPy's
BLAS dot products and pairwise sums use another order: equal to rounding, not bitwise).
No fastmath, no threads, no BLAS.  Twin: :mod:`senn_ref.kernels.search_numpy` (the
``WidthProposals`` objective and ``search.search``).  Tests: ``tests/test_compiled_search.py``.
The kernels that contain the rational element's code (:func:`_objective` and its two callers)
are closures over a hash of ``rational_numba.py`` (:mod:`senn_ref.kernels.linked_source`), so an
edit of that file compiles them afresh instead of loading the old code from Numba's cache
(24-sequential-fast-path.md section 8).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from . import linked_source
from .rational_numba import _element, _unit_constants

RATIONAL, TANH = 0, 1

#: the kernel files whose njit code this module's kernels compile in, and their hash, the
#: closure variable of those kernels (:mod:`linked_source`)
LINKED_SOURCES = ("rational_numba.py",)
LINKED = linked_source.source_hash(*LINKED_SOURCES)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _dot(a, b):
    """``sum_n a[n] b[n]`` over four interleaved partial sums ``(s0 + s1) + (s2 + s3)`` (``s_r``
    the terms ``n = r mod 4`` in order; four independent chains instead of one, the blocked order
    of an unrolled BLAS dot)."""
    N = a.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    n4 = N - N % 4
    for n in range(0, n4, 4):
        s0 += a[n] * b[n]
        s1 += a[n + 1] * b[n + 1]
        s2 += a[n + 2] * b[n + 2]
        s3 += a[n + 3] * b[n + 3]
    for n in range(n4, N):
        if n % 4 == 0:
            s0 += a[n] * b[n]
        elif n % 4 == 1:
            s1 += a[n] * b[n]
        else:
            s2 += a[n] * b[n]
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _sum(a):
    """``sum_n a[n]`` in the order of :func:`_dot`."""
    N = a.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    n4 = N - N % 4
    for n in range(0, n4, 4):
        s0 += a[n]
        s1 += a[n + 1]
        s2 += a[n + 2]
        s3 += a[n + 3]
    for n in range(n4, N):
        if n % 4 == 0:
            s0 += a[n]
        elif n % 4 == 1:
            s1 += a[n]
        else:
            s2 += a[n]
    return (s0 + s1) + (s2 + s3)


def _build_objective(linked: int):
    """The kernel :func:`_objective`, a closure over ``linked`` (:data:`LINKED`)."""

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _objective(xT, RT, G_inv, shift, tol, kind, eps, theta, grad, values, grads, K, w, dm, gm):
        """Fill ``values`` (C,) and, with ``grad``, ``grads`` (C, P) at ``theta`` (C, P) (module
        docstring) from ``xT`` (F, N) and ``RT`` (m, N) (the inputs and residuals transposed, so that
        every loop over the batch is contiguous).  Scratch: ``K`` (7, C) the rational constants;
        ``w`` (8, N) one candidate's ``z, h, phi', dsigma/dv, dc, dl``, ``dLB/dh`` and ``dLB/dz``;
        ``dm, gm`` (m,) its ``d`` and ``d G_inv``.  ``error_model="numpy"``: IEEE division (no
        zero-divisor test per division, which kept the element loop from vectorising; no divisor here
        can be 0: ``N``, rational ``n > 0``, ``a`` only when ``a > tol |a|``)."""
        linked          # cache key: a closure variable (linked_source), no code
        F, N = xT.shape
        m = RT.shape[0]
        C, P = theta.shape
        z, h, d1, dv, dc, dl, gh, gz = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
        if kind == RATIONAL:
            K[:, :] = _unit_constants(np.ascontiguousarray(theta[:, F + 1]), np.ascontiguousarray(theta[:, F + 2]),
                                      np.ascontiguousarray(theta[:, F + 3]), eps)
        for c in range(C):
            for n in range(N):
                z[n] = 0.0
            for f in range(F):
                wf = theta[c, f]
                for n in range(N):
                    z[n] += wf * xT[f, n]
            b = theta[c, F]
            for n in range(N):
                z[n] = z[n] + b
            if kind == RATIONAL:
                kn, ka, kg, km, kv, kc, kl = K[0, c], K[1, c], K[2, c], K[3, c], K[4, c], K[5, c], K[6, c]
                for n in range(N):
                    h[n], d1[n], dv[n], dc[n], dl[n] = _element(z[n], kn, ka, kg, km, kv, kc, kl)
            else:
                for n in range(N):                   # one expm1 for both (sequential_numba's form)
                    t = abs(z[n])
                    if t <= 354.0:
                        em = math.expm1(2.0 * t)
                        r = 1.0 / (em + 2.0)
                        h[n] = math.copysign(em * r, z[n])
                        d1[n] = 4.0 * ((em + 1.0) * r) * r
                    else:
                        e = math.exp(-t)
                        h[n] = math.copysign(1.0, z[n]) if t > 354.0 else z[n]
                        d1[n] = 4.0 * (e * e)
            a = _dot(h, h) / N + shift
            a_inv = 1.0 / a if a > tol * abs(a) else 0.0
            for j in range(m):
                dm[j] = _dot(h, RT[j]) / N
            Q = 0.0
            for j in range(m):
                s = 0.0
                for i in range(m):
                    s += dm[i] * G_inv[i, j]
                gm[j] = s
                Q += s * dm[j]
            value = a_inv * Q
            ok = np.isfinite(value)
            values[c] = value if ok else -np.inf
            if not grad:
                continue
            if not ok:
                for p in range(P):
                    grads[c, p] = 0.0
                continue
            Pq = a_inv * Q * a_inv
            for n in range(N):
                gh[n] = 0.0
            for j in range(m):
                mj = a_inv * gm[j]                   # M = a+ d G_inv
                for n in range(N):
                    gh[n] += RT[j, n] * mj
            for n in range(N):
                gh[n] = (2.0 / N) * (gh[n] - h[n] * Pq)
                gz[n] = gh[n] * d1[n]
            for f in range(F):
                grads[c, f] = _dot(gz, xT[f])
            grads[c, F] = _sum(gz)
            if kind == RATIONAL:
                grads[c, F + 1] = _dot(gh, dv)
                grads[c, F + 2] = _dot(gh, dc)
                grads[c, F + 3] = _dot(gh, dl)
            # search._zero_bad_rows applies per parameter array: W's F columns go together,
            # b and each activation parameter alone (the others keep their finite entries)
            bad_w = False
            for f in range(F):
                if not np.isfinite(grads[c, f]):
                    bad_w = True
            if bad_w:
                for f in range(F):
                    grads[c, f] = 0.0
            for p in range(F, P):
                if not np.isfinite(grads[c, p]):
                    grads[c, p] = 0.0
    return _objective


_objective = _build_objective(LINKED)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scratch(N, m, C):
    return np.empty((7, C)), np.empty((8, N)), np.empty(m), np.empty(m)


def _build_width_objective_numba(linked: int):
    """The kernel :func:`width_objective_numba`, a closure over ``linked`` (:data:`LINKED`)."""

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def width_objective_numba(xT, RT, G_inv, shift, tol, kind, eps, theta, grad):
        """``(values (C,), grads (C, P))`` of the lower bound at ``theta`` (C, P) (module docstring);
        ``grads`` is all zeros unless ``grad``.  xT (F, N), RT (m, N) the producer inputs and residual
        cotangents transposed, G_inv (m, m), theta (C, P): C-contiguous float64;
        ``tol`` the relative cut of ``a`` (``zero_tolerance(1)``); ``kind`` RATIONAL or TANH."""
        linked          # cache key: a closure variable (linked_source), no code
        C, P = theta.shape
        values = np.empty(C)
        grads = np.zeros((C, P))
        K, w, dm, gm = _scratch(xT.shape[1], RT.shape[0], C)
        _objective(xT, RT, G_inv, shift, tol, kind, eps, theta, grad, values, grads, K, w, dm, gm)
        return values, grads
    return width_objective_numba


width_objective_numba = _build_width_objective_numba(LINKED)


def _build_width_search_numba(linked: int):
    """The kernel :func:`width_search_numba`, a closure over ``linked`` (:data:`LINKED`)."""

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def width_search_numba(xT, RT, G_inv, shift, tol, kind, eps, theta0, step, bias1, bias2, beta1, beta2):
        """Adam ascent of every candidate's lower bound from ``theta0`` (C, P) for ``S = len(bias1) - 1``
        steps (``search._adam_ascent``): ``step`` (P,) the per-column step, ``bias1[t] = 1 - beta1^t``,
        ``bias2[t] = 1 - beta2^t`` (S + 1,).  Returns ``(best (C, P), best_values (C,), initial (C,))``:
        each candidate's best point (its start included) and score, and its initial score."""
        linked          # cache key: a closure variable (linked_source), no code
        C, P = theta0.shape
        steps = bias1.shape[0] - 1
        K, w, dm, gm = _scratch(xT.shape[1], RT.shape[0], C)
        values = np.empty(C)
        g = np.zeros((C, P))
        cur = theta0.copy()
        with_grad = C >= 0      # True, typed bool: a literal True compiled a second specialisation
        _objective(xT, RT, G_inv, shift, tol, kind, eps, cur, with_grad, values, g, K, w, dm, gm)
        initial = values.copy()
        best = theta0.copy()
        best_v = values.copy()
        mom = np.zeros((C, P))
        sec = np.zeros((C, P))
        a1 = 1.0 - beta1
        a2 = 1.0 - beta2
        for t in range(1, steps + 1):
            c1 = bias1[t]
            c2 = bias2[t]
            for c in range(C):
                for p in range(P):
                    gp = g[c, p]
                    mom[c, p] = beta1 * mom[c, p] + a1 * gp
                    sec[c, p] = beta2 * sec[c, p] + a2 * gp * gp
                    cur[c, p] = cur[c, p] + step[p] * (mom[c, p] / c1) / (np.sqrt(sec[c, p] / c2) + 1e-300)
            _objective(xT, RT, G_inv, shift, tol, kind, eps, cur, t < steps, values, g, K, w, dm, gm)
            for c in range(C):
                if values[c] > best_v[c]:
                    best_v[c] = values[c]
                    for p in range(P):
                        best[c, p] = cur[c, p]
        return best, best_v, initial
    return width_search_numba


width_search_numba = _build_width_search_numba(LINKED)
