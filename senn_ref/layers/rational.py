"""The normalised rational activation of SENN.

Per unit ``j`` with parameters ``(v_j, c_j, l_j)`` and ``EPS = 1e-8``::

    sigma(x) = [ (2 v x + c) / (1 + x^2) + l x ] / sqrt(v^2 + c^2 + l^2 + EPS)

Notation used in every docstring below (all elementwise, broadcast together):

* basis  ``b(x) = (2t, w, x)`` with ``t = x/(1+x^2)``, ``w = 1/(1+x^2)``,
  so the numerator is ``u = 2 v t + c w + l x = theta . b`` with ``theta = (v, c, l)``;
* ``s = v^2 + c^2 + l^2 + EPS``, ``n = sqrt(s)``, ``sigma = u / n``;
* ``p = (1 - x^2)/(1 + x^2)^2 = w - 2 t^2``.

Every partial derivative is written in a cancellation-free form (the
"self" term of the quotient rule is removed algebraically), so e.g. the
derivative w.r.t. ``l`` at the identity point ``(0, 0, 1)``, which is of
size ``EPS x``, keeps full relative accuracy.

Numerics: ``t``, ``w``, ``p`` are computed from ``x`` when ``|x| <= 1`` and from
``y = 1/x`` when ``|x| > 1`` (``t = y/(1+y^2)``, ``w = y t``,
``p = (y-1)(y+1) t^2``), so nothing overflows and ``1 + x^2`` is never formed
for large ``|x|``; ``w`` and ``p`` underflow (correctly) to subnormals/zero for
``|x| > ~1e154`` and such underflow is not reported.  ``sigma`` and the
derivative w.r.t. ``l`` grow like ``x`` and overflow only when their true
values exceed the float64 range.

The layer ``Rational`` applies unit ``j`` to axis 1 of a batch
``(N, units)`` (dense) or ``(N, units, H, W)`` (conv channels).
Derivation: ``derivations/05-rational.md`` (section 8 for the fused kernel);
tests: ``tests/test_rational.py``, ``tests/test_rational_kernel.py``.
"""
from __future__ import annotations

import numpy as np

from .. import backend as _backend
from .._validate import as_float_array, check_option, check_positive_int, check_rng, check_scalar
from ..kernels import rational_kernels
from ..kernels.rational_numpy import rational_basis_numpy, rational_partials_numpy
from .base import Layer

#: the normalisation constant epsilon of the rational activation
EPS = 1e-8


def identity_scale(eps: float = EPS) -> float:
    """``1/sqrt(1 + eps)``: the slope of sigma at the identity point ``(0, 0, 1)``.

    A layer inserted at the identity point maps ``x -> x * identity_scale()``;
    a function-preserving insertion multiplies the consuming weights by
    ``sqrt(1 + eps) = 1/identity_scale()``.  See ``derivations/05-rational.md`` §4.
    """
    eps = check_scalar(eps, "eps", minimum=0.0)
    return 1.0 / np.sqrt(1.0 + eps)


# The unvalidated NumPy formulas (``rational_basis_numpy``, ``rational_partials_numpy``) live
# in senn_ref/kernels/rational_numpy.py next to their fused Numba twin
# (derivations/05-rational.md "Kernel"); the functions below validate, then call them.
def _prepare(x, v, c, l, eps):
    """Validate the arguments of the public pure functions and broadcast them."""
    x = as_float_array(x, "rational x", allow_empty=True)
    v = as_float_array(v, "rational v", allow_empty=True)
    c = as_float_array(c, "rational c", allow_empty=True)
    l = as_float_array(l, "rational l", allow_empty=True)
    eps = check_scalar(eps, "rational eps", minimum=0.0)
    try:
        np.broadcast_shapes(x.shape, v.shape, c.shape, l.shape)
    except ValueError as exc:
        raise ValueError(f"rational: shapes x{x.shape}, v{v.shape}, c{c.shape}, l{l.shape} "
                         f"do not broadcast") from exc
    if eps == 0.0 and np.any((v == 0) & (c == 0) & (l == 0)):
        raise ValueError("rational: (v, c, l) = 0 with eps = 0 has no normalisation")
    return x, v, c, l, eps


# ---------------------------------------------------------------------------
# public pure functions (validated); all arrays broadcast together, float64
# ---------------------------------------------------------------------------
def rational_partials(x, v, c, l, eps: float = EPS):
    """All of ``(sigma, dsigma/dx, dsigma/dv, dsigma/dc, dsigma/dl)`` in one pass.

    ``x``, ``v``, ``c``, ``l``: float arrays broadcast together; every output has
    the broadcast shape.  Formulas: see the five functions below and
    ``derivations/05-rational.md`` §2-3.
    """
    return rational_partials_numpy(*_prepare(x, v, c, l, eps))


