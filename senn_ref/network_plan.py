"""The compiled whole-network fast path for sequential Dense / Tanh / SiLU / Rational networks.

A :class:`SequentialPlan` describes a network's structure for the kernels of
:mod:`senn_ref.kernels.sequential_numba`: the layer table ``meta`` (one row per layer: kind,
widths, parameter offset, per-example offsets of the cached arrays), the rational epsilons,
the parameter keys and shapes.  :func:`plan_for` returns the plan of a network, built once
and kept on the network; it is rebuilt whenever the layer list or any parameter or input
shape differs from what it was built for (every growth operation changes one of them).
Parameters are gathered into one flat vector on every call (in-place updates are seen).

Used by :meth:`Network.loss_and_grad <senn_ref.network.Network.loss_and_grad>` (a forward
kernel, then one kernel for the MSE or cross-entropy loss and the reverse pass) and by
:class:`senn_ref.fisher.FisherOperator` (one kernel per GGN-vector product).  Each forward
leaves the layers' caches as the layer-wise ``forward`` does (views of one work buffer), so
every later ``backward``/``jvp`` sees the same point.  The fast path is taken only under the
``"numba"`` backend, for networks made solely of ``Dense``, ``Tanh``, ``SiLU`` and dense
``Rational`` layers (exact types, Rational without its own ``"numpy"`` backend), and for
batches small enough that it pays (:meth:`SequentialPlan.fast_for`); anything else, and any
non-finite value met inside a kernel, runs the layer-wise path (which raises its usual
errors).  ``derivations/24-sequential-fast-path.md``; tests
``tests/test_network_plan.py``.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from . import backend as _backend
from .fast_path_switch import FastPathSwitch
from .layers.activations import SiLU, Tanh
from .layers.dense import Dense
from .layers.rational import Rational
from .losses.cross_entropy import SoftmaxCrossEntropyLoss
from .losses.mse import MSELoss

_KINDS = {Dense: 0, Tanh: 1, SiLU: 2, Rational: 3}
_KERNELS = None
_ENABLED = FastPathSwitch("whole-network path")
#: per-pass limits of the compiled path (SequentialPlan.fast_for)
MAX_DENSE_WORK = 1 << 17
MAX_ELEMENTWISE_WORK = 1 << 12
_NO_T = np.zeros((0, 0))
_NO_LABELS = np.zeros(0, dtype=np.int64)


def kernels():
    """``(forward, backward, ggn, loss_backward)`` kernels of :mod:`senn_ref.kernels.sequential_numba`,
    imported on first use (a NumPy-backend process never imports Numba)."""
    global _KERNELS
    if _KERNELS is None:
        from .kernels import sequential_numba as k
        _KERNELS = (k.sequential_forward_numba, k.sequential_backward_numba, k.sequential_ggn_numba,
                    k.sequential_loss_backward_numba)
    return _KERNELS


def _supported(layer) -> bool:
    kind = type(layer)
    if kind not in _KINDS:
        return False
    if kind is Rational:
        return layer.spatial == () and layer.backend in (None, "numba")
    return len(layer.in_shape) == 1


def _signature(layers) -> list:
    """What the plan depends on besides the layer objects: names, every parameter shape, every
    activation's input shape, every rational layer's backend and epsilon."""
    out = []
    for la in layers:
        out.append(la.name)
        if la.param_names:             # la._param_shapes() without its per-shape tuple copies
            params = la.params
            out.append(tuple([params[k].shape for k in la.param_names]))
        else:
            out.append(tuple(la.in_shape))
        if type(la) is Rational:
            out.append((la.backend, la.EPS))
    return out


class SequentialPlan:
    """Layer table of one network structure (see the module docstring).

    Attributes: ``layers`` (the layer objects), ``supported``, and when supported ``meta``
    (L, 8) int64, ``eps`` (L,), ``P``, ``keys``/``shapes``/``slices`` of the flat parameter
    order, ``ws_width``/``cot_width`` (work-buffer entries per example), ``out_width`` K.
    """

    def __init__(self, net) -> None:
        self.layers = list(net.layers)
        self.signature = _signature(self.layers)
        self.supported = all(_supported(la) for la in self.layers)
        if not self.supported:
            return
        L = len(self.layers)
        self.meta = np.zeros((L, 8), dtype=np.int64)
        self.eps = np.zeros(L)
        self.keys, self.shapes, self.slices, self._params = [], [], [], []
        p = cot = xoff = 0
        pos = self.layers[0].in_shape[0]                   # layer 0's input copy at offset 0
        for i, la in enumerate(self.layers):
            din, dout = la.in_shape[0], la.output_shape(la.in_shape)[0]
            soff = 0
            if type(la) is not Dense:                      # slopes / rational partials
                soff = pos
                pos += (4 if type(la) is Rational else 1) * dout
                self.eps[i] = getattr(la, "EPS", 0.0)
            self.meta[i] = (_KINDS[type(la)], din, dout, p, xoff, pos, soff, cot)
            xoff = pos                                     # layer i's output is layer i+1's input
            pos += dout
            cot += dout
            for k in la.param_names:
                arr = la.params[k]
                self.keys.append(f"{la.name}.{k}")
                self.shapes.append(arr.shape)
                self.slices.append(slice(p, p + arr.size))
                self._params.append((la, k))
                p += arr.size
        ws = pos
        self.P, self.ws_width, self.cot_width = p, ws, cot
        self.dense_work = sum(la.params["W"].size for la in self.layers if type(la) is Dense)
        self.elementwise_work = sum(la.in_shape[0] for la in self.layers if type(la) in (Tanh, SiLU))
        self.out_width = int(self.meta[-1, 2])
        self._cache_plan = [(int(r[0]), int(r[2]), int(r[4]), int(r[6]), la._param_shapes())
                            for r, la in zip(self.meta, self.layers)]
        self._cot_plan = [(int(r[2]), int(r[7])) for r in self.meta]

    def fast_for(self, N: int) -> bool:
        """Whether the compiled pass pays for a batch of N: at most ``MAX_DENSE_WORK``
        multiply-adds in the Dense layers and ``MAX_ELEMENTWISE_WORK`` tanh/SiLU evaluations
        per pass.  Above that the arithmetic outweighs the Python overhead, and NumPy's
        BLAS and vectorised tanh/exp beat the kernel's loops (measured, 24-sequential-fast-path.md
        section 4).  A function of the structure and N only, so a run takes the same path
        when it is repeated or resumed."""
        return N * self.dense_work <= MAX_DENSE_WORK and N * self.elementwise_work <= MAX_ELEMENTWISE_WORK

    def matches(self, net) -> bool:
        """True while ``net`` has the same layer objects and shapes this plan was built for."""
        return net.layers == self.layers and _signature(net.layers) == self.signature

    def theta(self) -> np.ndarray:
        """The current parameters as one flat vector (P,) in the network's flat order (P = 0 for
        a network of Tanh/SiLU layers only)."""
        parts = [la.params[k].reshape(-1) for la, k in self._params]
        return np.concatenate(parts, dtype=np.float64) if parts else np.zeros(0)


@contextmanager
def layerwise():
    """Context manager: take the layer-wise path even where the compiled one applies (for
    side-by-side benchmarks, ``senn_ref.bench.peers``).  A process switch
    (:class:`senn_ref.fast_path_switch.FastPathSwitch`): overlapping blocks in several threads
    are safe."""
    with _ENABLED.off():
        yield


def plan_for(net):
    """The :class:`SequentialPlan` of ``net`` when the fast path applies (the ``"numba"``
    backend and only supported layers, outside :func:`layerwise`), else None.  Kept on the
    network, rebuilt when :meth:`SequentialPlan.matches` fails.
    ``derivations/24-sequential-fast-path.md`` section 2."""
    if not _ENABLED or _backend.get_backend() != "numba":
        return None
    plan = net.__dict__.get("_sequential_plan")
    if plan is None or not plan.matches(net):
        plan = net._sequential_plan = SequentialPlan(net)
    return plan if plan.supported else None


def _finite(a: np.ndarray) -> bool:
    """Whether every entry of ``a`` is finite.  The kernels check activations, tangents and
    cotangents only; a sum they accumulate into (a parameter gradient, a GGN product) can still
    overflow, silently in compiled code, where NumPy's layer-wise path warns (RuntimeWarning):
    such a result sends the call to the layer-wise path, which warns and gives the same values
    (derivations/24-sequential-fast-path.md section 3)."""
    return bool(np.isfinite(a).all())


class Point:
    """One compiled forward pass at a batch: ``plan``, ``theta`` (P,), the work buffer ``ws``,
    ``N`` and ``outputs`` (N, K).  :meth:`backward` and :meth:`ggn` reuse it; both return
    None when a kernel met or produced a non-finite value (the caller then runs the layer-wise
    path, which warns and raises as usual)."""

    def __init__(self, plan: SequentialPlan, theta: np.ndarray, ws: np.ndarray, N: int) -> None:
        self.plan, self.theta, self.ws, self.N = plan, theta, ws, N
        start = N * int(plan.meta[-1, 5])
        self.outputs = ws[start:start + N * plan.out_width].reshape(N, plan.out_width)

    def set_caches(self) -> None:
        """Give every layer the forward cache its own ``forward`` would have stored (views of ``ws``)."""
        ws, N = self.ws, self.N
        for la, (kind, dout, xoff, soff, pshapes) in zip(self.plan.layers, self.plan._cache_plan):
            if kind == 0:
                din = la.params["W"].shape[1]
                la._cache = {"A": ws[N * xoff:N * (xoff + din)].reshape(N, din), "param_shapes": pshapes}
            elif kind == 3:
                parts = ws[N * soff:N * (soff + 4 * dout)].reshape(4, N, dout)
                la._cache = {"shape": (N, dout), "dx": parts[0], "v": parts[1], "c": parts[2],
                             "l": parts[3], "param_shapes": pshapes}
            else:
                la._cache = {"slope": ws[N * soff:N * (soff + dout)].reshape(N, dout)}

    def backward(self, dY: np.ndarray, store_cot: bool = False):
        """``(grad (P,), output_grads list or None)`` with ``grad = sum_n J_n^T dY_n``, dY (N, K)."""
        plan = self.plan
        grad, cot, status = kernels()[1](plan.meta, self.theta, self.ws, dY, store_cot, plan.cot_width)
        if status >= 0 or not _finite(grad):
            return None
        if not store_cot:
            return grad, None
        return grad, self.output_grads(cot)

    def output_grads(self, cot: np.ndarray) -> list:
        """Layer i's output cotangent (N, DOUT_i) for every i, views of the kernel's ``cot``."""
        N = self.N
        return [cot[N * off:N * (off + d)].reshape(N, d) for d, off in self.plan._cot_plan]

    def ggn(self, v: np.ndarray, mode: int = 0, aux: np.ndarray | None = None):
        """``F v = (1/N) sum_n J_n^T M_n J_n v`` (P,), v (P,) (mode/aux:
        :func:`~senn_ref.kernels.sequential_numba.sequential_ggn_numba`);
        ``derivations/24-sequential-fast-path.md`` section 1."""
        aux = _NO_T if aux is None else aux
        Fv, status = kernels()[2](self.plan.meta, self.theta, self.ws, v, self.N, mode, aux)
        return None if status >= 0 or not _finite(Fv) else Fv

    def gradients(self, grad: np.ndarray, output_grads: list):
        """A :class:`~senn_ref.network.Gradients` of views of ``grad`` (P,)."""
        from .network import Gradients
        plan = self.plan
        grads = {k: grad[sl].reshape(shape) for k, sl, shape in zip(plan.keys, plan.slices, plan.shapes)}
        return Gradients(grads, None, output_grads)


def forward_point(net, X: np.ndarray) -> Point | None:
    """Run the compiled forward pass of ``net`` at a validated batch ``X`` (N, in) and set the
    layers' caches; None when the fast path does not apply or met a non-finite activation
    (nothing has changed then).  ``derivations/24-sequential-fast-path.md`` sections 2-3."""
    plan = plan_for(net)
    if (plan is None or type(X) is not np.ndarray or X.dtype != np.float64 or X.ndim != 2
            or X.shape[1] != plan.meta[0, 1] or not X.flags.c_contiguous or not plan.fast_for(X.shape[0])):
        return None
    theta = plan.theta()
    ws, status = kernels()[0](plan.meta, plan.eps, theta, X, plan.ws_width)
    if status >= 0:
        return None
    point = Point(plan, theta, ws, X.shape[0])
    point.set_caches()
    return point


def _compiled_targets(loss, F: np.ndarray, Y):
    """``(kind, T, labels)`` for the compiled loss of ``sequential_loss_backward_numba`` (targets
    checked by the loss's own methods, so errors read as in the layer-wise path), or None for a
    loss other than MSE and softmax cross-entropy."""
    if type(loss) is MSELoss:
        return 0, loss._check_targets(F, Y), _NO_LABELS
    if type(loss) is SoftmaxCrossEntropyLoss:
        labels = loss._check_labels(F, Y)
        if labels is None:
            return 2, loss._check_probabilities(F, Y), _NO_LABELS
        return 1, _NO_T, np.ascontiguousarray(labels, dtype=np.int64)
    return None


def loss_and_grad(net, X: np.ndarray, Y, loss):
    """``(L, Gradients)`` as :meth:`Network.loss_and_grad` computes them: the compiled forward
    pass, then for MSE and softmax cross-entropy one kernel for the loss and the reverse pass
    (other losses: ``loss.value_and_grad`` between the two kernels).  None when the fast path
    does not apply or the loss or a gradient is not finite (the layer-wise path then warns as
    NumPy does); ``X`` validated (N, in); the loss checks ``Y`` and raises as usual.
    ``derivations/24-sequential-fast-path.md`` sections 1 and 3."""
    point = forward_point(net, X)
    if point is None:
        return None
    targets = _compiled_targets(loss, point.outputs, Y)
    if targets is None:
        value, E = loss.value_and_grad(point.outputs, Y)
        res = point.backward(E / point.N, store_cot=True)
        if res is None:
            return None
        return value, point.gradients(*res)
    plan = point.plan
    value, grad, cot, status = kernels()[3](plan.meta, point.theta, point.ws, point.N, *targets,
                                            plan.cot_width)
    if status >= 0 or not (np.isfinite(value) and _finite(grad)):
        return None         # the layer-wise rerun raises, or warns on the overflow, as usual
    return float(value), point.gradients(grad, point.output_grads(cot))
