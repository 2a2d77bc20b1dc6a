"""Parameterless elementwise activations: tanh and SiLU.

Both map a batch ``X`` of shape ``(N,) + in_shape`` to ``Y`` of the same shape,
``Y = phi(X)`` elementwise, with

* ``tanh``:  ``phi'(x) = 1 - tanh(x)^2 = 4 e/(1+e)^2`` with ``e = exp(-|x|)^2 = exp(-2|x|)``;
* ``SiLU``:  ``phi(x) = x * sigmoid(x)``,
  ``phi'(x) = sigmoid(x) * (1 + x * sigmoid(-x))``.

The sigmoid is evaluated from ``e = exp(-|x|)`` (``e`` in ``(0, 1]``, so it never
overflows): ``sigmoid(x) = 1/(1+e)`` for ``x >= 0`` and ``e/(1+e)`` for ``x < 0``;
``sigmoid(-x)`` is formed the same way instead of as ``1 - sigmoid(x)``, which
would lose all relative accuracy for large ``x``.  ``exp(-|x|)`` underflows to 0
for ``|x| > ~745``, which is the correctly rounded limit; that underflow is not
reported.  Derivation: ``derivations/06-activations.md``; tests:
``tests/test_activations.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_positive_int
from .base import ParameterFree


def stable_sigmoid(x) -> np.ndarray:
    """``sigmoid(x) = 1/(1 + exp(-x))`` without overflow; same shape as ``x``.

    ``derivations/06-activations.md`` §2."""
    x = as_float_array(x, "stable_sigmoid x", allow_empty=True)
    return _sigmoid_pair(x)[0]


def _sigmoid_pair(x: np.ndarray):
    """``(sigmoid(x), sigmoid(-x))``, each to full relative accuracy."""
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
        big = 1.0 / (1.0 + e)          # sigmoid(|x|)
        small = e * big                # sigmoid(-|x|) = e / (1 + e)
    pos = x >= 0
    return np.where(pos, big, small), np.where(pos, small, big)


def silu(x) -> np.ndarray:
    """``SiLU(x) = x * sigmoid(x)``; same shape as ``x``.  ``derivations/06-activations.md`` §2."""
    x = as_float_array(x, "silu x", allow_empty=True)
    return _silu_and_slope(x)[0]


def silu_derivative(x) -> np.ndarray:
    """``SiLU'(x) = sigmoid(x) (1 + x sigmoid(-x))``; same shape as ``x``.

    ``derivations/06-activations.md`` §2."""
    x = as_float_array(x, "silu_derivative x", allow_empty=True)
    return _silu_and_slope(x)[1]


def _silu_and_slope(x: np.ndarray):
    sp, sm = _sigmoid_pair(x)
    with np.errstate(under="ignore"):
        return x * sp, sp * (1.0 + x * sm)


def tanh_derivative(x) -> np.ndarray:
    """``tanh'(x) = 1 - tanh(x)^2``, evaluated as ``4 e/(1+e)^2`` with ``e = exp(-|x|)^2``.

    Same shape as ``x``.  ``derivations/06-activations.md`` §1."""
    x = as_float_array(x, "tanh_derivative x", allow_empty=True)
    return _tanh_and_slope(x)[1]


def _tanh_and_slope(x: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None,
                    value_out: np.ndarray | None = None):
    """``(tanh(x), tanh'(x))``: ``np.tanh`` and ``4 e/(1+e)^2`` with ``e = exp(-|x|)^2``.

    ``out``/``scratch``/``value_out``: optional float64 buffers of ``x``'s shape; the slope is
    written into ``out``, ``(1+e)^2`` into ``scratch``, ``tanh(x)`` into ``value_out``
    (fresh arrays of this size cost page faults that were measured to exceed the arithmetic,
    derivations/06-activations.md §1; ``senn_ref.buffered_pass`` passes all three)."""
    # 1 - tanh^2 = sech^2 = 4 e / (1 + e)^2 with e = exp(-2|x|) in [0, 1]: full relative
    # accuracy in the tails, where 1 - tanh(x)^2 would round to 0 (|x| > ~19).  e is formed
    # as exp(-|x|)^2, because 2|x| itself overflows for |x| > ~9e307
    # (the numbers are those of 4.0 * e / ((1 + e) * (1 + e)))
    with np.errstate(under="ignore"):
        slope = np.abs(x, out=out)
        np.negative(slope, out=slope)
        np.exp(slope, out=slope)
        slope *= slope                 # e
        den = np.add(slope, 1.0, out=scratch)
        den *= den                     # (1 + e)^2
        slope *= 4.0
        slope /= den
        return np.tanh(x, out=value_out), slope


class Elementwise(ParameterFree):
    """Base for a parameterless elementwise layer ``Y = phi(X)``.

    ``in_shape``: per-example shape given at construction (e.g. ``(16,)`` or
    ``(8, 6, 6)``); output shape equals input shape.  Subclasses implement
    ``_value_and_slope(X) -> (phi(X), phi'(X))``.  The cache holds ``phi'(X)``
    (shape ``(N,) + in_shape``).  ``derivations/06-activations.md`` §3.
    """

    param_names: tuple[str, ...] = ()

    def __init__(self, in_shape) -> None:
        super().__init__()
        label = type(self).__name__
        if not isinstance(in_shape, (tuple, list)) or len(in_shape) == 0:
            raise ValueError(f"{label} in_shape: expected a non-empty tuple such as (16,) or "
                             f"(8, 6, 6), got {in_shape!r}")
        self._in_shape = tuple(check_positive_int(s, f"{label} in_shape entry") for s in in_shape)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(in_shape)

    def _value_and_slope(self, X: np.ndarray):
        """``(phi(X), phi'(X))`` as fresh arrays (``grow.candidate_path`` calls it on candidate
        arrays and keeps the slope on its tape)."""
        raise NotImplementedError

    def _forward_value_and_slope(self, X: np.ndarray):
        """What :meth:`forward` evaluates and caches (a subclass may write into buffers of its own)."""
        return self._value_and_slope(X)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """``Y = phi(X)``; caches ``phi'(X)``.  ``X``, ``Y``: ``(N,) + in_shape``."""
        A = self._check_input(X)
        Y, slope = self._forward_value_and_slope(A)
        self._cache = {"slope": slope}
        return Y

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dX = dY * phi'(X)``; no parameters, so ``grads = {}``."""
        slope = self._cached()["slope"]
        dS = self._check_like(dY, slope.shape, "output cotangent")
        return (dS * slope if need_input_grad else None), {}

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: ``dY = phi'(X) * dX`` (zeros when ``dX`` is None)."""
        self._check_param_keys(dparams)
        slope = self._cached()["slope"]
        if dX is None:
            return np.zeros(slope.shape)
        return slope * self._check_like(dX, slope.shape, "input tangent")


class Tanh(Elementwise):
    """``Y = tanh(X)``, ``phi' = 1 - tanh^2`` (as ``4 e/(1+e)^2``, ``e = exp(-|X|)^2``).

    The slope is written into a buffer the layer keeps between forwards (with a scratch
    array of the same shape; copies and pickles leave both behind): only ``Y`` is a fresh
    array.  Only :meth:`forward` uses them (its cached slope lives until the next forward);
    ``_value_and_slope`` returns fresh arrays, so a caller that keeps its slope (the candidate
    path's tape) never sees it overwritten.  ``derivations/06-activations.md`` §1."""

    def _value_and_slope(self, X):
        return _tanh_and_slope(X)

    def _forward_value_and_slope(self, X):
        bufs = self.__dict__.get("_buffers")
        if bufs is None or bufs[0].shape != X.shape:
            bufs = self._buffers = (np.empty(X.shape), np.empty(X.shape))
        return _tanh_and_slope(X, *bufs)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_buffers", None)
        return state


class SiLU(Elementwise):
    """``Y = X * sigmoid(X)``, ``phi' = sigmoid(X)(1 + X sigmoid(-X))``, overflow-free.

    ``derivations/06-activations.md`` §2."""

    def _value_and_slope(self, X):
        return _silu_and_slope(X)