def rational_value(x, v, c, l, eps: float = EPS) -> np.ndarray:
    """``sigma = (2 v t + c w + l x)/n`` with ``t = x/(1+x^2)``, ``w = 1/(1+x^2)``,
    ``n = sqrt(v^2+c^2+l^2+eps)``.  Broadcast shape.  ``derivations/05-rational.md`` §1."""
    return rational_partials(x, v, c, l, eps)[0]


def rational_dx(x, v, c, l, eps: float = EPS) -> np.ndarray:
    """``dsigma/dx = [2 v (1-x^2)/(1+x^2)^2 - 2 c x/(1+x^2)^2 + l] / n``.
    Broadcast shape.  ``derivations/05-rational.md`` §2."""
    return rational_partials(x, v, c, l, eps)[1]


def rational_dv(x, v, c, l, eps: float = EPS) -> np.ndarray:
    """``dsigma/dv = 2t/n - v sigma/n^2 = [2t (c^2 + l^2 + eps) - v (c w + l x)] / n^3``.

    At ``(0, 0, 1)``: ``2x/(1+x^2) / sqrt(1+eps)``.  ``derivations/05-rational.md`` §3."""
    return rational_partials(x, v, c, l, eps)[2]


def rational_dc(x, v, c, l, eps: float = EPS) -> np.ndarray:
    """``dsigma/dc = w/n - c sigma/n^2 = [w (v^2 + l^2 + eps) - c (2 v t + l x)] / n^3``.

    At ``(0, 0, 1)``: ``1/(1+x^2) / sqrt(1+eps)``.  ``derivations/05-rational.md`` §3."""
    return rational_partials(x, v, c, l, eps)[3]


def rational_dl(x, v, c, l, eps: float = EPS) -> np.ndarray:
    """``dsigma/dl = x/n - l sigma/n^2 = [x (v^2 + c^2 + eps) - l (2 v t + c w)] / n^3``.

    At ``(0, 0, 1)``: ``eps x / (1+eps)^(3/2)``.  ``derivations/05-rational.md`` §3."""
    return rational_partials(x, v, c, l, eps)[4]


def identity_param_partials(z, eps: float = EPS):
    """Closed forms of ``(dsigma/dv, dsigma/dc, dsigma/dl)`` at ``(v, c, l) = (0, 0, 1)``:

    ``(2z/(1+z^2), 1/(1+z^2), eps z/(1+eps)) / sqrt(1+eps)``; ``z`` any shape,
    outputs the same shape.  Used to score depth insertion (the inserted layer's
    new parameters).  ``derivations/05-rational.md`` §4.
    """
    z = as_float_array(z, "identity_param_partials z", allow_empty=True)
    k = identity_scale(eps)
    t, w, _ = rational_basis_numpy(z)
    with np.errstate(under="ignore"):
        return 2.0 * t * k, w * k, z * (eps / (1.0 + eps)) * k


