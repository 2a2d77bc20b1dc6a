"""2-D convolution layer (cross-correlation, NCHW) computed by unfold + GEMM.

With ``P = unfold(X)`` of shape ``(N, K, T)`` (``K = C*kh*kw``, ``T = Ho*Wo``,
see :mod:`senn_ref.kernels`) and ``Wm = W.reshape(O, K)``:

    forward   Y[n]  = Wm @ P[n] + b[:, None]                   (O, T) per example
    VJP       dW    = sum_n dY[n] @ P[n]^T    (reshaped to (O, C, kh, kw))
              db    = sum_{n,t} dY[n, :, t]
              dX    = fold(Wm^T @ dY[n])       (fold = adjoint of unfold)
    JVP       dY[n] = Wm @ unfold(dX)[n] + dWm @ P[n] + db[:, None]

Shapes: X (N, C, H, W), W (O, C, kh, kw), b (O,), Y (N, O, Ho, Wo) with
``Ho = (H + 2 ph - kh) // sh + 1`` (same for width).  Flat order: W row-major,
then b.  Derivations: ``derivations/03-convolution.md`` (section 6 for the
implementation choices below and the alternatives that were measured).

The bias rides along in the GEMMs: the columns are stored augmented,
``P1[n] = [P[n]; 1^T]`` of shape ``(K+1, T)``, so that ``Y[n] = [Wm | b] @ P1[n]``
and ``D[n] @ P1[n]^T = [dWm_n | db_n]`` (no separate pass over ``Y`` or ``dY``).
The batch is processed in chunks of a few examples whose columns stay in
cache (:mod:`senn_ref.layers.conv_chunks`: chunk sizes, and a pool of two threads with BLAS
on one thread when there is more than one chunk; every chunk writes its own slice and
weight-gradient partial sums are added in chunk order, so results do not depend on thread
scheduling).  Columns and the column-space gradient ``Wm^T D`` are written into per-thread
workspace buffers owned by the layer (one chunk each) instead of fresh arrays, which would
cost page faults on every call.  Columns are not kept for the whole batch: backward and jvp
recompute them per chunk from the cached input, except when the thread's workspace still
holds the columns of that very chunk of that very input (always so for a one-chunk batch).
"""
from __future__ import annotations

import threading

import numpy as np

from .. import backend as _backend
from .._validate import check_positive_int, check_rng, check_scalar
from ..kernels import conv_geometry, kernels_for
from ..kernels.dispatch import kernels_into
from . import conv_chunks
from .base import Layer


