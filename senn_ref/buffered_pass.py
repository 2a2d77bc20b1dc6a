"""The layer-wise loss and gradient of a sequential Dense / Tanh / SiLU network in reused buffers.

:meth:`Network.loss_and_grad <senn_ref.network.Network.loss_and_grad>` on a batch the compiled
path (:mod:`senn_ref.network_plan`) does not take - the digits MLP 64-64-10 on 1797 examples,
or any batch under the ``"numpy"`` backend - runs the layers' own formulas in the layers' own
order, with the same NumPy calls, but writes every activation, slope and cotangent into
buffers kept between calls instead of fresh arrays:

* ``S = A W^T`` by ``np.matmul(..., out=)``, then ``S += b`` (the same sums as ``A @ W.T + b``);
* tanh ``Y = np.tanh(S)`` and its slope ``4 e/(1+e)^2``, ``e = exp(-|S|)^2``, by
  ``activations._tanh_and_slope`` writing into the buffers; SiLU by ``_silu_and_slope``, copied;
* softmax cross-entropy with its gradient written into the last cotangent buffer
  (``SoftmaxCrossEntropyLoss._value_and_grad_into``, the same operations as ``value_and_grad``),
  other losses by ``loss.value_and_grad``; then ``E / N``;
* backward ``dW = dS^T A``, ``db = sum_n dS[n]``, ``dA = dS W``, ``dX = dY * phi'(X)``.

The results are therefore the layer-wise results bit for bit (``tests/test_buffered_pass.py``
compares with ``np.array_equal``).  On this machine a fresh array of 1797 x 64 float64 (920 kB,
above glibc's mmap threshold) costs page faults on first touch; the layer-wise step made about
600 of them per call, and they, not the arithmetic, were its excess over JAX
(``derivations/24-sequential-fast-path.md`` section 6).

**When a buffer is reused.**  Each forward leaves the layers' caches as views of a work
buffer ``ws`` (the input copy of every Dense layer, the slope of every activation), and the
returned ``Gradients.output_grads`` are views of a cotangent buffer ``cot``.  A pooled buffer
(at most ``POOL`` per kind) is written again only when no one else references it: CPython's
reference count of the buffer, less the pool's own references (calibrated at import: what a
count includes differs between CPython versions) and the views held by the layers'
current cache dicts (which the new forward replaces; a cache dict that someone else also holds,
as ``FisherOperator`` does, does not count as replaceable, nor does a view in it that someone
else also holds, since a view references the buffer once however many hold the view), must be
zero.  Otherwise a fresh
buffer is allocated and pooled.  So an array a caller kept from an earlier call (an output
cotangent, a cached input) is never overwritten, and the usual loop, which still holds the
previous step's results while it asks for the next, alternates between two buffers.  The
parameter gradients are a fresh (P,) vector every call.

**Non-finite values.**  The layer-wise path raises when a layer input or a cotangent is not
finite.  Here every Dense output is summed (a NaN or infinity makes the sum non-finite; a
finite sum that overflows only causes a needless fallback) and every cotangent is covered by
the bias gradient of the Dense layer below it (``db`` sums its ``dS``; products with a slope and
sums propagate NaN/inf), or checked directly where no Dense layer follows; on any non-finite
value the pass returns None before changing anything, and the caller reruns the layer-wise
path, which raises its usual error.  The pass is not used inside
:func:`senn_ref.network_plan.layerwise`.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from . import backend as _backend
from . import network_plan
from .layers.activations import SiLU, Tanh, _silu_and_slope, _tanh_and_slope
from .layers.dense import Dense
from .losses.cross_entropy import SoftmaxCrossEntropyLoss

_KINDS = (Dense, Tanh, SiLU)
#: buffers kept per kind (work, cotangents, scratch)
POOL = 2
_KERNELS = None
_MAX_ROW = 128          # kernels.buffered_numba.MAX_ROW (not imported here: that imports Numba)


def _supported(layer) -> bool:
    return type(layer) in _KINDS and len(layer.in_shape) == 1


def _pool_refs(pool: list) -> list:
    """CPython's reference count of every entry of ``pool``, as seen from this function."""
    return [sys.getrefcount(buf) for buf in pool]


def _value_refs(cache: dict) -> list:
    """``(value, its reference count as seen from this function)`` for every value of ``cache``."""
    return [(v, sys.getrefcount(v)) for v in cache.values()]


def _cache_refs(layer):
    """``(layer's cache dict or None, its reference count as seen from this function)``."""
    cache = layer.__dict__.get("_cache")
    return cache, sys.getrefcount(cache)


class _Holder:
    pass


