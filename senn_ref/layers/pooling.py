"""Pooling layers on NCHW batches: average, max and global average pooling.

A window of size ``(kh, kw)`` moves with stride ``(sh, sw)`` (default: the
window size) over an unpadded input; ``Ho = (H - kh) // sh + 1``.  For kernel
offset ``(i, j)`` the strided slice

``X[:, :, i : i + sh*(Ho-1) + 1 : sh, j : j + sw*(Wo-1) + 1 : sw]``  (N, C, Ho, Wo)

holds the entry at offset ``(i, j)`` of every window; the NumPy twins of the
kernels (:mod:`senn_ref.kernels.pool_numpy`) are short loops over the ``kh*kw``
offsets of such slices, the Numba kernels loop over output pixels.  Rows/columns not
covered by any window (when ``(H - kh)`` is not a multiple of ``sh``) do not
influence the output and get zero gradient.  None of these layers has
parameters.  Derivations: ``derivations/04-pooling.md``.
"""
from __future__ import annotations

import numpy as np

from .. import backend as _backend
from .._validate import check_positive_int
from ..kernels import as_pair, conv_geometry, pool_kernels
from .base import ParameterFree


def _check_chw(in_shape, name: str) -> tuple[int, int, int]:
    if not isinstance(in_shape, (tuple, list)):
        raise TypeError(f"{name}: in_shape must be a tuple (C, H, W), got {type(in_shape).__name__}")
    if len(in_shape) != 3:
        raise ValueError(f"{name}: in_shape must be (C, H, W), got {in_shape!r}")
    return tuple(check_positive_int(v, f"{name} in_shape entry") for v in in_shape)


class _WindowPool(ParameterFree):
    """Shared geometry of the windowed pools (no parameters).

    ``backend``: ``"numba"`` | ``"numpy"`` | ``None`` (follow :mod:`senn_ref.backend`
    at call time) selects the kernels of :func:`senn_ref.kernels.pool_kernels`.
    """

    def __init__(self, size, stride=None, *, in_shape, backend: str | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.backend = None if backend is None else _backend.resolve(backend)
        self._in_shape = _check_chw(in_shape, name)
        size = as_pair(size, f"{name} size", minimum=1)
        stride = size if stride is None else as_pair(stride, f"{name} stride", minimum=1)
        kh, kw, sh, sw, _, _, Ho, Wo = conv_geometry(self._in_shape[1:], size, stride, 0, name)
        self.size, self.stride, self.out_hw = (kh, kw), (sh, sw), (Ho, Wo)

    def config(self) -> dict:
        return {"size": list(self.size), "stride": list(self.stride), "in_shape": list(self._in_shape),
                "backend": self.backend}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self._in_shape[0],) + self.out_hw

    def _k(self, name: str):
        return pool_kernels(self.backend)[name]

    def _out_batch_shape(self, N: int) -> tuple[int, ...]:
        return (N,) + self.output_shape(self._in_shape)

    def __repr__(self) -> str:
        return f"{self._label()}[size={self.size}, stride={self.stride}, in={self._in_shape}]"


class AvgPool2D(_WindowPool):
    """Average pooling ``Y[n,c,oh,ow] = (1/(kh kw)) sum_{i,j} X[n,c,sh*oh+i,sw*ow+j]``.

    ``size``/``stride``: int or pair (stride defaults to ``size``); ``in_shape = (C, H, W)``.
    X (N, C, H, W) -> Y (N, C, Ho, Wo).  See ``derivations/04-pooling.md`` "Average pooling".
    """

    def _average(self, X: np.ndarray) -> np.ndarray:
        return self._k("avgpool_forward")(X, *self.size, *self.stride, *self.out_hw)

    def forward(self, X: np.ndarray) -> np.ndarray:
        X = self._check_input(X)
        self._cache = {"N": X.shape[0]}
        return self._average(X)

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: every input entry of a window receives ``dY / (kh kw)``, summed over windows."""
        N = self._cached()["N"]
        dY = self._check_like(dY, self._out_batch_shape(N), "output cotangent")
        if not need_input_grad:
            return None, {}
        return self._k("avgpool_backward")(dY, *self._in_shape[1:], *self.size, *self.stride), {}

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: the layer is linear, so ``dY = AvgPool(dX)``."""
        self._check_param_keys(dparams)
        N = self._cached()["N"]
        if dX is None:
            return np.zeros(self._out_batch_shape(N))
        return self._average(self._check_like(dX, (N,) + self._in_shape, "input tangent"))


