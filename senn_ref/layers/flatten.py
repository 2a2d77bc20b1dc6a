"""Flatten: reshape each example to a vector (row-major), e.g. (C, H, W) -> (C*H*W,).

Forward ``Y[n] = vec(X[n])``; backward ``dX[n] = unvec(dY[n])``; JVP ``dY = vec(dX)``.
Every pass returns a new array, never a view of its argument (a caller writing into the
result must not change its own input).
A permutation-free reshape is linear and orthogonal, so its VJP is its inverse.
Derivations: ``derivations/04-pooling.md`` "Flatten".
"""
from __future__ import annotations

import numpy as np

from .._validate import check_positive_int
from .base import ParameterFree


class Flatten(ParameterFree):
    """Row-major flattening of the per-example shape ``in_shape`` (any rank >= 1).

    X (N, *in_shape) -> Y (N, prod(in_shape)).
    """

    def __init__(self, *, in_shape) -> None:
        super().__init__()
        if not isinstance(in_shape, (tuple, list)):
            raise TypeError(f"Flatten: in_shape must be a tuple such as (C, H, W), got "
                            f"{type(in_shape).__name__} {in_shape!r}")
        if len(in_shape) == 0:
            raise ValueError(f"Flatten: in_shape must be a non-empty tuple, got {in_shape!r}")
        self._in_shape = tuple(check_positive_int(v, "Flatten in_shape entry") for v in in_shape)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(self._in_shape)),)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """``Y = X.reshape(N, -1)``, a new array (never a view of the caller's ``X``)."""
        X = self._check_input(X)
        self._cache = {"N": X.shape[0]}
        return X.reshape(X.shape[0], -1).copy()

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dX = dY.reshape(N, *in_shape)`` (a new array)."""
        N = self._cached()["N"]
        dY = self._check_like(dY, (N,) + self.output_shape(self._in_shape), "output cotangent")
        return (dY.reshape((N,) + self._in_shape).copy() if need_input_grad else None), {}

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: ``dY = dX.reshape(N, -1)`` (a new array)."""
        self._check_param_keys(dparams)
        N = self._cached()["N"]
        if dX is None:
            return np.zeros((N,) + self.output_shape(self._in_shape))
        return self._check_like(dX, (N,) + self._in_shape, "input tangent").reshape(N, -1).copy()

    def __repr__(self) -> str:
        return f"{self._label()}[in={self._in_shape}]"