def _calibrate() -> tuple:
    """The counts the three functions above report for an object nobody else holds (an array
    held only by its list; a dict held only by an object's attribute; an array held only by
    its dict), measured rather than assumed, since what a count includes (the argument, a loop
    variable) differs between CPython versions."""
    holder = _Holder()
    holder._cache = {"A": np.empty(1)}
    return _pool_refs([np.empty(1)])[0], _cache_refs(holder)[1], _value_refs(holder._cache)[0][1]


_SOLE_POOL_REFS, _SOLE_CACHE_REFS, _SOLE_VALUE_REFS = _calibrate()


class BufferedPass:
    """Buffers and layout of one network structure (see the module docstring).

    ``layers``, ``signature`` (as :class:`~senn_ref.network_plan.SequentialPlan`), ``supported``;
    per example, ``ws_width`` work-buffer entries (the input copy, every layer output, every
    activation slope) and ``cot_width`` cotangent entries (every layer output)."""

    def __init__(self, net) -> None:
        self.layers = list(net.layers)
        self.signature = network_plan._signature(self.layers)
        self.supported = all(_supported(la) for la in self.layers)
        self._pools = {"ws": [], "cot": [], "scratch": []}
        if not self.supported:
            return
        self.din = self.layers[0].in_shape[0]
        self.douts = [la.output_shape(la.in_shape)[0] for la in self.layers]
        self.ws_width = self.din + sum(self.douts) + sum(
            d for la, d in zip(self.layers, self.douts) if type(la) is not Dense)
        self.cot_width = sum(self.douts)
        self.P = sum(p.size for la in self.layers for p in la.params.values())

    def matches(self, net) -> bool:
        """True while ``net`` has the same layer objects and shapes this pass was built for."""
        return net.layers == self.layers and network_plan._signature(net.layers) == self.signature

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pools"] = {name: [] for name in state["_pools"]}    # copies start without buffers
        return state

    # ------------------------------------------------------------------ buffers
    def _replaceable_views(self, buf) -> int:
        """How many references to ``buf`` the layers' current caches hold in dicts no one else
        holds, through views no one else holds (the new forward replaces those dicts, so they
        do not keep ``buf`` busy).  A view that a caller also holds (``A = layer._cache["A"]``,
        a copy of the dict, a memoryview of it) references ``buf`` once however many hold it,
        so it must count as a holder: the view's own count decides."""
        held = 0
        for la in self.layers:
            cache, refs = _cache_refs(la)
            if cache is None or refs > _SOLE_CACHE_REFS:
                continue
            held += sum(1 for v, r in _value_refs(cache)
                        if type(v) is np.ndarray and v.base is buf and r == _SOLE_VALUE_REFS)
        return held

    def _take(self, name: str, size: int, views: bool) -> np.ndarray:
        """A flat buffer of at least ``size`` entries from the pool ``name`` that no one else
        references (``views``: the layers' replaceable cache views do not count, for ``ws``),
        else a fresh one, added to the pool (at most ``POOL`` kept: a caller that holds the
        previous call's results while making the next call, the usual training loop, gets the
        other buffer rather than a fresh one every call)."""
        pool = self._pools[name]
        for buf, refs in zip(pool, _pool_refs(pool)):
            if buf.size >= size and refs - _SOLE_POOL_REFS == (self._replaceable_views(buf) if views else 0):
                return buf
        buf = np.empty(size)
        if len(pool) >= POOL:
            pool.pop(0)
        pool.append(buf)
        return buf

    # ------------------------------------------------------------------- passes
    def loss_and_grad(self, X: np.ndarray, Y, loss):
        """``(L, Gradients)`` exactly as the layer-wise ``Network.loss_and_grad``, or None (a
        non-finite value met; nothing changed).  ``X``: validated batch (N, in).  Under the
        ``"numba"`` backend the element loops of :mod:`senn_ref.kernels.buffered_numba` replace
        some NumPy statements (the same operations, so the same bits)."""
        kern = _kernels() if _backend.get_backend() == "numba" else None
        N = X.shape[0]
        ws = self._take("ws", N * self.ws_width, True)
        cot = self._take("cot", N * self.cot_width, False)
        pos = [0]

        def block(buf, d):
            start = pos[0]
            pos[0] += N * d
            return buf[start:start + N * d].reshape(N, d)

        A = block(ws, self.din)
        np.copyto(A, X)
        caches = []
        L = len(self.layers)
        wmax = max([d for la, d in zip(self.layers, self.douts) if type(la) is Tanh] or [1])
        scratch = self._take("scratch", N * wmax, False)

        def scr(d):                         # C-contiguous (N, d) scratch: one kernel specialisation
            return scratch[:N * d].reshape(N, d)

        exp_done = False                    # scratch holds exp(-|x|) of the next Tanh's input
        for i, (la, d) in enumerate(zip(self.layers, self.douts)):
            out = block(ws, d)
            if type(la) is Dense:
                np.matmul(A, la.params["W"].T, out=out)
                if kern is not None:
                    exp_done = i + 1 < L and type(self.layers[i + 1]) is Tanh
                    t = scr(d if exp_done else 0)
                    if not kern.finish_affine(out, la.params["b"], t, exp_done):
                        return None
                    if exp_done:
                        with np.errstate(under="ignore"):
                            np.exp(t, out=t)
                else:
                    out += la.params["b"]
                    if not math.isfinite(out.sum()):
                        return None
                caches.append({"A": A, "param_shapes": la._param_shapes()})
            else:
                slope = block(ws, d)
                if type(la) is Tanh and exp_done:
                    np.tanh(A, out=out)
                    kern.tanh_slope_from_exp(scr(d), slope)
                elif type(la) is Tanh:
                    _tanh_and_slope(A, slope, scr(d), value_out=out)
                else:
                    y, sl = _silu_and_slope(A)
                    np.copyto(out, y)
                    np.copyto(slope, sl)
                exp_done = False
                caches.append({"slope": slope})
            A = out
        F = A
        pos[0] = 0
        dYs = [block(cot, d) for d in self.douts]
        E = dYs[-1]
        value = None
        if kern is not None and type(loss) is SoftmaxCrossEntropyLoss and F.shape[1] <= _MAX_ROW:
            labels = loss._check_labels(F, Y)
            if labels is not None:
                m, s, fy = np.empty(N), np.empty(N), np.empty(N)
                kern.softmax_shift(F, E, m)
                np.exp(E, out=E)
                kern.softmax_ce_grad(F, E, np.ascontiguousarray(labels, dtype=np.int64), float(N), s, fy)
                value = np.mean((m - fy) + np.log(s))
        if value is None:
            if type(loss) is SoftmaxCrossEntropyLoss:
                value = loss._value_and_grad_into(F, Y, E)
            else:
                value, E_loss = loss.value_and_grad(F, Y)
                np.copyto(E, E_loss)
            E /= N
        grad = np.empty(self.P)
        grads, p, checked, gb_done = {}, self.P, False, None
        for i in range(L - 1, -1, -1):
            la, dY = self.layers[i], dYs[i]
            if type(la) is Dense:
                W = la.params["W"]
                p -= W.size + W.shape[0]
                gW = grad[p:p + W.size].reshape(W.shape)
                gb = grad[p + W.size:p + W.size + W.shape[0]]
                np.matmul(dY.T, caches[i]["A"], out=gW)
                if gb_done is None:
                    np.sum(dY, axis=0, out=gb)
                else:
                    gb[...] = gb_done
                if not math.isfinite(gb.sum()):
                    return None
                grads[f"{la.name}.b"], grads[f"{la.name}.W"] = gb, gW
                checked, gb_done = True, None
                if i > 0:
                    np.matmul(dY, W, out=dYs[i - 1])
                    checked = False
            elif i > 0:
                if kern is not None and type(self.layers[i - 1]) is Dense:
                    gb_done = np.empty(dY.shape[1])         # the Dense layer's db, formed here
                    kern.slope_product_colsum(dY, caches[i]["slope"], dYs[i - 1], gb_done)
                else:
                    np.multiply(dY, caches[i]["slope"], out=dYs[i - 1])
        if not checked and not math.isfinite(dYs[0].sum()):
            return None
        for la, cache in zip(self.layers, caches):
            la._cache = cache
        from .network import Gradients
        return float(value), Gradients({k: grads[k] for k in reversed(list(grads))}, None, dYs)


