"""Matrix-free products with the exact GGN:  F v = (1/N) sum_n J_n^T M_n (J_n v).

One product costs one forward-mode pass (``J_n v`` for all n at once), one
application of the output metric (``loss.metric_apply``), and one ordinary
backward pass with cotangents ``(1/N) M_n J_n v`` (the backward pass sums
``J_n^T w_n`` over the batch).  No (P, P) or (N, K, P) array is ever formed.
See ``derivations/09-fisher.md`` section 4; tested in ``tests/test_fisher.py``.
"""
from __future__ import annotations

import numpy as np

from .. import backend as _backend
from .._validate import as_float_array, check_network, check_scalar
from ..losses.base import check_loss
from ..losses.cross_entropy import SoftmaxCrossEntropyLoss
from ..losses.mse import MSELoss
from ..network_plan import forward_point
from .exact import check_metric


def _compiled_metric(loss, metric: str, F: np.ndarray, T):
    """``(mode, aux)`` of ``sequential_ggn_numba`` for this loss and output metric: identity
    (euclidean, or MSE's true metric), ``p`` for softmax cross-entropy's true metric, ``e``
    for the empirical metric of either loss; False for any other loss."""
    if metric == "euclidean" or (metric == "true" and type(loss) is MSELoss):
        return 0, None
    if type(loss) is SoftmaxCrossEntropyLoss and metric == "true":
        return 1, loss.probabilities(F)
    if type(loss) in (MSELoss, SoftmaxCrossEntropyLoss) and metric == "empirical":
        return 2, loss._output_grad(F, T)
    return False


_NO_AUX = np.zeros((0, 0))


def _check_vector(v, P: int) -> np.ndarray:
    v = as_float_array(v, "v", ndim=1, allow_empty=True)
    if v.shape != (P,):
        raise ValueError(f"v: expected shape ({P},) (one entry per network parameter), got {v.shape}")
    return v


