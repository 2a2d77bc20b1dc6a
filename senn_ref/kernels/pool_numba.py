"""Numba kernels for windowed average and max pooling (NCHW, no padding).

Geometry as in ``derivations/04-pooling.md``: window (kh, kw), stride (sh, sw),
output (Ho, Wo); window (oh, ow) covers rows ``sh*oh .. sh*oh+kh-1`` and columns
``sw*ow .. sw*ow+kw-1``.  Offsets inside a window are numbered row-major,
``m = i*kw + j``.  Max pooling keeps the *first* maximal offset (strict ``>``
while scanning row-major), the same rule as ``numpy.argmax`` in the NumPy twins
(:mod:`pool_numpy`), so both backends pick identical winners.  Sums run over
offsets in row-major order, also as in the twins.  Serial loops, deterministic.
Tested against the twins in ``tests/test_kernels.py``.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def maxpool_forward_numba(X, kh, kw, sh, sw, Ho, Wo):
    """``Y[n,c,oh,ow] = max_{i,j} X[n,c,sh*oh+i,sw*ow+j]`` and the winning offset ``i*kw+j``.

    X (N, C, H, W) -> Y (N, C, Ho, Wo) float64, arg (N, C, Ho, Wo) int64.
    """
    N, C = X.shape[0], X.shape[1]
    Y = np.empty((N, C, Ho, Wo))
    arg = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    r0, q0 = oh * sh, ow * sw
                    best = X[n, c, r0, q0]
                    m = 0
                    for i in range(kh):
                        for j in range(kw):
                            v = X[n, c, r0 + i, q0 + j]
                            if v > best:
                                best = v
                                m = i * kw + j
                    Y[n, c, oh, ow] = best
                    arg[n, c, oh, ow] = m
    return Y, arg


@numba.njit(cache=True, nogil=True)
def maxpool_backward_numba(dY, arg, H, W, kh, kw, sh, sw):
    """VJP: ``dX[n,c,sh*oh+i,sw*ow+j] += dY[n,c,oh,ow]`` for the cached winner ``i*kw+j``."""
    N, C, Ho, Wo = dY.shape
    dX = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    m = arg[n, c, oh, ow]
                    dX[n, c, oh * sh + m // kw, ow * sw + m % kw] += dY[n, c, oh, ow]
    return dX


@numba.njit(cache=True, nogil=True)
def maxpool_jvp_numba(dX, arg, kh, kw, sh, sw):
    """JVP: ``dY[n,c,oh,ow] = dX[n,c,sh*oh+i,sw*ow+j]`` at the cached winner ``i*kw+j``."""
    N, C, Ho, Wo = arg.shape
    dY = np.empty((N, C, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    m = arg[n, c, oh, ow]
                    dY[n, c, oh, ow] = dX[n, c, oh * sh + m // kw, ow * sw + m % kw]
    return dY


@numba.njit(cache=True, nogil=True)
def avgpool_forward_numba(X, kh, kw, sh, sw, Ho, Wo):
    """``Y[n,c,oh,ow] = (sum_{i,j} X[n,c,sh*oh+i,sw*ow+j]) / (kh*kw)``; (N,C,H,W) -> (N,C,Ho,Wo)."""
    N, C = X.shape[0], X.shape[1]
    Y = np.empty((N, C, Ho, Wo))
    scale = kh * kw
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    acc = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            acc += X[n, c, oh * sh + i, ow * sw + j]
                    Y[n, c, oh, ow] = acc / scale
    return Y


@numba.njit(cache=True, nogil=True)
def avgpool_backward_numba(dY, H, W, kh, kw, sh, sw):
    """VJP: every entry of window (oh, ow) receives ``dY[n,c,oh,ow] / (kh*kw)``, summed over windows.

    Offsets are the outer loop, as in the twin, so overlapping windows add in the same order.
    """
    N, C, Ho, Wo = dY.shape
    dX = np.zeros((N, C, H, W))
    scale = kh * kw
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for oh in range(Ho):
                        for ow in range(Wo):
                            dX[n, c, oh * sh + i, ow * sw + j] += dY[n, c, oh, ow] / scale
    return dX