def _kernels():
    """:mod:`senn_ref.kernels.buffered_numba`, imported on first use (a NumPy-backend process
    never imports Numba)."""
    global _KERNELS
    if _KERNELS is None:
        from .kernels import buffered_numba
        _KERNELS = buffered_numba
    return _KERNELS


def loss_and_grad(net, X: np.ndarray, Y, loss):
    """``(L, Gradients)`` of :meth:`Network.loss_and_grad <senn_ref.network.Network.loss_and_grad>`
    by :class:`BufferedPass` (kept on the network, rebuilt when the structure changes), or None
    when it does not apply (a layer other than Dense/Tanh/SiLU on vectors, inside
    :func:`~senn_ref.network_plan.layerwise`, an ``X`` not a C-contiguous float64 (N, in) array)
    or met a non-finite value.  ``derivations/24-sequential-fast-path.md`` section 6."""
    if not network_plan._ENABLED or type(X) is not np.ndarray or X.ndim != 2 or X.dtype != np.float64:
        return None
    bp = net.__dict__.get("_buffered_pass")
    if bp is None or not bp.matches(net):
        bp = net._buffered_pass = BufferedPass(net)
    if not bp.supported or X.shape[1] != bp.din:
        return None
    return bp.loss_and_grad(X, Y, loss)