class Conv2D(Layer):
    """Convolution ``Y[n, o] = sum_{c,i,j} W[o, c, i, j] Xpad[n, c, sh*oh + i, sw*ow + j] + b[o]``.

    Parameters
    ----------
    in_ch, out_ch : channels ``C`` and ``O``.
    kernel_size, stride, padding : int or pair ``(height, width)``; stride >= 1,
        zero padding >= 0 on both sides of each axis.
    rng : ``numpy.random.Generator`` for LeCun-normal weights ``W ~ N(0, 1/(C kh kw))``;
        ``None`` gives zeros.
    bias_std : standard deviation of the initial bias (0 gives zeros).
    backend : ``"numba"`` | ``"numpy"`` | ``None`` (follow :mod:`senn_ref.backend` at call time).
    in_hw : the per-example spatial input size ``(H, W)`` (keyword, required).
    """

    param_names = ("W", "b")
    has_kfac_block = True

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0,
                 rng: np.random.Generator | None = None, bias_std: float = 0.0,
                 backend: str | None = None, *, in_hw) -> None:
        super().__init__()
        C = check_positive_int(in_ch, "Conv2D in_ch")
        O = check_positive_int(out_ch, "Conv2D out_ch")
        bias_std = check_scalar(bias_std, "Conv2D bias_std", minimum=0.0)
        rng = check_rng(rng, "Conv2D rng")
        if not isinstance(in_hw, (tuple, list, np.ndarray)):
            raise TypeError(f"Conv2D in_hw: expected a pair (H, W), got {type(in_hw).__name__} {in_hw!r}")
        if len(in_hw) != 2:
            raise ValueError(f"Conv2D in_hw: expected a pair (H, W), got {in_hw!r}")
        self.backend = None if backend is None else _backend.resolve(backend)
        geom = conv_geometry(in_hw, kernel_size, stride, padding, "Conv2D")
        self.kernel_size, self.stride, self.padding = geom[0:2], geom[2:4], geom[4:6]
        self.out_hw = geom[6:8]
        self._in_hw = (int(in_hw[0]), int(in_hw[1]))
        self._work: dict = {}
        kh, kw = self.kernel_size
        if rng is None:
            W = np.zeros((O, C, kh, kw))
            b = np.zeros(O)
        else:
            W = rng.standard_normal((O, C, kh, kw)) / np.sqrt(C * kh * kw)
            b = bias_std * rng.standard_normal(O)
        self.params = {"W": W, "b": b}

    def config(self) -> dict:
        return {"in_ch": self.in_ch, "out_ch": self.out_ch, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding), "in_hw": list(self._in_hw),
                "backend": self.backend}

    # ---- shapes ---------------------------------------------------------
    @property
    def in_ch(self) -> int:
        return self.params["W"].shape[1]

    @property
    def out_ch(self) -> int:
        return self.params["W"].shape[0]

    @property
    def in_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` with ``C`` read from ``W`` (widening replaces ``W``)."""
        return (self.in_ch,) + self._in_hw

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_ch,) + tuple(self.out_hw)

    # ---- kernels ----------------------------------------------------------
    def _unfold(self, X: np.ndarray) -> np.ndarray:
        """``X (B, C, H, W) -> P (B, K, T)`` with this layer's geometry and backend."""
        unfold_k, _ = kernels_for(self.backend)
        return unfold_k(X, *self.kernel_size, *self.stride, *self.padding, *self.out_hw)

    def _geometry(self) -> tuple:
        return self.kernel_size + self.stride + self.padding + self.out_hw

    def _buffer(self, name: str, shape: tuple, keep: bool = False) -> np.ndarray:
        """A C-contiguous ``shape`` view of this thread's workspace array ``name``
        (grown when too small).  Unless ``keep``, the caller is assumed to overwrite
        it, so the record of which columns it holds (see :meth:`_columns`) is dropped."""
        work = self.__dict__.setdefault("_work", {}).setdefault(threading.get_ident(), {})
        size = int(np.prod(shape))
        flat = work.get(name)
        if flat is None or flat.size < size:
            flat = work[name] = np.empty(size)
            keep = False
        if not keep:
            work[name + " holds"] = None
        return flat[:size].reshape(shape)

    def __getstate__(self) -> dict:
        """Copies and pickles leave the scratch workspaces behind."""
        state = self.__dict__.copy()
        state["_work"] = {}
        return state

    def _columns(self, X: np.ndarray, sl: slice, stamp, name: str = "P") -> np.ndarray:
        """Augmented columns ``P1 (B, K+1, T)`` of ``X[sl]`` in this thread's workspace
        ``name``: ``P1[:, :K] = unfold(X[sl])`` and ``P1[:, K] = 1`` (the bias row).

        ``stamp`` labels the cached input ``X`` (``None`` for any other array): a fresh
        ``object()`` per forward, compared by identity, so a label can never match one
        from another forward, a copy or an unpickled layer.  When the workspace already
        holds the columns of ``(stamp, sl)`` they are not recomputed."""
        kh, kw = self.kernel_size
        K, T = self.in_ch * kh * kw, self.out_hw[0] * self.out_hw[1]
        P1 = self._buffer(name, (sl.stop - sl.start, K + 1, T), keep=True)
        work = self._work[threading.get_ident()]
        key = None if stamp is None else (stamp, sl.start, sl.stop, P1.shape)
        held = work.get(name + " holds")
        if key is None or held is None or held[0] is not stamp or held[1:] != key[1:]:
            work[name + " holds"] = None              # invalid while being overwritten
            kernels_into(self.backend)[0](X[sl], P1, *self._geometry())   # rows 0 .. K-1
            P1[:, K] = 1.0
            work[name + " holds"] = key
        return P1

    def _col_bytes(self) -> int:
        """Bytes of one example's unfolded columns, ``8 K T``."""
        kh, kw = self.kernel_size
        return 8 * self.in_ch * kh * kw * self.out_hw[0] * self.out_hw[1]

    def _chunks(self, N: int):
        """The batch's chunks (:func:`senn_ref.layers.conv_chunks.chunks`)."""
        return conv_chunks.chunks(N, self._col_bytes())

    def _map_chunks(self, job, N: int) -> list:
        """``[job(sl) for sl in chunks]`` (:func:`senn_ref.layers.conv_chunks.map_chunks`)."""
        return conv_chunks.map_chunks(job, self._chunks(N))

    def _Wm(self, W: np.ndarray | None = None) -> np.ndarray:
        W = self.params["W"] if W is None else W
        return W.reshape(W.shape[0], -1)

    # ---- passes ---------------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """``Y[n] = Wm @ unfold(X)[n] + b``; X (N, C, H, W) -> Y (N, O, Ho, Wo).

        Caches a private copy of ``X`` (backward/jvp recompute columns from it)."""
        X = self._private_input(X)
        N = X.shape[0]
        W1 = np.concatenate([self._Wm(), self.params["b"][:, None]], axis=1)   # [Wm | b]
        Y = np.empty((N, self.out_ch, self.out_hw[0] * self.out_hw[1]))
        stamp = object()        # labels this input; compared by identity, never equal to a
                                # label from before a copy or pickle (a new object there)

        def job(sl):
            np.matmul(W1, self._columns(X, sl, stamp), out=Y[sl])

        self._cache = None                      # the stamp below labels the new input only
        self._map_chunks(job, N)
        self._set_cache(X=X, stamp=stamp)
        return Y.reshape((N,) + self.output_shape(self.in_shape))

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dW = sum_n dY[n] P[n]^T``, ``db = sum_{n,t} dY[n,:,t]``, ``dX = fold(Wm^T dY)``."""
        dX, g1 = self._vjp(dY, need_input_grad, "sum")
        grads = {"W": g1[:, :-1].reshape(self.params["W"].shape), "b": g1[:, -1].copy()}
        return dX, grads

    def backward_per_example(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP per example: ``dW[n] = dY[n] P[n]^T`` (N, O, C, kh, kw), ``db[n] = sum_t dY[n,:,t]``
        (N, O), ``dX`` as in :meth:`backward`: one batched GEMM of the output gradients with
        the augmented columns per chunk.  ``derivations/03-convolution.md`` section 4."""
        dX, G1 = self._vjp(dY, need_input_grad, "per_example")
        N = G1.shape[0]
        grads = {"W": G1[:, :, :-1].reshape((N,) + self.params["W"].shape), "b": G1[:, :, -1].copy()}
        return dX, grads

    def backward_input(self, dY: np.ndarray) -> np.ndarray:
        """``dX = fold(Wm^T dY)`` only: no columns, no weight GEMM.  ``Layer.backward_input``;
        ``derivations/03-convolution.md`` sections 4 and 6."""
        return self._vjp(dY, True, "none")[0]

    def _vjp(self, dY, need_input_grad: bool, params: str):
        """Shared body of the backward passes: ``dX`` and ``[dWm | db]``, summed over the
        batch (O, K+1) for ``params="sum"``, per example (N, O, K+1) for ``"per_example"``,
        not formed (None) for ``"none"``."""
        per_example = params == "per_example"
        cache = self._cached()
        X, stamp = cache["X"], cache["stamp"]
        N = X.shape[0]
        O = self.out_ch
        dY = self._check_like(dY, (N,) + self.output_shape(self.in_shape), "output cotangent")
        D = dY.reshape(N, O, -1)
        Wm = self._Wm()
        dX = np.empty_like(X) if need_input_grad else None
        G1 = np.empty((N, O, Wm.shape[1] + 1)) if per_example else None

        fold_into = kernels_into(self.backend)[1]

        def job(sl):
            if need_input_grad:
                G = self._buffer("G", (sl.stop - sl.start, Wm.shape[1], D.shape[2]))
                np.matmul(Wm.T, D[sl], out=G)
                fold_into(G, dX[sl], *self._geometry())
            if params == "none":
                return None
            P1 = self._columns(X, sl, stamp)
            if per_example:
                np.matmul(D[sl], P1.transpose(0, 2, 1), out=G1[sl])
                return None
            return np.matmul(D[sl], P1.transpose(0, 2, 1)).sum(axis=0)    # [dWm | db] of the chunk

        parts = self._map_chunks(job, N)
        if params != "sum":
            return dX, G1
        g1 = np.zeros((O, Wm.shape[1] + 1))
        for part in parts:                         # fixed chunk order: deterministic sums
            g1 += part
        return dX, g1

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: ``dY[n] = Wm @ unfold(dX)[n] + dWm @ unfold(X)[n] + db`` (N, O, Ho, Wo)."""
        self._check_param_keys(dparams)
        cache = self._cached()
        X, stamp = cache["X"], cache["stamp"]
        N = X.shape[0]
        if dX is not None:
            dX = self._check_like(dX, X.shape, "input tangent")
        dW = self._param_tangent(dparams, "W")
        db = self._param_tangent(dparams, "b")
        Wm = self._Wm()
        K = Wm.shape[1]
        out = np.zeros((N, self.out_ch, self.out_hw[0] * self.out_hw[1]))
        dW1 = None                                   # [dWm | db] against the augmented columns
        if dW is not None or db is not None:
            dW1 = np.zeros((self.out_ch, K + 1))
            if dW is not None:
                dW1[:, :K] = self._Wm(dW)
            if db is not None:
                dW1[:, K] = db

        def job(sl):
            if dX is not None:
                out[sl] += np.matmul(Wm, self._columns(dX, sl, None, "G")[:, :K])
            if dW1 is not None:
                out[sl] += np.matmul(dW1, self._columns(X, sl, stamp))

        self._map_chunks(job, N)
        return out.reshape((N,) + self.output_shape(self.in_shape))

    # ---- curvature hooks --------------------------------------------------
    def curvature_inputs(self) -> np.ndarray:
        """Unfolded input patches ``a_{n,t}`` as ``(N, T, C*kh*kw)``, columns ordered
        like ``W.reshape(O, -1)`` (a transposed view of the unfolded columns)."""
        return self._unfold(self._cached()["X"]).transpose(0, 2, 1)

    def curvature_outgrads(self, dY: np.ndarray) -> np.ndarray:
        """Output cotangents ``dY`` (N, O, Ho, Wo) as ``d_{n,t}`` of shape ``(N, Ho*Wo, O)``."""
        dY = self._check_outgrads(dY)
        return dY.reshape(dY.shape[0], dY.shape[1], -1).transpose(0, 2, 1)

    def __repr__(self) -> str:
        return (f"{self._label()}[{self.in_ch}->{self.out_ch}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding}, in={self.in_shape}]")
