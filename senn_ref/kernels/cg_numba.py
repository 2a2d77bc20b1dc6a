"""The whole conjugate-gradient solve ``(F + delta I) x = b`` in one Numba call, for a sequential
network on the compiled whole-network path.

:func:`cg_ggn_numba` runs the loop of :func:`senn_ref.natural_gradient.cg_solve` step for step
(09-fisher.md section 5): the same recurrences, the same stopping rule ``||r|| <= tol ||b||``,
the same iteration cap, warm start, curvature floor ``CURVATURE_FLOOR * a_est * ||p||^2`` with
``a_est = max_k ||A p_k|| / ||p_k||``, and the same non-finite tests, keeping the last finite
iterate.  Each product ``A p = F p + delta p`` is one call of
:func:`senn_ref.kernels.sequential_numba.sequential_ggn_numba` (the kernel
``FisherOperator.ggn_matvec`` calls, so ``F p`` has the same bits) plus the damping term as
``FisherOperator.matvec`` adds it.  The elementwise updates (``x + alpha p``, ``r - alpha A p``,
``r + beta p``) are the same operations as NumPy's, without fused multiply-adds (no fastmath,
so LLVM does not contract them); the dot products (``r.r``, ``p.p``, ``p.Ap``, ``Ap.Ap``) are
summed in the order of NumPy's pairwise summation (:func:`_dot`), which the Python loop uses
(``np.sum(a * b)`` instead of the BLAS ``ddot``, whose order depends on the CPU kernel and which
fuses multiply-adds).  So the compiled loop and the Python loop give the same bits
(24-sequential-fast-path.md section 7).

The NumPy twin is ``cg_solve(op.matvec, ...)`` (the Python loop over the same operator), which
tests compare against (``tests/test_cg_compiled.py``).  A product that is not finite (a tangent or
cotangent inside the GGN kernel, ``F p`` itself, or ``F p + delta p``) is not handled here: the
kernel returns :data:`BAIL` and the caller reruns the Python loop from the start, whose operator
takes the layer-wise path and warns or raises as it always did (and NumPy warns of the overflow),
so such a call behaves exactly as the Python loop.
Numba's cache tracks only this file's time stamp; the kernel is a closure over a hash of
``sequential_numba.py`` (:data:`LINKED`, by :mod:`senn_ref.kernels.linked_source`), so an edit of
that file compiles a fresh kernel instead of loading one that holds the old GGN code
(24-sequential-fast-path.md sections 7-8).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from . import linked_source
from .sequential_numba import sequential_ggn_numba

#: status codes of :func:`cg_ggn_numba`: the loop ended at the tolerance or the iteration cap;
#: a direction at or below the curvature floor; a non-finite iterate, residual, direction or
#: floor; a non-finite product inside the GGN kernel (rerun the Python loop)
DONE, FLOOR, NONFINITE, BAIL = range(4)


#: NumPy's pairwise summation: blocks of at most this many terms are summed with 8 accumulators
PW_BLOCKSIZE = 128


@numba.njit(cache=True, nogil=True)
def _block(a, b, lo, n):
    """``sum_{i < n} a[lo+i] b[lo+i]`` for ``n <= PW_BLOCKSIZE`` in the order of NumPy's pairwise
    sum of the rounded products: below 8 terms left to right; else 8 partial sums ``r_j`` over
    ``i = j mod 8`` (the first 8 terms their initial values), combined as
    ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the last ``n mod 8`` terms."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i] * b[i]
        return res
    r0, r1, r2, r3 = a[lo] * b[lo], a[lo + 1] * b[lo + 1], a[lo + 2] * b[lo + 2], a[lo + 3] * b[lo + 3]
    r4, r5, r6, r7 = a[lo + 4] * b[lo + 4], a[lo + 5] * b[lo + 5], a[lo + 6] * b[lo + 6], a[lo + 7] * b[lo + 7]
    end = lo + n - n % 8
    i = lo + 8
    while i < end:
        r0 += a[i] * b[i]
        r1 += a[i + 1] * b[i + 1]
        r2 += a[i + 2] * b[i + 2]
        r3 += a[i + 3] * b[i + 3]
        r4 += a[i + 4] * b[i + 4]
        r5 += a[i + 5] * b[i + 5]
        r6 += a[i + 6] * b[i + 6]
        r7 += a[i + 7] * b[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(end, lo + n):
        res += a[j] * b[j]
    return res


@numba.njit(cache=True, nogil=True)
def _dot(a, b):
    """``a . b`` with the bits of ``float(np.sum(a * b))`` (the Python loop's dot product): the
    reduction starts from NumPy's identity 0.0 and adds the pairwise sum, which splits ``n`` terms
    above ``PW_BLOCKSIZE`` at ``n2 = n // 2 - (n // 2) % 8`` into two halves summed the same way
    and added (:func:`_block` below).  The tree is walked with an explicit stack (Numba's cache
    does not load self-recursive functions reliably)."""
    n = a.shape[0]
    if n <= PW_BLOCKSIZE:
        start = n - n           # 0, typed int64: a literal 0 compiled a second specialisation
        return 0.0 + _block(a, b, start, n)
    lo_s, n_s, done_s = np.empty(192, np.int64), np.empty(192, np.int64), np.empty(192, np.bool_)
    vals = np.empty(96)
    top, nv = 1, 0
    lo_s[0], n_s[0], done_s[0] = 0, n, False
    while top > 0:                      # post-order: a node's value = left + right
        top -= 1
        lo, m, done = lo_s[top], n_s[top], done_s[top]
        if m <= PW_BLOCKSIZE:
            vals[nv] = _block(a, b, lo, m)
            nv += 1
        elif done:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        else:
            m2 = m // 2
            m2 -= m2 % 8
            lo_s[top], n_s[top], done_s[top] = lo, m, True
            lo_s[top + 1], n_s[top + 1], done_s[top + 1] = lo + m2, m - m2, False
            lo_s[top + 2], n_s[top + 2], done_s[top + 2] = lo, m2, False     # the left half first
            top += 3
    return 0.0 + vals[0]


@numba.njit(cache=True, nogil=True)
def _all_finite(a):
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _apply(meta, theta, ws, N, mode, aux, damping, v, out):
    """``out = F v + delta v`` (``FisherOperator.matvec``: ``F v`` by ``sequential_ggn_numba``,
    the damping term only when ``delta != 0``); False when the GGN kernel met a non-finite value
    or ``F v`` is not finite (where ``FisherOperator`` takes the layer-wise path, which warns)
    or ``delta v`` or the sum overflowed (where NumPy warns)."""
    Fv, status = sequential_ggn_numba(meta, theta, ws, v, N, mode, aux)
    if status >= 0 or not _all_finite(Fv):
        return False
    if damping != 0.0:
        for i in range(v.shape[0]):
            out[i] = Fv[i] + damping * v[i]
        return _all_finite(out)
    for i in range(v.shape[0]):
        out[i] = Fv[i]
    return True


#: the kernel files whose njit code the CG kernel compiles in (the GGN kernel; it calls no
#: rational code), and their hash, the kernel's closure variable (:mod:`linked_source`:
#: Numba's cache checks only this file's time stamp, its cache key includes closure variables)
LINKED_SOURCES = ("sequential_numba.py",)
LINKED = linked_source.source_hash(*LINKED_SOURCES)


def _build_cg_ggn_numba(linked: int):
    """The kernel :func:`cg_ggn_numba`, a closure over ``linked`` (:data:`LINKED`)."""

    @numba.njit(cache=True, nogil=True)
    def cg_ggn_numba(meta, theta, ws, N, mode, aux, damping, b, x0, warm, tol, b_norm, maxiter, floor_factor):
        """CG on ``(F + delta I) x = b`` at the point stored in ``ws`` (``sequential_forward_numba``).

        meta, theta, ws, N, mode, aux: as for ``sequential_ggn_numba``; damping delta >= 0; b (P,)
        with ``b_norm = ||b|| > 0`` (computed by the caller, NumPy's norm); x0 (P,) the start (zeros
        when not ``warm``; when ``warm`` the first residual is ``b - A x0``, else ``b``); stop when
        ``sqrt(r.r) <= tol * b_norm`` or after ``maxiter`` iterations; ``floor_factor`` is
        ``CURVATURE_FLOOR``.  Returns ``(x (P,), iterations, r.r, status, pAp, floor, products)``:
        x the last finite iterate, ``status`` one of :data:`DONE`, :data:`FLOOR`, :data:`NONFINITE`,
        :data:`BAIL`, ``pAp``/``floor`` of the last direction tried (for the warning's message),
        ``products`` the number of operator products made.  09-fisher.md section 5.
        """
        linked          # cache key: a closure variable (linked_source), no code
        P = b.shape[0]
        x = x0.copy()
        r = np.empty(P)
        Ap = np.empty(P)
        products = 0
        if warm:
            products += 1
            if not _apply(meta, theta, ws, N, mode, aux, damping, x, Ap):
                return x, 0, 0.0, BAIL, 0.0, 0.0, products
            for i in range(P):
                r[i] = b[i] - Ap[i]
        else:
            for i in range(P):
                r[i] = b[i]
        p = r.copy()
        rr = _dot(r, r)
        x_new, r_new, p_new = np.empty(P), np.empty(P), np.empty(P)
        it, a_est, floor, pAp = 0, 0.0, 0.0, 0.0
        status = DONE if np.isfinite(rr) else NONFINITE
        while status == DONE and math.sqrt(rr) > tol * b_norm and it < maxiter:
            products += 1
            if not _apply(meta, theta, ws, N, mode, aux, damping, p, Ap):
                return x, it, rr, BAIL, pAp, floor, products
            pp = _dot(p, p)
            pAp = _dot(p, Ap)
            q = math.sqrt(_dot(Ap, Ap)) / math.sqrt(pp)
            if q > a_est:                   # Python's max(a_est, q): keeps a_est unless q is larger
                a_est = q
            floor = floor_factor * a_est * pp
            if not np.isfinite(floor):          # A p is finite (_apply), its norm may overflow
                status = NONFINITE
                break
            if not pAp > floor:
                status = FLOOR
                break
            alpha = rr / pAp
            for i in range(P):
                x_new[i] = x[i] + alpha * p[i]
                r_new[i] = r[i] - alpha * Ap[i]
            rr_new = _dot(r_new, r_new)
            beta = rr_new / rr
            for i in range(P):
                p_new[i] = r_new[i] + beta * p[i]
            if not (np.isfinite(rr_new) and _all_finite(x_new) and _all_finite(p_new)):
                status = NONFINITE
                break
            x, x_new = x_new, x
            r, r_new = r_new, r
            p, p_new = p_new, p
            rr = rr_new
            it += 1
        return x, it, rr, status, pAp, floor, products
    return cg_ggn_numba


cg_ggn_numba = _build_cg_ggn_numba(LINKED)
