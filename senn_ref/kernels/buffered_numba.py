"""Fused element loops of :mod:`senn_ref.buffered_pass` (the ``"numba"`` backend).

Each kernel performs, per element, exactly the IEEE operations of the NumPy statements it
replaces, in the same order, and leaves the transcendental functions (``exp``, ``tanh``,
``log``) to NumPy's own vectorised calls between the kernels; so the results are the NumPy
results bit for bit, with fewer passes over the (N, D) arrays:

* :func:`finish_affine`: ``S += b`` (the Dense bias), whether every entry is finite (the
  check the pass otherwise makes by summing ``S``), and optionally ``t = -|S|`` (the first two
  steps of tanh's slope, 06-activations.md section 1);
* :func:`tanh_slope_from_exp`: from ``e = exp(-|S|)``, ``e <- e*e``, ``d = (e + 1)^2``,
  ``slope = (4 e)/d`` (the rest of ``activations._tanh_and_slope``);
* :func:`softmax_shift` and :func:`softmax_ce_grad`: softmax cross-entropy with integer labels
  around NumPy's ``exp``: ``m_n = max_k f_nk``, ``Z = F - m``; then ``s_n = sum_k exp(Z_nk)``
  in NumPy's own order (pairwise: eight running sums combined as
  ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))``, the remainder added in order; a plain loop below 8
  terms; rows of at most ``MAX_ROW`` = 128 entries, where NumPy uses one such block),
  ``p = exp(Z)/s``, ``p[y_n] -= 1``, ``E = p / N``, ``f_{n, y_n}`` (07-losses.md section 2);
* :func:`slope_product_colsum`: ``dS = dY * slope`` and ``db = sum_n dS[n]`` (NumPy's axis-0
  sum of a C-contiguous array adds the rows in order).

The NumPy twins are the statements themselves (the ``"numpy"`` backend of the pass, which is
the layer-wise code); ``tests/test_buffered_pass.py`` compares both with the layer-wise path
with ``np.array_equal``, and ``test_kernels_equal_their_numpy_statements`` each kernel with
its statements.  No fastmath (it would reorder sums and drop NaN checks).
``derivations/24-sequential-fast-path.md`` section 6.
"""
from __future__ import annotations

import math

import numba
import numpy as np

#: longest softmax row whose sum the kernel forms in NumPy's order (NumPy's pairwise block)
MAX_ROW = 128


@numba.njit(cache=True, nogil=True)
def finish_affine(S, b, t, want_t):
    """``S += b`` (S (N, D), b (D,)); if ``want_t``, ``t = -|S|`` (N, D).  Returns whether every
    entry of the new ``S`` is finite."""
    ok = True
    N, D = S.shape
    for n in range(N):
        for j in range(D):
            s = S[n, j] + b[j]
            S[n, j] = s
            ok = ok and math.isfinite(s)
            if want_t:
                t[n, j] = -abs(s)
    return ok


@numba.njit(cache=True, nogil=True)
def tanh_slope_from_exp(e, slope):
    """``slope = 4 e^2 / (e^2 + 1)^2`` from ``e = exp(-|x|)`` (N, D), by the operations of
    ``_tanh_and_slope``: ``e*e``, ``+ 1``, squared, ``4 * e^2``, divided."""
    N, D = e.shape
    for n in range(N):
        for j in range(D):
            x = e[n, j]
            x = x * x
            d = x + 1.0
            d = d * d
            slope[n, j] = (x * 4.0) / d


@numba.njit(cache=True, nogil=True)
def softmax_shift(F, Z, m):
    """``m_n = max_k F[n, k]`` (N,), ``Z = F - m[:, None]`` (N, K); F finite."""
    N, K = F.shape
    for n in range(N):
        mx = F[n, 0]
        for k in range(1, K):
            if F[n, k] > mx:
                mx = F[n, k]
        m[n] = mx
        for k in range(K):
            Z[n, k] = F[n, k] - mx


@numba.njit(cache=True, nogil=True, inline="always")
def _row_sum(a, n, K):
    """NumPy's sum of the contiguous row ``a[n, :K]`` (K <= MAX_ROW): a plain loop from 0 below
    eight terms, else eight running sums combined pairwise, then the remainder in order."""
    if K < 8:
        res = 0.0
        for k in range(K):
            res += a[n, k]
        return res
    r0, r1, r2, r3 = a[n, 0], a[n, 1], a[n, 2], a[n, 3]
    r4, r5, r6, r7 = a[n, 4], a[n, 5], a[n, 6], a[n, 7]
    k = 8
    while k < K - (K % 8):
        r0 += a[n, k]
        r1 += a[n, k + 1]
        r2 += a[n, k + 2]
        r3 += a[n, k + 3]
        r4 += a[n, k + 4]
        r5 += a[n, k + 5]
        r6 += a[n, k + 6]
        r7 += a[n, k + 7]
        k += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while k < K:
        res += a[n, k]
        k += 1
    return res


@numba.njit(cache=True, nogil=True)
def softmax_ce_grad(F, E, labels, N_scale, s, fy):
    """From ``E = exp(Z)`` (N, K): ``s_n = sum_k E[n, k]`` (NumPy's order), ``E = E/s``,
    ``E[n, y_n] -= 1``, ``E /= N_scale``; ``fy_n = F[n, y_n]``.  ``s``, ``fy``: (N,) outputs."""
    N, K = E.shape
    for n in range(N):
        sn = 0.0 + _row_sum(E, n, K)
        s[n] = sn
        y = labels[n]
        for k in range(K):
            p = E[n, k] / sn
            if k == y:
                p = p - 1.0
            E[n, k] = p / N_scale
        fy[n] = F[n, y]


@numba.njit(cache=True, nogil=True)
def slope_product_colsum(dY, slope, dS, db):
    """``dS = dY * slope`` (N, D) and ``db[j] = sum_n dS[n, j]`` (D,), rows added in order."""
    N, D = dY.shape
    for j in range(D):
        v = dY[0, j] * slope[0, j]
        dS[0, j] = v
        db[j] = v
    for n in range(1, N):
        for j in range(D):
            v = dY[n, j] * slope[n, j]
            dS[n, j] = v
            db[j] += v
