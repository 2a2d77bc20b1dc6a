"""Plain NumPy twins of the rational-activation kernels in :mod:`rational_numba`.

``rational_basis_numpy`` and ``rational_partials_numpy`` are the elementwise
formulas of ``derivations/05-rational.md`` sections 1-3 and 7, for arrays that
broadcast together (the public functions in ``senn_ref/layers/rational.py`` call
them directly).  ``rational_forward_numpy`` / ``rational_backward_numpy`` are the
layer-layout entry points: the batch viewed as ``(N, U, S)`` (unit axis 1,
``S`` = product of the spatial sizes, 1 for dense), parameters of shape ``(U,)``.
Section "Kernel" of ``derivations/05-rational.md``; tested against the Numba
kernels in ``tests/test_rational_kernel.py``.
"""
from __future__ import annotations

import numpy as np


def rational_basis_numpy(x: np.ndarray):
    """``(t, w, p)`` = ``(x/(1+x^2), 1/(1+x^2), (1-x^2)/(1+x^2)^2)``, overflow-free.

    ``x`` any shape; three arrays of that shape.  For ``|x| > 1`` the values come from
    ``y = 1/x``: ``t = y/(1+y^2)``, ``w = y t``, ``p = (y-1)(y+1) t^2``
    (``derivations/05-rational.md`` section 7).
    """
    big = np.abs(x) > 1.0
    with np.errstate(under="ignore"):
        xs = np.where(big, 0.0, x)                      # |xs| <= 1
        w_s = 1.0 / (1.0 + xs * xs)
        t_s = xs * w_s
        p_s = (1.0 - xs) * (1.0 + xs) * w_s * w_s
        y = 1.0 / np.where(big, x, 1.0)                  # |y| < 1 where used
        t_b = y / (1.0 + y * y)
        w_b = y * t_b
        p_b = (y - 1.0) * (y + 1.0) * t_b * t_b
    return np.where(big, t_b, t_s), np.where(big, w_b, w_s), np.where(big, p_b, p_s)


def rational_partials_numpy(x, v, c, l, eps):
    """``(sigma, d/dx, d/dv, d/dc, d/dl)`` at ``x`` (any shape, broadcast with v, c, l).

    Works with the unit direction ``(a, g, m) = (v, c, l)/n`` and ``e = eps/n^2``
    (so ``a^2 + g^2 + m^2 + e = 1``): ``sigma = 2 a t + g w + m x``,
    ``d/dx = 2 a p - 2 g t w + m`` and e.g.
    ``dsigma/dv = [2t (g^2 + m^2 + e) - a (g w + m x)] / n``; no intermediate
    exceeds the size of the result (``derivations/05-rational.md`` section 3).
    """
    t, w, p = rational_basis_numpy(x)
    s = v * v + c * c + l * l + eps
    n = np.sqrt(s)
    a, g, m, e = v / n, c / n, l / n, eps / s
    aa, gg, mm = a * a, g * g, m * m
    with np.errstate(under="ignore"):
        sigma = 2.0 * a * t + g * w + m * x
        d_x = 2.0 * a * p - 2.0 * g * t * w + m
        d_v = (2.0 * t * (gg + mm + e) - a * (g * w + m * x)) / n
        d_c = (w * (aa + mm + e) - g * (2.0 * a * t + m * x)) / n
        d_l = (x * (aa + gg + e) - m * (2.0 * a * t + g * w)) / n
    return sigma, d_x, d_v, d_c, d_l


def rational_forward_numpy(X, v, c, l, eps):
    """Twin of ``rational_forward_numba``: ``X (N, U, S)``, ``v, c, l (U,)`` ->
    ``(sigma, d/dx, d/dv, d/dc, d/dl)``, each ``(N, U, S)``."""
    b = (1, -1, 1)
    return rational_partials_numpy(X, v.reshape(b), c.reshape(b), l.reshape(b), eps)


def rational_backward_numpy(dS, d_x, d_v, d_c, d_l, need_input_grad):
    """Twin of ``rational_backward_numba``.  All arrays ``(N, U, S)``; returns
    ``(dX or None, g_v, g_c, g_l)`` with ``dX = dS * d_x`` and
    ``g_p[u] = sum_{n,s} dS[n,u,s] * d_p[n,u,s]`` (each ``(U,)``)."""
    grads = tuple((dS * d).sum(axis=(0, 2)) for d in (d_v, d_c, d_l))
    return (dS * d_x if need_input_grad else None,) + grads
