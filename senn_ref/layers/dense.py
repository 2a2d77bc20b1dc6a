"""Dense (fully connected) layer  s = W a + b.

Shapes: W (out, in), b (out,), batch input A (N, in), output S (N, out),
computed as ``S = A @ W.T + b``.  Flat order: W row-major, then b.
Derivations: ``derivations/02-dense.md``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_positive_int, check_rng, check_scalar
from .base import Layer


class Dense(Layer):
    """Affine map ``S = A W^T + b``.

    Parameters
    ----------
    n_in, n_out : sizes; ``W`` has shape ``(n_out, n_in)``.
    rng : ``numpy.random.Generator`` for LeCun-normal weights ``W ~ N(0, 1/n_in)``;
        ``None`` gives zeros (useful for function-preserving growth).
    bias_std : standard deviation of the initial bias (0 gives zeros).
    """

    param_names = ("W", "b")
    has_kfac_block = True

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator | None = None,
                 bias_std: float = 0.0) -> None:
        super().__init__()
        n_in = check_positive_int(n_in, "Dense n_in")
        n_out = check_positive_int(n_out, "Dense n_out")
        rng = check_rng(rng, "Dense rng")
        bias_std = check_scalar(bias_std, "Dense bias_std", minimum=0.0)
        if rng is None:
            W = np.zeros((n_out, n_in))
            b = np.zeros(n_out)
        else:
            W = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
            b = bias_std * rng.standard_normal(n_out)
        self.params = {"W": W, "b": b}

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out}

    @property
    def n_in(self) -> int:
        return self.params["W"].shape[1]

    @property
    def n_out(self) -> int:
        return self.params["W"].shape[0]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.n_in,)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.n_out,)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """``S[n] = W A[n] + b``; A (N, in) -> S (N, out).  Caches a private copy of ``A``."""
        A = self._private_input(X)
        self._set_cache(A=A)
        return A @ self.params["W"].T + self.params["b"]

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP: ``dW = dS^T A`` (out, in), ``db = sum_n dS[n]``, ``dA = dS W`` (N, in)."""
        A = self._cached()["A"]
        dS = self._check_like(dY, (A.shape[0], self.n_out), "output cotangent")
        grads = {"W": dS.T @ A, "b": dS.sum(axis=0)}
        dA = dS @ self.params["W"] if need_input_grad else None
        return dA, grads

    def backward_input(self, dY: np.ndarray) -> np.ndarray:
        """``dA = dS W`` (N, in) only (``Layer.backward_input``).  ``derivations/02-dense.md``
        "Backward (VJP)"."""
        A = self._cached()["A"]
        return self._check_like(dY, (A.shape[0], self.n_out), "output cotangent") @ self.params["W"]

    def backward_per_example(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP per example: ``dW[n] = dS[n] A[n]^T`` (an outer product, (N, out, in)),
        ``db[n] = dS[n]`` (N, out), ``dA = dS W`` (N, in).  ``derivations/02-dense.md``
        "Per-example gradients"."""
        A = self._cached()["A"]
        dS = self._check_like(dY, (A.shape[0], self.n_out), "output cotangent")
        grads = {"W": dS[:, :, None] * A[:, None, :], "b": dS.copy()}
        dA = dS @ self.params["W"] if need_input_grad else None
        return dA, grads

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        """JVP: ``dS = dA W^T + A dW^T + db`` (N, out)."""
        self._check_param_keys(dparams)
        A = self._cached()["A"]
        out = np.zeros((A.shape[0], self.n_out))
        if dX is not None:
            out += self._check_like(dX, A.shape, "input tangent") @ self.params["W"].T
        dW = self._param_tangent(dparams, "W")
        if dW is not None:
            out += A @ dW.T
        db = self._param_tangent(dparams, "b")
        if db is not None:
            out += db
        return out

    def curvature_inputs(self) -> np.ndarray:
        """Layer inputs as ``(N, 1, in)`` (one 'location' per example)."""
        return self._cached()["A"][:, None, :]

    def curvature_outgrads(self, dY: np.ndarray) -> np.ndarray:
        """Output cotangents ``dY`` (N, out) as ``(N, 1, out)``."""
        return self._check_outgrads(dY)[:, None, :]
