"""Whole-network passes of a sequential Dense / Tanh / SiLU / Rational network in one Numba call.

The network is described by an integer table ``meta`` (L, 8), one row per layer (built by
:class:`senn_ref.network_plan.SequentialPlan`), columns ``KIND, DIN, DOUT, POFF, XOFF, YOFF,
SOFF, COFF``: the layer kind, its per-example input and output widths, the offset of its
parameters in the flat vector ``theta`` (P,) (Dense: ``W`` (DOUT, DIN) row-major then ``b``;
Rational: ``v, c, l``), and three offsets *per example* into the work buffers (multiplied by
the batch size ``N``): its input ``x`` (N, DIN) and output ``y`` (N, DOUT) in ``ws`` (layer
i's ``YOFF`` is layer i+1's ``XOFF``), its slopes in ``ws`` (Tanh/SiLU: ``phi'(x)`` (N, D);
Rational: ``d/dx, d/dv, d/dc, d/dl`` as (4, N, U)), and the cotangent of its output in
``cot`` (N, DOUT).  ``ws`` therefore holds exactly the layers' forward caches, and ``cot`` the
``output_grads`` of :meth:`senn_ref.network.Network.backward`.

The element formulas are the layers' own: ``y = x W^T + b``; SiLU from ``e = exp(-|x|)``; the
rational unit by ``rational_numba._element`` (the same bits as the Rational layer's kernel).
tanh is the exception: one ``m = expm1(2|x|)`` gives ``tanh = sign(x) m/(m+2)`` and
``phi' = 4 (m+1)/(m+2)^2`` (06-activations.md section 1; a few ulp from the layer's ``np.tanh``
and ``4 e/(1+e)^2``, far inside the twin tolerance).  Dense products
are loops whose inner loop runs over contiguous outputs (vectorised by LLVM without
reassociating a sum); no BLAS, no fastmath, no threads, so every result is a fixed sequence of
operations.  The kernels are meant for small networks and batches (the plan decides, see
``SequentialPlan.fast_for``).  Every kernel returns a
status: ``-1``, or the index of the first layer at which a value (activation, tangent or
cotangent) was not finite; the caller then reruns the layer-wise path, which raises the
layer-wise error.  NumPy twin: :mod:`senn_ref.kernels.sequential_numpy` (the layer-wise
path).  ``derivations/24-sequential-fast-path.md``; tests ``tests/test_network_plan.py``.
The kernels that contain the rational element's code (:func:`_rational` and
:func:`sequential_forward_numba`) are closures over a hash of ``rational_numba.py``
(:mod:`senn_ref.kernels.linked_source`), so an edit of that file compiles them afresh instead of
loading the old code from Numba's cache (24-sequential-fast-path.md section 8).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from . import linked_source
from .rational_numba import _element, _unit_constants

KIND, DIN, DOUT, POFF, XOFF, YOFF, SOFF, COFF = range(8)

#: the kernel files whose njit code this module's kernels compile in, and their hash, the
#: closure variable of those kernels (:mod:`linked_source`)
LINKED_SOURCES = ("rational_numba.py",)
LINKED = linked_source.source_hash(*LINKED_SOURCES)
DENSE, TANH, SILU, RATIONAL = range(4)


@numba.njit(cache=True, nogil=True, inline="always")
def _rows(buf, per_example_offset, N, D):
    """The (N, D) block of ``buf`` at ``N * per_example_offset``."""
    start = N * per_example_offset
    return buf[start:start + N * D].reshape((N, D))


@numba.njit(cache=True, nogil=True)
def _finite(a):
    """Whether every entry of the 2-D array ``a`` is finite."""
    for n in range(a.shape[0]):
        for j in range(a.shape[1]):
            if not np.isfinite(a[n, j]):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def _copy(src, dst):
    """``dst[...] = src`` for 2-D arrays of one shape (explicit loops: Numba's slice assignment
    compiles several times slower, and compile time is the first step's wait)."""
    for n in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[n, j] = src[n, j]


@numba.njit(cache=True, nogil=True)
def _dense_params(theta, p, din, dout):
    W = theta[p:p + dout * din].reshape((dout, din))
    b = theta[p + dout * din:p + dout * din + dout]
    return W, b


@numba.njit(cache=True, nogil=True)
def _add_product(x, W, y):
    """``y += x W^T`` for x (N, din), W (dout, din): per row, the terms ``x[n, k] W[:, k]`` are
    added for k = 0, 1, ... (a contiguous inner loop over outputs, which LLVM vectorises
    without reassociating any sum).  Below 8 outputs the inner loop runs over the examples
    instead (each y[n, j] gets the same terms in the same order: the same bits, 6x faster for
    one output; 24-sequential-fast-path.md section 7)."""
    N, din = x.shape
    dout = W.shape[0]
    if dout < 8:
        for j in range(dout):
            for k in range(din):
                w = W[j, k]
                for n in range(N):
                    y[n, j] += x[n, k] * w
        return
    Wt = np.empty((din, dout))
    for j in range(dout):
        for k in range(din):
            Wt[k, j] = W[j, k]
    for n in range(N):
        for k in range(din):
            a = x[n, k]
            for j in range(dout):
                y[n, j] += a * Wt[k, j]


@numba.njit(cache=True, nogil=True)
def _affine(x, W, b, y):
    """``y = b + x W^T`` (the bias first, then the terms of :func:`_add_product`)."""
    for n in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[n, j] = b[j]
    _add_product(x, W, y)


@numba.njit(cache=True, nogil=True)
def _elementwise(kind, x, y, s):
    """``y = phi(x)``, ``s = phi'(x)`` for tanh or SiLU (06-activations.md sections 1-2)."""
    N, D = x.shape
    for n in range(N):
        for j in range(D):
            z = x[n, j]
            if kind == TANH:
                # one expm1 for both (06-activations.md section 1, the one-expm1 form:
                # scalar libm here, where it takes 0.43-0.55x the time of tanh + exp)
                t = abs(z)
                if t <= 354.0:                  # expm1(708) = 1.5e307: no overflow
                    m = math.expm1(2.0 * t)
                    r = 1.0 / (m + 2.0)
                    y[n, j] = math.copysign(m * r, z)
                    s[n, j] = 4.0 * ((m + 1.0) * r) * r
                else:                           # NaN fails both tests and propagates here
                    e = math.exp(-t)
                    y[n, j] = math.copysign(1.0, z) if t > 354.0 else z
                    s[n, j] = 4.0 * (e * e)
            else:
                e = np.exp(-abs(z))
                big = 1.0 / (1.0 + e)
                small = e * big
                sp, sm = (big, small) if z >= 0 else (small, big)
                y[n, j] = z * sp
                s[n, j] = sp * (1.0 + z * sm)


def _build_rational(linked: int):
    """The kernel :func:`_rational`, a closure over ``linked`` (:data:`LINKED`)."""

    @numba.njit(cache=True, nogil=True)
    def _rational(x, v, c, l, eps, y, parts):
        """``y = sigma(x)`` per unit; ``parts`` (4, N, U) = ``d/dx, d/dv, d/dc, d/dl``."""
        linked          # cache key: a closure variable (linked_source), no code
        N, U = x.shape
        K = _unit_constants(v, c, l, eps)
        for n in range(N):
            for u in range(U):
                r = _element(x[n, u], K[0, u], K[1, u], K[2, u], K[3, u], K[4, u], K[5, u], K[6, u])
                y[n, u], parts[0, n, u], parts[1, n, u], parts[2, n, u], parts[3, n, u] = r
    return _rational


_rational = _build_rational(LINKED)


def _build_sequential_forward_numba(linked: int):
    """The kernel :func:`sequential_forward_numba`, a closure over ``linked`` (:data:`LINKED`)."""

    @numba.njit(cache=True, nogil=True)
    def sequential_forward_numba(meta, eps, theta, X, ws_width):
        """Forward pass: returns ``(ws, status)``, ``ws`` (N * ws_width,) holding every layer's
        input, output and slopes (module docstring); the network output is layer L-1's ``y``.
        ``eps`` (L,) is each rational layer's epsilon; ``X`` (N, DIN of layer 0), C-contiguous."""
        linked          # cache key: a closure variable (linked_source), no code
        N = X.shape[0]
        ws = np.empty(N * ws_width)
        _copy(X, _rows(ws, meta[0, XOFF], N, meta[0, DIN]))
        for i in range(meta.shape[0]):
            kind, din, dout, p = meta[i, KIND], meta[i, DIN], meta[i, DOUT], meta[i, POFF]
            x = _rows(ws, meta[i, XOFF], N, din)
            y = _rows(ws, meta[i, YOFF], N, dout)
            if kind == DENSE:
                W, b = _dense_params(theta, p, din, dout)
                _affine(x, W, b, y)
            elif kind == RATIONAL:
                start = N * meta[i, SOFF]
                parts = ws[start:start + 4 * N * dout].reshape((4, N, dout))
                _rational(x, theta[p:p + dout], theta[p + dout:p + 2 * dout],
                          theta[p + 2 * dout:p + 3 * dout], eps[i], y, parts)
            else:
                _elementwise(kind, x, y, _rows(ws, meta[i, SOFF], N, dout))
            if not _finite(y):
                return ws, i
        return ws, -1
    return sequential_forward_numba


sequential_forward_numba = _build_sequential_forward_numba(LINKED)


@numba.njit(cache=True, nogil=True)
def _backward(meta, theta, ws, g, grad, cot, store_cot):
    """Reverse pass from the output cotangent ``g`` (N, K): adds ``J^T g`` into ``grad`` (P,),
    writes layer i's output cotangent into ``cot`` when ``store_cot``; returns the status."""
    N = g.shape[0]
    for i in range(meta.shape[0] - 1, -1, -1):
        kind, din, dout, p = meta[i, KIND], meta[i, DIN], meta[i, DOUT], meta[i, POFF]
        if not _finite(g):
            return i
        if store_cot:
            _copy(g, _rows(cot, meta[i, COFF], N, dout))
        need_in = i > 0
        gin = np.empty((N, din) if need_in else (0, din))
        if kind == DENSE:
            W, _ = _dense_params(theta, p, din, dout)
            x = _rows(ws, meta[i, XOFF], N, din)
            gW = grad[p:p + dout * din].reshape((dout, din))
            gb = grad[p + dout * din:p + dout * din + dout]
            for n in range(N):      # gW[j, k], gb[j]: the terms of n = 0, 1, ... in order
                if din <= 2:        # (the inner loop over outputs for one or two inputs)
                    for j in range(dout):
                        gb[j] += g[n, j]
                    for k in range(din):
                        for j in range(dout):
                            gW[j, k] += g[n, j] * x[n, k]
                    continue
                for j in range(dout):
                    d = g[n, j]
                    gb[j] += d
                    for k in range(din):
                        gW[j, k] += d * x[n, k]
            if need_in:
                for n in range(N):
                    for k in range(din):
                        gin[n, k] = 0.0
                for n in range(N):
                    for j in range(dout):
                        d = g[n, j]
                        for k in range(din):
                            gin[n, k] += d * W[j, k]
        elif kind == RATIONAL:
            start = N * meta[i, SOFF]
            parts = ws[start:start + 4 * N * dout].reshape((4, N, dout))
            for n in range(N):
                for u in range(dout):
                    d = g[n, u]
                    grad[p + u] += d * parts[1, n, u]
                    grad[p + dout + u] += d * parts[2, n, u]
                    grad[p + 2 * dout + u] += d * parts[3, n, u]
                    if need_in:
                        gin[n, u] = d * parts[0, n, u]
        elif need_in:
            s = _rows(ws, meta[i, SOFF], N, dout)
            for n in range(N):
                for j in range(dout):
                    gin[n, j] = g[n, j] * s[n, j]
        g = gin
    return -1


@numba.njit(cache=True, nogil=True)
def sequential_backward_numba(meta, theta, ws, dY, store_cot, cot_width):
    """``(grad (P,), cot, status)``: ``grad = sum_n J_n^T dY_n`` at the point stored in ``ws``;
    ``cot`` (N * cot_width,) holds every layer's output cotangent when ``store_cot``."""
    N = dY.shape[0]
    grad = np.zeros(theta.shape[0])
    cot = np.empty(N * cot_width if store_cot else 0)
    status = _backward(meta, theta, ws, dY, grad, cot, store_cot)
    return grad, cot, status


@numba.njit(cache=True, nogil=True)
def _output_cotangent(F, kind, T, labels):
    """``(L, E / N)`` for outputs ``F`` (N, K): kind 0 MSE ``l = |f - t|^2 / 2``, ``e = f - t``;
    kind 1/2 softmax cross-entropy with integer ``labels`` (N,) / probability rows ``T`` (N, K):
    ``l = (m - t . f) + log s`` with ``m = max f``, ``s = sum exp(f - m)``, ``e = exp(f - m)/s - t``
    (07-losses.md sections 1-2, the losses' own ``value_and_grad`` formulas)."""
    N, K = F.shape
    dY = np.empty((N, K))
    total = 0.0
    for n in range(N):
        if kind == 0:
            ln = 0.0
            for k in range(K):
                r = F[n, k] - T[n, k]
                ln += r * r
                dY[n, k] = r / N
            total += 0.5 * ln
            continue
        m = F[n, 0]
        for k in range(1, K):
            m = max(m, F[n, k])
        s = 0.0
        for k in range(K):
            dY[n, k] = np.exp(F[n, k] - m)
            s += dY[n, k]
        fy = 0.0
        for k in range(K):
            tk = (1.0 if k == labels[n] else 0.0) if kind == 1 else T[n, k]
            fy += tk * F[n, k]
            dY[n, k] = (dY[n, k] / s - tk) / N
        total += (m - fy) + np.log(s)
    return total / N, dY


@numba.njit(cache=True, nogil=True)
def sequential_loss_backward_numba(meta, theta, ws, N, kind, T, labels, cot_width):
    """``(L, grad (P,), cot, status)``: the mean loss of the outputs stored in ``ws`` (the last
    layer's ``y``) against ``T``/``labels`` (:func:`_output_cotangent`), and the reverse pass of
    ``e / N`` as :func:`sequential_backward_numba` with ``store_cot``."""
    K = meta[-1, DOUT]
    value, dY = _output_cotangent(_rows(ws, meta[-1, YOFF], N, K), kind, T, labels)
    grad = np.zeros(theta.shape[0])
    cot = np.empty(N * cot_width)
    status = _backward(meta, theta, ws, dY, grad, cot, True)
    return value, grad, cot, status


@numba.njit(cache=True, nogil=True)
def sequential_ggn_numba(meta, theta, ws, v, N, mode, aux):
    """``(F v (P,), status)`` with ``F v = (1/N) sum_n J_n^T M_n J_n v``, undamped.

    Forward mode from a zero input tangent: Dense ``t' = t W^T + x dW^T + db``, elementwise
    ``t' = phi'(x) t``, Rational ``t' = d/dx t + d/dv dv + d/dc dc + d/dl dl``; then
    ``M_n`` by ``mode``: 0 identity, 1 ``p * u - p (p . u)`` with ``aux = p`` (N, K) (softmax
    cross-entropy, true metric), 2 ``e (e . u)`` with ``aux = e`` (empirical); then
    :func:`_backward` of ``M J v / N``."""
    t = np.zeros((N, meta[0, DIN]))
    for i in range(meta.shape[0]):
        kind, din, dout, p = meta[i, KIND], meta[i, DIN], meta[i, DOUT], meta[i, POFF]
        out = np.empty((N, dout))
        if kind == DENSE:
            dW, db = _dense_params(v, p, din, dout)
            _affine(_rows(ws, meta[i, XOFF], N, din), dW, db, out)
            if i > 0:
                W, _ = _dense_params(theta, p, din, dout)
                _add_product(t, W, out)
        elif kind == RATIONAL:
            start = N * meta[i, SOFF]
            parts = ws[start:start + 4 * N * dout].reshape((4, N, dout))
            for n in range(N):
                for u in range(dout):
                    out[n, u] = (parts[0, n, u] * t[n, u] + parts[1, n, u] * v[p + u]
                                 + parts[2, n, u] * v[p + dout + u] + parts[3, n, u] * v[p + 2 * dout + u])
        else:
            s = _rows(ws, meta[i, SOFF], N, dout)
            for n in range(N):
                for j in range(dout):
                    out[n, j] = s[n, j] * t[n, j]
        if not _finite(out):
            return np.zeros(0), i
        t = out
    K = t.shape[1]
    for n in range(N):
        if mode != 0:
            dot = 0.0
            for k in range(K):
                dot += aux[n, k] * t[n, k]
            for k in range(K):
                t[n, k] = aux[n, k] * t[n, k] - aux[n, k] * dot if mode == 1 else aux[n, k] * dot
        for k in range(K):
            t[n, k] = t[n, k] / N
    grad = np.zeros(theta.shape[0])
    no_cot = N < 0          # False, typed bool: a literal False compiled a second specialisation
                            # of _backward (about 2 s of a cold start, measured)
    status = _backward(meta, theta, ws, t, grad, np.empty(0), no_cot)
    return grad, status