class FisherOperator:
    """The linear operator ``v -> (F + delta I) v`` at a fixed point (network parameters, X).

    ``FisherOperator(net, X, loss, metric="euclidean", Y=None, damping=0.0)`` runs one
    forward pass and keeps the outputs; each ``matvec(v)`` (v of shape (P,), returns (P,))
    then costs one JVP and one backward pass.  The operator remembers which layer caches
    its forward produced: if anything else runs ``net.forward`` in between, the next
    product re-runs the forward on ``X`` first, so a product never silently uses another
    point.  Changing the parameters in place after construction is not detected (build
    a new operator after every parameter update).

    Attributes: ``P`` (number of parameters), ``outputs`` (N,) + out_shape, ``damping``,
    ``n_products`` (number of products so far).
    See ``derivations/09-fisher.md`` section 4.
    """

    def __init__(self, net, X, loss, metric: str = "euclidean", Y=None, damping: float = 0.0) -> None:
        check_network(net)
        check_loss(loss)
        check_metric(metric, Y)
        self.damping = check_scalar(damping, "damping", minimum=0.0)
        self.net, self.loss, self.metric = net, loss, metric
        self.X = as_float_array(X, "X", ndim=len(net.in_shape) + 1)
        self.Y = Y
        self._targets = None
        self.P = net.num_params()
        self.n_products = 0
        self._refresh()
        if metric != "euclidean":
            flat = self.outputs.reshape(self.outputs.shape[0], -1)
            self._targets = None if Y is None else loss.check(flat, Y)[1]

    def _refresh(self) -> None:
        # the compiled whole-network pass when it applies (network_plan; the same numbers and
        # caches as net.forward, derivations/24-sequential-fast-path.md), else layer by layer
        self._point = forward_point(self.net, self.X) if _backend.get_backend() == "numba" else None
        self.outputs = self.net.forward(self.X) if self._point is None else self._point.outputs
        self._caches = [layer._cache for layer in self.net.layers]
        self._metric_aux = None

    def _fast_ggn(self, v: np.ndarray):
        """``F v`` by one compiled kernel (``Point.ggn``), or None when it does not apply
        (layer-wise network, a loss/metric pair without a compiled metric, a non-finite value)."""
        point = self._compiled_point()
        return None if point is None else point.ggn(v, *self._metric_aux)

    def _compiled_point(self, plan_checked: bool = False):
        """The compiled ``Point`` when this operator's products take the compiled path (a
        matching plan and a loss/metric pair with a compiled metric, looked up once), else None.
        ``plan_checked``: the caller knows the plan still matches the network (it built the
        point itself and nothing reached the network since), so ``plan.matches`` is skipped."""
        point = self._point
        if point is None or not (plan_checked or point.plan.matches(self.net)):
            return None
        if self._metric_aux is None:
            self._metric_aux = _compiled_metric(self.loss, self.metric, point.outputs, self._targets)
        return None if self._metric_aux is False else point

    def compiled_ggn(self):
        """``(meta, theta, ws, N, mode, aux)``, the arguments of the compiled GGN kernel
        (``sequential_ggn_numba``) at this operator's point, when its products take the compiled
        path (``Point.ggn``), else None.  Used by :func:`senn_ref.natural_gradient.solve_fisher`
        to run the whole CG loop in one compiled call (``kernels/cg_numba.py``)."""
        return self._compiled_ggn(plan_checked=False)

    def _compiled_ggn(self, plan_checked: bool):
        """:meth:`compiled_ggn`; ``plan_checked`` as in :meth:`_compiled_point` (internal callers
        that built this operator themselves, :func:`senn_ref.natural_gradient.natural_gradient`)."""
        self._ensure_point()
        point = self._compiled_point(plan_checked)
        if point is None:
            return None
        mode, aux = self._metric_aux
        return point.plan.meta, point.theta, point.ws, point.N, mode, _NO_AUX if aux is None else aux

    def _ensure_point(self) -> None:
        if any(layer._cache is not c for layer, c in zip(self.net.layers, self._caches)) \
                or len(self._caches) != len(self.net.layers):
            self._refresh()

    def vjp(self, dY) -> np.ndarray:
        """``sum_n J_n^T dY_n`` (P,) at the operator's point for output cotangents dY (N,) +
        out_shape (``net.backward(dY).flat_grad()``, by the compiled kernel when it applies)."""
        self._ensure_point()
        return self._vjp(dY, plan_checked=False)

    def _vjp(self, dY, plan_checked: bool) -> np.ndarray:
        """:meth:`vjp` after ``_ensure_point``; ``plan_checked`` as in :meth:`_compiled_point`."""
        point = self._point
        if (point is not None and type(dY) is np.ndarray and dY.dtype == np.float64
                and dY.shape == point.outputs.shape and (plan_checked or point.plan.matches(self.net))):
            res = point.backward(np.ascontiguousarray(dY))
            if res is not None:
                return res[0]
        return self.net.backward(dY).flat_grad()

    def ggn_matvec(self, v) -> np.ndarray:
        """Undamped product ``F v``, v (P,) -> (P,)."""
        v = _check_vector(v, self.P)
        self._ensure_point()
        self.n_products += 1
        fast = self._fast_ggn(v)
        if fast is not None:
            return fast
        N = self.outputs.shape[0]
        Jv = self.net.jvp_flat(v)
        if self.metric == "euclidean":
            MJv = Jv
        else:
            flat = Jv.reshape(N, -1)
            out = self.outputs.reshape(N, -1)
            MJv = np.asarray(self.loss.metric_apply(out, self._targets, flat, self.metric)).reshape(Jv.shape)
        return self.net.backward(MJv / N).flat_grad()

    def matvec(self, v) -> np.ndarray:
        """Damped product ``(F + delta I) v``, v (P,) -> (P,)."""
        v = _check_vector(v, self.P)
        out = self.ggn_matvec(v)
        if self.damping:
            out = out + self.damping * v
        return out

    __call__ = matvec


def matvec(net, X, loss, v, metric: str = "euclidean", Y=None) -> np.ndarray:
    """``F v = (1/N) sum_n J_n^T M_n J_n v`` for a flat vector v (P,), matrix-free; returns (P,).

    Arguments as in :func:`senn_ref.fisher.exact` (``Y`` only needed for
    ``metric="empirical"``).  For many products at one point use
    :class:`FisherOperator`, which reuses the forward pass.
    See ``derivations/09-fisher.md`` section 4.
    """
    check_network(net)
    _check_vector(v, net.num_params())
    return FisherOperator(net, X, loss, metric=metric, Y=Y).ggn_matvec(v)
