"""Plain NumPy twins of the pooling kernels in :mod:`pool_numba`.

Each loops over the ``kh*kw`` window offsets (i, j), row-major, using the
strided slice ``X[:, :, i : i+sh(Ho-1)+1 : sh, j : j+sw(Wo-1)+1 : sw]`` (shape
(N, C, Ho, Wo)) that holds offset (i, j) of every window.  Max pooling stacks
these slices and takes ``numpy.argmax`` (first maximum wins).
See ``derivations/04-pooling.md``.
"""
from __future__ import annotations

import numpy as np


def _slices(kh, kw, sh, sw, Ho, Wo):
    """Index tuples of the kernel offsets, row-major in (i, j)."""
    return [(slice(None), slice(None), slice(i, i + sh * (Ho - 1) + 1, sh), slice(j, j + sw * (Wo - 1) + 1, sw))
            for i in range(kh) for j in range(kw)]


def maxpool_forward_numpy(X, kh, kw, sh, sw, Ho, Wo):
    """Twin of ``maxpool_forward_numba``: returns ``(Y, arg)``."""
    S = np.stack([X[win] for win in _slices(kh, kw, sh, sw, Ho, Wo)])   # (kh*kw, N, C, Ho, Wo)
    arg = np.argmax(S, axis=0)
    return np.take_along_axis(S, arg[None], axis=0)[0], arg.astype(np.int64)


def maxpool_backward_numpy(dY, arg, H, W, kh, kw, sh, sw):
    """Twin of ``maxpool_backward_numba``."""
    N, C, Ho, Wo = dY.shape
    dX = np.zeros((N, C, H, W))
    for m, win in enumerate(_slices(kh, kw, sh, sw, Ho, Wo)):
        dX[win] += np.where(arg == m, dY, 0.0)
    return dX


def maxpool_jvp_numpy(dX, arg, kh, kw, sh, sw):
    """Twin of ``maxpool_jvp_numba``."""
    Ho, Wo = arg.shape[2:]
    S = np.stack([dX[win] for win in _slices(kh, kw, sh, sw, Ho, Wo)])
    return np.take_along_axis(S, arg[None], axis=0)[0]


def avgpool_forward_numpy(X, kh, kw, sh, sw, Ho, Wo):
    """Twin of ``avgpool_forward_numba``."""
    out = np.zeros(X.shape[:2] + (Ho, Wo))
    for win in _slices(kh, kw, sh, sw, Ho, Wo):
        out += X[win]
    return out / (kh * kw)


def avgpool_backward_numpy(dY, H, W, kh, kw, sh, sw):
    """Twin of ``avgpool_backward_numba``."""
    N, C, Ho, Wo = dY.shape
    dX = np.zeros((N, C, H, W))
    share = dY / (kh * kw)
    for win in _slices(kh, kw, sh, sw, Ho, Wo):
        dX[win] += share
    return dX
