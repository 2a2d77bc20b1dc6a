"""Mean squared error with the 1/2 convention:  l_n = 1/2 ||f_n - y_n||^2.

Shapes: outputs ``F`` (N, K), targets ``Y`` (N, K) float.
Output gradient ``e_n = f_n - y_n``; the true output metric (Fisher of a
unit-variance Gaussian likelihood, equal to the Hessian of ``l_n``) is ``I``,
so "true" and "euclidean" coincide and the ceiling is
``lambda = (1/N) sum_n ||e_n||^2 = 2 L``.

Derivations: ``derivations/07-losses.md`` sections 1, 3 and 6.
Tests: ``tests/test_losses.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_shape
from .base import Loss


class MSELoss(Loss):
    """``l_n = 1/2 ||f_n - y_n||^2``; see the module docstring and :class:`Loss`."""

    name = "mse"

    def _check_targets(self, F: np.ndarray, Y) -> np.ndarray:
        """Targets must be a finite float array with the shape of ``F`` (N, K)."""
        T = as_float_array(Y, "Y (regression targets)", ndim=2)
        check_shape(T, F.shape, "Y (regression targets)")
        return T

    def _per_example(self, F, T):
        """``l_n = 1/2 sum_k (f_nk - y_nk)^2`` (N,)."""
        R = F - T
        return 0.5 * np.sum(R * R, axis=1)

    def _output_grad(self, F, T):
        """``e_n = f_n - y_n`` (N, K)."""
        return F - T

    def _true_metric(self, F, T):
        """``M_n = I`` (N, K, K): the Hessian of ``l_n`` w.r.t. ``f_n``."""
        N, K = F.shape
        return np.broadcast_to(np.eye(K), (N, K, K)).copy()

    def _true_metric_sqrt(self, F, T):
        """``R_n = I`` (N, K, K)."""
        return self._true_metric(F, T)

    def _true_metric_apply(self, F, T, V):
        """``M_n v_n = v_n`` (N, K)."""
        return V.copy()

    def _true_ceiling_terms(self, F, T):
        """``e_n^T I e_n = ||e_n||^2 = 2 l_n`` (N,)."""
        E = F - T
        return np.sum(E * E, axis=1)

    def _true_whitened(self, F, T):
        """``h_n = I^+ e_n = f_n - y_n`` (N, K)."""
        return F - T


def mse() -> MSELoss:
    """The mean-squared-error loss object ``l_n = 1/2 ||f_n - y_n||^2`` (see :class:`MSELoss`)."""
    return MSELoss()
