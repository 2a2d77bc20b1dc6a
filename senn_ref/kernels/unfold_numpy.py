"""Plain NumPy twins of the unfold (im2col) and fold (col2im) kernels.

Same layout and formulas as :mod:`unfold_numba` (``P`` has shape
``(N, C*kh*kw, Ho*Wo)``).  Instead of a loop over every pixel, these loop over
the ``kh*kw`` kernel offsets ``(i, j)`` and move one strided slice of the
padded image per offset:

``Xpad[:, :, i : i + sh*(Ho-1) + 1 : sh, j : j + sw*(Wo-1) + 1 : sw]``  (N, C, Ho, Wo)

is exactly the set of pixels that kernel offset ``(i, j)`` sees at all output
locations.  Unfold copies it into ``P`` viewed as ``(N, C, kh, kw, Ho, Wo)`` at
``[:, :, i, j]``; fold adds it back.
See ``derivations/03-convolution.md`` sections "Unfold" and "Fold".
"""
from __future__ import annotations

import numpy as np


def _window(i: int, j: int, sh: int, sw: int, Ho: int, Wo: int):
    """Index tuple selecting the pixels kernel offset ``(i, j)`` reads (padded coordinates)."""
    return (slice(None), slice(None),
            slice(i, i + sh * (Ho - 1) + 1, sh), slice(j, j + sw * (Wo - 1) + 1, sw))


def unfold_into_numpy(X, P, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """im2col into rows ``0 .. K-1`` (``K = C*kh*kw``) of a buffer ``P (N, >= K, Ho*Wo)``;
    further rows are left untouched.  Twin of ``unfold_into_numba``.  Offset ``(i, j)``
    fills the rows ``k = c*kh*kw + i*kw + j``, ``c = 0 .. C-1``: a slice of step ``kh*kw``."""
    N, C, H, W = X.shape
    K = C * kh * kw
    Xp = np.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for i in range(kh):
        for j in range(kw):
            P[:, i * kw + j:K:kh * kw, :] = Xp[_window(i, j, sh, sw, Ho, Wo)].reshape(N, C, Ho * Wo)


def unfold_numpy(X, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """im2col: ``X (N, C, H, W) -> P (N, C*kh*kw, Ho*Wo)``; twin of ``unfold_numba``."""
    N, C = X.shape[:2]
    P = np.empty((N, C * kh * kw, Ho * Wo))
    unfold_into_numpy(X, P, kh, kw, sh, sw, ph, pw, Ho, Wo)
    return P


def fold_into_numpy(P, X, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """col2im into a buffer ``X (N, C, H, W)`` (overwritten); twin of ``fold_into_numba``.

    Accumulates the ``kh*kw`` slices into a zero-padded image, offset ``(i, j)``
    in row-major order, and crops the padding (entries read from the padding
    have no pixel to return to).
    """
    N, C, H, W = X.shape
    P6 = P.reshape(N, C, kh, kw, Ho, Wo)
    Xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            Xp[_window(i, j, sh, sw, Ho, Wo)] += P6[:, :, i, j]
    X[...] = Xp[:, :, ph:ph + H, pw:pw + W]


def fold_numpy(P, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """col2im: ``P (N, C*kh*kw, Ho*Wo) -> X (N, C, H, W)``; twin of ``fold_numba``."""
    X = np.empty((P.shape[0], C, H, W))
    fold_into_numpy(P, X, kh, kw, sh, sw, ph, pw, Ho, Wo)
    return X