class MaxPool2D(_WindowPool):
    """Max pooling ``Y[n,c,oh,ow] = max_{i,j} X[n,c,sh*oh+i,sw*ow+j]``.

    Ties: the winner of a window is the *first* maximal entry in row-major
    order of the offset ``(i, j)`` (``numpy.argmax`` semantics), so the
    derivative chosen at a tie is deterministic.  The backward pass and the JVP
    both route through the argmax cached by the last forward.
    ``size``/``stride``: int or pair (stride defaults to ``size``); ``in_shape = (C, H, W)``.
    X (N, C, H, W) -> Y (N, C, Ho, Wo).  See ``derivations/04-pooling.md`` "Max pooling".
    """

    def forward(self, X: np.ndarray) -> np.ndarray:
        X = self._check_input(X)
        Y, arg = self._k("maxpool_forward")(X, *self.size, *self.stride, *self.out_hw)
        self._cache = {"N": X.shape[0], "arg": arg}
        return Y

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dY`` of each window goes to its argmax entry (summed over overlapping windows)."""
        cache = self._cached()
        N, arg = cache["N"], cache["arg"]
        dY = self._check_like(dY, self._out_batch_shape(N), "output cotangent")
        if not need_input_grad:
            return None, {}
        return self._k("maxpool_backward")(dY, arg, *self._in_shape[1:], *self.size, *self.stride), {}

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: ``dY[n,c,oh,ow] = dX`` at the cached argmax of that window."""
        self._check_param_keys(dparams)
        cache = self._cached()
        N = cache["N"]
        if dX is None:
            return np.zeros(self._out_batch_shape(N))
        dX = self._check_like(dX, (N,) + self._in_shape, "input tangent")
        return self._k("maxpool_jvp")(dX, cache["arg"], *self.size, *self.stride)


class GlobalAvgPool(ParameterFree):
    """Global average pooling ``Y[n, c] = (1/(H W)) sum_{r,q} X[n, c, r, q]``.

    ``in_shape = (C, H, W)``; X (N, C, H, W) -> Y (N, C).
    See ``derivations/04-pooling.md`` "Global average pooling".
    """

    def __init__(self, *, in_shape) -> None:
        super().__init__()
        self._in_shape = _check_chw(in_shape, "GlobalAvgPool")

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self._in_shape[0],)

    def forward(self, X: np.ndarray) -> np.ndarray:
        X = self._check_input(X)
        self._cache = {"N": X.shape[0]}
        return X.mean(axis=(2, 3))

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dX[n, c, r, q] = dY[n, c] / (H W)``."""
        N = self._cached()["N"]
        dY = self._check_like(dY, (N, self._in_shape[0]), "output cotangent")
        if not need_input_grad:
            return None, {}
        C, H, W = self._in_shape
        return np.broadcast_to((dY / (H * W))[:, :, None, None], (N, C, H, W)).copy(), {}

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: linear, ``dY = mean_{r,q} dX``."""
        self._check_param_keys(dparams)
        N = self._cached()["N"]
        if dX is None:
            return np.zeros((N, self._in_shape[0]))
        return self._check_like(dX, (N,) + self._in_shape, "input tangent").mean(axis=(2, 3))

    def __repr__(self) -> str:
        return f"{self._label()}[in={self._in_shape}]"
