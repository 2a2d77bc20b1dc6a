"""Numba kernels for unfold (im2col) and fold (col2im, its adjoint).

Layout (shared with the NumPy twin in :mod:`unfold_numpy`):

* image batch ``X`` of shape ``(N, C, H, W)``;
* column tensor ``P`` of shape ``(N, K, T)`` with ``K = C*kh*kw`` rows
  (row-major over ``(c, i, j)``, the column order of ``W.reshape(O, -1)`` for a
  conv kernel ``W`` of shape ``(O, C, kh, kw)``) and ``T = Ho*Wo`` output
  locations (row-major over ``(oh, ow)``).

``P[n, (c*kh + i)*kw + j, oh*Wo + ow] = Xpad[n, c, oh*sh + i, ow*sw + j]`` where
``Xpad`` is ``X`` zero-padded by ``ph`` rows and ``pw`` columns on each side.
With this layout a convolution is ``Y[n] = W.reshape(O, K) @ P[n]``, already in
``(O, Ho*Wo)`` = NCHW order, so no transposes are needed.  The curvature layout
``(N, T, K)`` is the view ``P.transpose(0, 2, 1)``.

``fold`` is the transpose of this linear map: it adds every entry of ``P`` back
onto the pixel it was read from (entries read from the padding are dropped).

The kernels are serial (no ``parallel=True``): the GEMMs around them already
use both cores through BLAS, and measured alternation between a Numba thread
pool and the BLAS pool cost far more than it saved.  Loop order is fixed, so
results are deterministic.  The ``*_into`` variants write into caller-owned
buffers (``Conv2D`` reuses per-thread workspaces instead of allocating
megabytes per call).  See ``derivations/03-convolution.md`` sections
"Unfold" and "Fold"; tested in ``tests/test_kernels.py``.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def unfold_into_numba(X, P, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """im2col into rows ``0 .. K-1`` (``K = C*kh*kw``) of a C-contiguous buffer
    ``P (N, >= K, Ho*Wo)``; every entry of those rows is written, further rows are not
    touched (``Conv2D`` keeps a row of ones there for the bias)."""
    N, C, H, W = X.shape
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    k = (c * kh + i) * kw + j
                    for oh in range(Ho):
                        r = oh * sh + i - ph
                        t0 = oh * Wo
                        if r < 0 or r >= H:
                            for ow in range(Wo):
                                P[n, k, t0 + ow] = 0.0
                        else:
                            for ow in range(Wo):
                                q = ow * sw + j - pw
                                if 0 <= q < W:
                                    P[n, k, t0 + ow] = X[n, c, r, q]
                                else:
                                    P[n, k, t0 + ow] = 0.0


@numba.njit(cache=True, nogil=True)
def unfold_numba(X, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """im2col: ``X (N, C, H, W) -> P (N, C*kh*kw, Ho*Wo)`` (formula in module docstring)."""
    N, C, H, W = X.shape
    P = np.empty((N, C * kh * kw, Ho * Wo))
    unfold_into_numba(X, P, kh, kw, sh, sw, ph, pw, Ho, Wo)
    return P


@numba.njit(cache=True, nogil=True)
def fold_into_numba(P, X, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """col2im, the adjoint of :func:`unfold_numba`, into a given C-contiguous buffer
    ``X (N, C, H, W)`` (overwritten) from ``P (N, C*kh*kw, Ho*Wo)``.

    ``X[n, c, r, q] = sum_{(i, j, oh, ow): oh*sh+i-ph = r, ow*sw+j-pw = q}
    P[n, (c*kh+i)*kw+j, oh*Wo+ow]``; contributions are added with the kernel
    offset ``(i, j)`` as the outer loop (the order of the NumPy twin).
    """
    N, C, H, W = X.shape
    X[...] = 0.0
    if sw == 1 and Wo >= _WIDE_ROWS:
        _fold_rows_sliced(P, X, kh, kw, sh, ph, pw, Ho, Wo)
        return
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    k = (c * kh + i) * kw + j
                    for oh in range(Ho):
                        r = oh * sh + i - ph
                        if r < 0 or r >= H:
                            continue
                        t0 = oh * Wo
                        for ow in range(Wo):
                            q = ow * sw + j - pw
                            if 0 <= q < W:
                                X[n, c, r, q] += P[n, k, t0 + ow]


#: output rows at least this wide (stride 1) are folded by :func:`_fold_rows_sliced`
_WIDE_ROWS = 12


@numba.njit(cache=True, nogil=True)
def _fold_rows_sliced(P, X, kh, kw, sh, ph, pw, Ho, Wo):
    """The fold of :func:`fold_into_numba` for column stride 1, with the bounds test hoisted
    out of the row loop: output columns ``lo <= ow < hi`` are those whose input column
    ``q = ow + j - pw`` lies in ``[0, W)``, and the row is added as one contiguous slice
    pair (a branch-free, vectorisable loop).  The same entries are added in the same order,
    so the result is the same bit for bit; on 8-wide rows the per-row slices cost more
    than they save (measured), hence the ``_WIDE_ROWS`` switch.  ``X`` must be zeroed."""
    N, C, H, W = X.shape
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    k = (c * kh + i) * kw + j
                    lo = max(0, pw - j)
                    hi = max(lo, min(Wo, W + pw - j))
                    for oh in range(Ho):
                        r = oh * sh + i - ph
                        if r < 0 or r >= H:
                            continue
                        t0 = oh * Wo
                        xs = X[n, c, r, lo + j - pw:hi + j - pw]
                        ps = P[n, k, t0 + lo:t0 + hi]
                        for m in range(hi - lo):
                            xs[m] += ps[m]


@numba.njit(cache=True, nogil=True)
def fold_numba(P, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """col2im: ``P (N, C*kh*kw, Ho*Wo) -> X (N, C, H, W)`` (see :func:`fold_into_numba`)."""
    X = np.empty((P.shape[0], C, H, W))
    fold_into_numba(P, X, kh, kw, sh, sw, ph, pw, Ho, Wo)
    return X
