"""A candidate unit's map from its incoming parameters to the consumer's new inputs, and back.

A width candidate of ``k`` units for the hidden layer of :class:`HiddenPath` ``path`` has
incoming parameters ``psi = (W, b, act)``.  Its units act on the producer's input only, so
for a batch of ``C`` candidates (shapes: ``W`` (C, k, in) for a Dense producer or
(C, k, Cin, kh, kw) for a Conv2D producer, ``b`` (C, k), ``act[name]`` (C, k)):

    z   = x W^T + b                      Dense producer, x (N, in)          -> (C, N, k)
    z_t = W_m p_t + b                    Conv2D producer, patches p (N, T_p, Cin kh kw),
                                         W_m = W reshaped (C, k, Cin kh kw) -> (C, N, k, Ho, Wo)
    y   = unit-wise layers of the path applied channel by channel (activation with the
          candidate's own parameters, average/max/global pooling, Flatten)
    h   = the consumer's new input coordinates, in the consumer's curvature layout (C, N, T, q):
          Dense consumer: q = k S (the ``S`` flat entries of each unit, unit by unit), T = 1;
          Conv2D consumer: q = k kh' kw' (the new channels' patch entries, ordered like the grown
          consumer's ``W.reshape(O, -1)`` columns), T = the consumer's output locations.

:meth:`CandidatePath.backward` is the hand-written adjoint: from ``dS/dh`` it returns
``dS/dW``, ``dS/db`` and ``dS/dact`` by the layers' derivatives (rational partials, the
activation's slope, the pooling kernels' adjoints, fold = adjoint of unfold, and the producer's
``dz^T x``).  ``derivations/16-kfac-proposal.md`` section 5; tests in
``tests/test_kfac_proposal.py::test_candidate_gradients_match_finite_differences``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_positive_int, check_rng, check_shape
from ..kernels import kernels_for, pool_kernels, rational_kernels
from ..layers.activations import Elementwise
from ..layers.conv2d import Conv2D
from ..layers.flatten import Flatten
from ..layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from ..layers.rational import Rational
from .structure import check_path


def kernel_grad(dz: np.ndarray, x_rows: np.ndarray) -> np.ndarray:
    """``dW[c, k, f] = sum_{n,t} dz[c, n, k, t] x[n, f, t]`` as one matrix product.

    dz (C, N, k, T_p) the cotangent of the producer's pre-activations; x_rows (N T_p, fan_in)
    the producer's inputs with row ``n T_p + t`` = ``x[n, :, t]``.  Returns (C, k, fan_in).
    The same sums as ``np.einsum("cnkt,nft->ckf", dz, x)`` (the previous code) in another
    order: equal to rounding (``tests/test_kfac_proposal.py::test_kernel_grad_equals_einsum``),
    and a BLAS ``(C k, N T_p) @ (N T_p, fan_in)`` product instead of einsum's loop (68-110 ms
    against 16 ms at 100 candidates x 1347 rows x 64 inputs; derivations/21-trainer.md section 5).
    """
    C, N, k, T = dz.shape
    rows = dz.transpose(0, 2, 1, 3).reshape(C * k, N * T)
    return (rows @ x_rows).reshape(C, k, x_rows.shape[1])


def candidate_rational(y: np.ndarray, act: dict, eps: float, backend=None):
    """``(sigma, d/dx, d/dv, d/dc, d/dl)`` of C candidates' rational units, each shaped like ``y``.

    y (C, N, k) + spatial: the candidates' pre-activations; ``act[name]`` (C, k) each
    candidate unit's own ``v, c, l``.  Evaluated by the backend's fused ``rational_forward``
    kernel (the layer's own kernel; both backends give the bits of ``rational_partials``, the
    public elementwise formula) on the layout ``(N, C k, S)``: candidate unit ``(c, j)`` is
    kernel unit ``c k + j``.  ``derivations/16-kfac-proposal.md`` section 5.
    """
    C, N, k = y.shape[:3]
    S = int(np.prod(y.shape[3:], dtype=np.int64))
    X = np.ascontiguousarray(np.swapaxes(y.reshape(C, N, k * S), 0, 1)).reshape(N, C * k, S)
    prm = [np.ascontiguousarray(act[name], dtype=np.float64).reshape(C * k) for name in ("v", "c", "l")]
    out = rational_kernels(backend)["rational_forward"](X, *prm, float(eps))
    return tuple(np.swapaxes(o.reshape(N, C, k * S), 0, 1).reshape(y.shape) for o in out)


class CandidatePath:
    """The candidate map of one hidden layer (module docstring); built once per context.

    ``net`` must hold the forward caches of the batch (the producer's input is read from them).
    Attributes: ``w_shape`` the per-unit kernel shape ((in,) or (Cin, kh, kw)); ``act_names``
    the per-unit activation parameter names (("v", "c", "l") for Rational, () otherwise);
    ``q`` new consumer inputs per unit; ``T`` consumer locations; ``N`` batch size.
    ``derivations/16-kfac-proposal.md`` sections 5-6.
    """

    def __init__(self, net, path) -> None:
        check_path(net, path)
        prod = net.layers[path.producer]
        cons = net.layers[path.consumer]
        self.conv_producer = isinstance(prod, Conv2D)
        self.conv_consumer = isinstance(cons, Conv2D)
        x = np.asarray(prod.curvature_inputs(), dtype=np.float64)          # (N, T_p, fan_in)
        self.x = np.ascontiguousarray(x.transpose(0, 2, 1))                 # (N, fan_in, T_p)
        self.x_rows = np.ascontiguousarray(x).reshape(-1, x.shape[2])        # (N T_p, fan_in)
        self.N = x.shape[0]
        self.w_shape = tuple(prod.params["W"].shape[1:])
        self.out_hw = tuple(prod.out_hw) if self.conv_producer else ()
        self.stages = [net.layers[j] for j in path.between]
        with_params = [la for la in self.stages if la.param_names]
        if len(with_params) > 1 or any(not isinstance(la, Rational) for la in with_params):
            raise ValueError(f"layer: the path {[la._label() for la in self.stages]} has more than one "
                             f"parameterised unit-wise layer (or one that is not Rational); candidates "
                             f"support at most one Rational")
        for la in self.stages:
            if not isinstance(la, (Rational, Elementwise, AvgPool2D, MaxPool2D, GlobalAvgPool, Flatten)):
                raise ValueError(f"layer: unit-wise layer {la._label()} is not supported by candidates")
        self.act_names = tuple(with_params[0].param_names) if with_params else ()
        self.consumer = cons
        if self.conv_consumer:
            kh, kw = cons.kernel_size
            self.q = kh * kw
            self.T = cons.out_hw[0] * cons.out_hw[1]
        else:
            self.q = path.slot
            self.T = 1

    @property
    def fan_in(self) -> int:
        """Inputs of one candidate unit (in, or Cin kh kw); 16-kfac-proposal.md section 7."""
        return int(np.prod(self.w_shape))

    def random(self, n, rng, k=1):
        """``n`` candidates of ``k`` units as the released code draws them: ``W`` (n, k) + w_shape
        LeCun-normal ``N(0, 1/fan_in)``, ``b`` (n, k) ``N(0, 1)``, each activation parameter
        (n, k) ``N(0, 1)``; drawn from ``rng`` in that order.  The draw of
        ``WidthProposals.random_candidates`` (and, before its norm projection, of
        ``EuclideanWidthProposals``); ``derivations/16-kfac-proposal.md`` section 7."""
        n = check_positive_int(n, "n (candidates)")
        k = check_positive_int(k, "k (units per candidate)")
        rng = check_rng(rng, "rng", allow_none=False)
        W = rng.standard_normal((n, k) + self.w_shape) / np.sqrt(self.fan_in)
        b = rng.standard_normal((n, k))
        act = {name: rng.standard_normal((n, k)) for name in self.act_names}
        return W, b, act

    def check(self, W, b, act):
        """Validated ``(W (C, k) + w_shape, b (C, k), act name -> (C, k))`` of C candidates, each
        array float64; ValueError/TypeError naming the argument.  16-kfac-proposal.md section 6."""
        W = as_float_array(W, "W (candidate kernels)", ndim=2 + len(self.w_shape))
        check_shape(W, (None, None) + self.w_shape, "W (candidate kernels)")
        C, k = W.shape[:2]
        b = as_float_array(b, "b (candidate biases)", ndim=2)
        check_shape(b, (C, k), "b (candidate biases)")
        act = {} if act is None else act
        if not isinstance(act, dict) or set(act) != set(self.act_names):
            got = sorted(act) if isinstance(act, dict) else type(act).__name__
            raise ValueError(f"act: expected the keys {sorted(self.act_names)}, got {got}")
        checked = {}
        for name in self.act_names:
            checked[name] = as_float_array(act[name], f"act[{name!r}]", ndim=2)
            check_shape(checked[name], (C, k), f"act[{name!r}]")
        return W, b, checked

    # ---- forward ------------------------------------------------------------------
    def forward(self, W, b, act):
        """``h`` (C, N, T, k q) for validated ``W`` (C, k) + w_shape, ``b`` (C, k),
        ``act`` name -> (C, k); also returns the tape :meth:`backward` needs.
        ``derivations/16-kfac-proposal.md`` sections 5-6; ``tests/test_kfac_proposal.py``."""
        C, k = b.shape
        Wm = W.reshape(C, k, -1)
        z = np.matmul(Wm[:, None], self.x[None]) + b[:, None, :, None]   # (C, N, k, T_p)
        y = z.reshape((C, self.N, k) + self.out_hw) if self.conv_producer else z[..., 0]
        tape = []
        for la in self.stages:
            y, saved = self._stage_forward(la, y, act)
            tape.append(saved)
        tape.append(y.shape)
        return self._to_consumer(y), tape

    def _stage_forward(self, la, y, act):
        C, N, k = y.shape[:3]
        if isinstance(la, Rational):
            sigma, dx, dv, dc, dl = candidate_rational(y, act, la.EPS, la.backend)
            return sigma, (dx, {"v": dv, "c": dc, "l": dl})
        if isinstance(la, Elementwise):
            value, slope = la._value_and_slope(y)
            return value, slope
        if isinstance(la, GlobalAvgPool):
            return y.mean(axis=(3, 4)), y.shape
        if isinstance(la, Flatten):
            return y, None                      # the consumer view reshapes (unit by unit)
        X4 = np.ascontiguousarray(y).reshape((C * N, k) + y.shape[3:])
        kern = pool_kernels(la.backend)
        if isinstance(la, AvgPool2D):
            out = kern["avgpool_forward"](X4, *la.size, *la.stride, *la.out_hw)
            return out.reshape((C, N, k) + la.out_hw), y.shape
        out, arg = kern["maxpool_forward"](X4, *la.size, *la.stride, *la.out_hw)
        return out.reshape((C, N, k) + la.out_hw), (y.shape, arg)

    def _to_consumer(self, y):
        C, N, k = y.shape[:3]
        if not self.conv_consumer:
            return y.reshape(C, N, 1, -1)                                  # unit by unit, row-major
        cons = self.consumer
        unfold_k = kernels_for(cons.backend)[0]
        P = unfold_k(np.ascontiguousarray(y).reshape((C * N, k) + y.shape[3:]),
                     *cons.kernel_size, *cons.stride, *cons.padding, *cons.out_hw)   # (CN, k q, T)
        return P.reshape(C, N, k * self.q, self.T).transpose(0, 1, 3, 2)

    # ---- adjoint --------------------------------------------------------------------
    def backward(self, dh, tape, W):
        """``(dW, db, dact)`` shaped like the candidate's ``(W, b, act)`` from ``dS/dh``
        (C, N, T, k q) and the tape of :meth:`forward` at the same candidates ``W``.
        ``derivations/16-kfac-proposal.md`` section 5;
        ``tests/test_kfac_proposal.py::test_candidate_gradients_match_finite_differences``."""
        y_shape = tape[-1]
        C, N, k = y_shape[:3]
        g = self._from_consumer(dh, y_shape)
        dact = {}
        for la, saved in zip(reversed(self.stages), reversed(tape[:-1])):
            g = self._stage_backward(la, g, saved, dact)
        dz = g.reshape(C, N, k, -1)                                             # (C, N, k, T_p)
        dW = kernel_grad(dz, self.x_rows).reshape(W.shape)
        db = dz.sum(axis=(1, 3))
        return dW, db, dact

    def _from_consumer(self, dh, y_shape):
        if not self.conv_consumer:
            return dh.reshape(y_shape)
        cons = self.consumer
        C, N, k = y_shape[:3]
        fold_k = kernels_for(cons.backend)[1]
        P = np.ascontiguousarray(dh.transpose(0, 1, 3, 2)).reshape(C * N, k * self.q, self.T)
        g = fold_k(P, k, *y_shape[3:], *cons.kernel_size, *cons.stride, *cons.padding, *cons.out_hw)
        return g.reshape(y_shape)

    def _stage_backward(self, la, g, saved, dact):
        if isinstance(la, Rational):
            dx, partials = saved
            axes = (1,) + tuple(range(3, g.ndim))
            for name, d in partials.items():
                dact[name] = (g * d).sum(axis=axes)
            return g * dx
        if isinstance(la, Elementwise):
            return g * saved
        if isinstance(la, GlobalAvgPool):
            shape = saved
            return np.broadcast_to(g[..., None, None] / (shape[3] * shape[4]), shape).copy()
        if isinstance(la, Flatten):
            return g
        kern = pool_kernels(la.backend)
        C, N, k = g.shape[:3]
        g4 = np.ascontiguousarray(g).reshape((C * N, k) + g.shape[3:])
        if isinstance(la, AvgPool2D):
            shape = saved
            out = kern["avgpool_backward"](g4, *shape[3:], *la.size, *la.stride)
        else:
            shape, arg = saved
            out = kern["maxpool_backward"](g4, arg, *shape[3:], *la.size, *la.stride)
        return out.reshape(shape)
