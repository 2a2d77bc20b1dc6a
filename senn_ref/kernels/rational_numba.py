"""Fused Numba kernels for the rational activation (layer layout ``(N, U, S)``).

The batch is viewed as ``X (N, U, S)``: unit ``u`` on axis 1 with parameters
``(v[u], c[u], l[u])``, ``S`` = product of the spatial sizes (1 for a dense layer).
``rational_forward_numba`` evaluates sigma and its four partials in one pass per
element with the same formulas, the same operation order and the same two
overflow-free branches (``|x| <= 1`` from ``x``, ``|x| > 1`` from ``y = 1/x``) as
the NumPy twin ``rational_partials_numpy`` in :mod:`rational_numpy`.  Like the twin
it evaluates both branches and selects (``np.where`` there, a conditional
expression here); the per-unit constants
(``n``, the direction ``(a, g, m)``, ``e``) are formed once per unit exactly as the
twin forms them.  No fastmath, hence no reassociation and no fused multiply-add:
both backends produce the same bits (the test allows 1e-12).
``derivations/05-rational.md`` sections 3, 7 and "Kernel";
tested in ``tests/test_rational_kernel.py``.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _unit_constants(v, c, l, eps):
    """Per unit (``v, c, l`` of shape ``(U,)``): rows ``(n, a, g, m, kv, kc, kl)`` of a
    ``(7, U)`` array, ``n = sqrt(v^2+c^2+l^2+eps)``, ``(a, g, m) = (v, c, l)/n``,
    ``e = eps/n^2``, ``kv = g^2+m^2+e``, ``kc = a^2+m^2+e``, ``kl = a^2+g^2+e``."""
    U = v.shape[0]
    K = np.empty((7, U))
    for u in range(U):
        s = v[u] * v[u] + c[u] * c[u] + l[u] * l[u] + eps
        n = np.sqrt(s)
        a, g, m, e = v[u] / n, c[u] / n, l[u] / n, eps / s
        aa, gg, mm = a * a, g * g, m * m
        K[0, u], K[1, u], K[2, u], K[3, u] = n, a, g, m
        K[4, u], K[5, u], K[6, u] = gg + mm + e, aa + mm + e, aa + gg + e
    return K


@numba.njit(cache=True, nogil=True, inline="always")
def _element(x, n, a, g, m, kv, kc, kl):
    """``(sigma, d/dx, d/dv, d/dc, d/dl)`` at one scalar ``x`` for one unit's constants."""
    big = abs(x) > 1.0
    xs = 0.0 if big else x                       # small branch, |xs| <= 1
    ws = 1.0 / (1.0 + xs * xs)
    ts = xs * ws
    ps = (1.0 - xs) * (1.0 + xs) * ws * ws
    y = 1.0 / (x if big else 1.0)                # big branch, |y| < 1 where used
    tb = y / (1.0 + y * y)
    wb = y * tb
    pb = (y - 1.0) * (y + 1.0) * tb * tb
    t = tb if big else ts
    w = wb if big else ws
    p = pb if big else ps
    at2 = 2.0 * a * t
    gw = g * w
    mx = m * x
    return (at2 + gw + mx,
            2.0 * a * p - 2.0 * g * t * w + m,
            (2.0 * t * kv - a * (gw + mx)) / n,
            (w * kc - g * (at2 + mx)) / n,
            (x * kl - m * (at2 + gw)) / n)


@numba.njit(cache=True, nogil=True)
def rational_forward_numba(X, v, c, l, eps):
    """``(sigma, d/dx, d/dv, d/dc, d/dl)`` of ``X (N, U, S)`` (C-contiguous), each ``(N, U, S)``.

    Per element, with ``(t, w, p)`` the basis of ``derivations/05-rational.md`` section 7:
    ``sigma = 2 a t + g w + m x``, ``d/dx = 2 a p - 2 g t w + m``,
    ``d/dv = (2t kv - a (g w + m x))/n``, ``d/dc = (w kc - g (2 a t + m x))/n``,
    ``d/dl = (x kl - m (2 a t + g w))/n`` (constants from ``_unit_constants``).
    Serial: a ``prange`` over ``N`` gives the same bits and lets LLVM vectorise the loop
    (5x faster on an idle 2-core machine), but on a shared machine the worker thread
    waits for a time slice and the call became 10-30x slower (measured, see
    ``derivations/05-rational.md`` "Kernel"), so the robust serial loop is used.  The
    innermost loop runs over ``S``, or over ``U`` when ``S == 1`` (dense).
    """
    N, U, S = X.shape
    K = _unit_constants(v, c, l, eps)
    kn, ka, kg, km, kv, kc, kl = K[0], K[1], K[2], K[3], K[4], K[5], K[6]
    sig = np.empty((N, U, S))
    dx = np.empty((N, U, S))
    dv = np.empty((N, U, S))
    dc = np.empty((N, U, S))
    dl = np.empty((N, U, S))
    if S == 1:
        for i in range(N):
            for u in range(U):
                r = _element(X[i, u, 0], kn[u], ka[u], kg[u], km[u], kv[u], kc[u], kl[u])
                sig[i, u, 0], dx[i, u, 0], dv[i, u, 0], dc[i, u, 0], dl[i, u, 0] = r
    else:
        for i in range(N):
            for u in range(U):
                n, a, g, m, qv, qc, ql = kn[u], ka[u], kg[u], km[u], kv[u], kc[u], kl[u]
                for j in range(S):
                    r = _element(X[i, u, j], n, a, g, m, qv, qc, ql)
                    sig[i, u, j], dx[i, u, j], dv[i, u, j], dc[i, u, j], dl[i, u, j] = r
    return sig, dx, dv, dc, dl


@numba.njit(cache=True, nogil=True)
def rational_backward_numba(dS, d_x, d_v, d_c, d_l, need_input_grad):
    """VJP from the cached partials; all arrays ``(N, U, S)`` (C-contiguous).

    Returns ``(dX, g_v, g_c, g_l)``: ``dX = dS * d_x`` (``(N, U, S)``; a ``(0, 0, 0)``
    placeholder when ``need_input_grad`` is False) and ``g_p[u] = sum_{n,s} dS * d_p``
    (``(U,)``).  Serial, one pass over memory; each sum runs in ``(n, s)`` order
    (the twin uses NumPy's pairwise sum, so the two agree to rounding, not bitwise).
    """
    N, U, S = dS.shape
    gv = np.zeros(U)
    gc = np.zeros(U)
    gl = np.zeros(U)
    dX = np.empty((N, U, S)) if need_input_grad else np.empty((0, 0, 0))
    if S == 1:
        for i in range(N):
            for u in range(U):
                d = dS[i, u, 0]
                gv[u] += d * d_v[i, u, 0]
                gc[u] += d * d_c[i, u, 0]
                gl[u] += d * d_l[i, u, 0]
                if need_input_grad:
                    dX[i, u, 0] = d * d_x[i, u, 0]
        return dX, gv, gc, gl
    for i in range(N):
        for u in range(U):
            sv = gv[u]
            sc = gc[u]
            sl = gl[u]
            for j in range(S):
                d = dS[i, u, j]
                sv += d * d_v[i, u, j]
                sc += d * d_c[i, u, j]
                sl += d * d_l[i, u, j]
            gv[u] = sv
            gc[u] = sc
            gl[u] = sl
            if need_input_grad:
                for j in range(S):
                    dX[i, u, j] = dS[i, u, j] * d_x[i, u, j]
    return dX, gv, gc, gl