# ---------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------
class Rational(Layer):
    """Per-unit rational activation; parameters ``v, c, l`` of shape ``(units,)``.

    Parameters
    ----------
    units : number of units (axis 1 of the batch).
    init : ``"random"`` (``v, c, l ~ N(0, 1)``, drawn from ``rng`` in the order
        v, c, l) or ``"identity"`` (``(v, c, l) = (0, 0, 1)``, so
        ``sigma(x) = x / sqrt(1 + EPS)``).
    rng : ``numpy.random.Generator``; required for ``init="random"``.
    spatial : ``()`` for dense batches ``(N, units)`` or ``(H, W)`` for conv
        batches ``(N, units, H, W)``.
    backend : ``"numba"`` | ``"numpy"`` | ``None`` (follow :mod:`senn_ref.backend` at call
        time): the fused kernel ``rational_forward_numba`` or its NumPy twin for the
        forward pass and the parameter-gradient sums of the backward pass
        (``derivations/05-rational.md`` "Kernel").

    Flat parameter order: v, c, l.  Parameter gradients are summed over the batch
    and over spatial positions.  ``derivations/05-rational.md`` §5.
    """

    param_names = ("v", "c", "l")
    EPS = EPS

    def __init__(self, units: int, init: str = "random", rng: np.random.Generator | None = None,
                 spatial: tuple[int, ...] = (), backend: str | None = None) -> None:
        super().__init__()
        self.backend = None if backend is None else _backend.resolve(backend)
        units = check_positive_int(units, "Rational units")
        check_option(init, ("random", "identity"), "Rational init")
        if not isinstance(spatial, (tuple, list)) or len(spatial) not in (0, 2):
            raise ValueError(f"Rational spatial: expected () or (H, W), got {spatial!r}")
        self.spatial = tuple(check_positive_int(s, "Rational spatial size") for s in spatial)
        rng = check_rng(rng, "Rational rng")            # checked even when unused (identity)
        if init == "random":
            if rng is None:
                raise ValueError("Rational(init='random') needs rng=np.random.Generator; "
                                 "use init='identity' for a deterministic layer")
            v = rng.standard_normal(units)
            c = rng.standard_normal(units)
            l = rng.standard_normal(units)
        else:
            v, c, l = np.zeros(units), np.zeros(units), np.ones(units)
        self.params = {"v": v, "c": c, "l": l}

    def config(self) -> dict:
        """Rebuilds at the identity point; the saved (v, c, l) are written afterwards."""
        return {"units": self.units, "init": "identity", "spatial": list(self.spatial), "backend": self.backend}

    @property
    def units(self) -> int:
        return self.params["v"].shape[0]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.units,) + self.spatial

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(in_shape)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """``Y = sigma(X)`` unit-wise along axis 1; ``X``, ``Y``: ``(N,) + in_shape``.

        Computed by the backend's ``rational_forward`` kernel on the ``(N, units, S)``
        view of ``X`` (``S`` = H*W, or 1 for dense; the Numba kernel and the NumPy twin
        give identical bits).  Caches the four partial derivatives (each the shape of ``X``)."""
        A = self._check_input(X)
        forward_k = rational_kernels(self.backend)["rational_forward"]
        A3 = np.ascontiguousarray(A).reshape(A.shape[0], self.units, -1)      # (N, U, S)
        p = self.params
        sigma, d_x, d_v, d_c, d_l = (a.reshape(A.shape) for a in
                                     forward_k(A3, p["v"], p["c"], p["l"], self.EPS))
        self._set_cache(shape=A.shape, dx=d_x, v=d_v, c=d_c, l=d_l)
        return sigma

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dX = dY * dsigma/dx``; ``grads[p] = sum_{n, spatial} dY * dsigma/dp``
        for ``p`` in v, c, l (each ``(units,)``), by the backend's ``rational_backward`` kernel
        (one fused pass for Numba; backends agree to rounding in the sums)."""
        cache = self._cached()
        shape = cache["shape"]
        dS = self._check_like(dY, shape, "output cotangent")
        backward_k = rational_kernels(self.backend)["rational_backward"]
        flat = (shape[0], self.units, -1)                                    # (N, U, S)
        dX, g_v, g_c, g_l = backward_k(np.ascontiguousarray(dS).reshape(flat),
                                       *(cache[k].reshape(flat) for k in ("dx", "v", "c", "l")),
                                       bool(need_input_grad))
        grads = {"v": g_v, "c": g_c, "l": g_l}
        return (dX.reshape(shape) if need_input_grad else None), grads

    def backward_input(self, dY: np.ndarray) -> np.ndarray:
        """``dX = dY * dsigma/dx`` only (the product both backward kernels form; ``Layer.backward_input``).
        ``derivations/05-rational.md`` sections 2 and 5."""
        cache = self._cached()
        return self._check_like(dY, cache["shape"], "output cotangent") * cache["dx"]

    def backward_per_example(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP per example: ``grads[p][n, j] = sum_{spatial} dY[n, j, .] * dsigma/dp[n, j, .]``
        for ``p`` in v, c, l (each (N, units)); ``dX = dY * dsigma/dx``.  Plain NumPy (one
        contraction per parameter).  ``derivations/05-rational.md`` section 5."""
        cache = self._cached()
        shape = cache["shape"]
        dS = self._check_like(dY, shape, "output cotangent")
        flat = (shape[0], self.units, -1)                                    # (N, U, S)
        d3 = dS.reshape(flat)
        grads = {k: np.einsum("nus,nus->nu", d3, cache[k].reshape(flat)) for k in self.param_names}
        return (dS * cache["dx"] if need_input_grad else None), grads

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: ``dY = dsigma/dx * dX + sum_p dsigma/dp * dp`` (``dp`` broadcast along axis 1)."""
        self._check_param_keys(dparams)
        cache = self._cached()
        shape = cache["shape"]
        out = np.zeros(shape)
        if dX is not None:
            out += cache["dx"] * self._check_like(dX, shape, "input tangent")
        bshape = (1, self.units) + (1,) * len(self.spatial)
        for k in self.param_names:
            dp = self._param_tangent(dparams, k)
            if dp is not None:
                out += cache[k] * dp.reshape(bshape)
        return out
