"""Softmax cross-entropy:  l_n = logsumexp(f_n) - t_n . f_n.

Shapes: logits ``F`` (N, K) with K >= 2; targets either integer labels (N,)
in ``[0, K)`` or float (N, K) rows that are probability vectors (entries >= 0,
row sums within 1e-8 of 1).  ``check`` turns labels into one-hot rows ``T``,
so both forms give identical results.

With ``p_n = softmax(f_n)``:
- output gradient ``e_n = p_n - t_n``;
- true output metric ``M_n = diag(p_n) - p_n p_n^T`` (Fisher of the categorical
  likelihood = Hessian of ``l_n`` w.r.t. ``f_n``), square root
  ``R_n = diag(sqrt p_n) - p_n sqrt(p_n)^T``;
- true ceiling term ``e_n^T M_n^+ e_n = sum_k (p_nk - t_nk)^2 / p_nk``, the
  chi-squared divergence ``chi^2(t_n || p_n)`` (``1/p_{n,y} - 1`` for a label y);
- whitened gradient ``R_n^+ e_n = e_n / sqrt(p_n)`` elementwise.

Everything is computed from the shifted logits ``f - max f``, so logits of
size 1e4 neither overflow nor lose the loss value.

Derivations: ``derivations/07-losses.md`` sections 2, 3, 4, 4.1, 4.2 and 6.
Tests: ``tests/test_losses.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_shape
from .base import Loss

#: tolerance on the row sums of probability targets
PROB_SUM_TOL = 1e-8


def _shifted(F: np.ndarray):
    """``(m, Z, s)``: row maxima m (N,), shifted logits Z = F - m (N, K), s = sum_k exp(Z) (N,)."""
    m = F.max(axis=1)
    Z = F - m[:, None]
    s = np.exp(Z).sum(axis=1)
    return m, Z, s


def _probabilities_and_complements(F: np.ndarray):
    """``(P, C)``: ``P = softmax(F)`` (N, K) and ``C = 1 - P`` (N, K), each entry of ``C`` to a
    few ulps relative.  For the most probable class ``a`` (``exp(f_a - m) = 1``) ``1 - p_a`` is
    the sum of the other probabilities, ``sum_{j != a} exp(f_j - m) / s``: computing ``1 - p_a``
    directly would leave an absolute error ~eps, all of ``1 - p_a`` when it is below ~1e-16.  The
    other classes have ``p_k <= 1/2``, so ``1 - p_k >= 1/2`` loses nothing.  07-losses.md 4.2."""
    _, Z, s = _shifted(F)
    W = np.exp(Z)
    P = W / s[:, None]
    C = 1.0 - P
    rows, a = np.arange(F.shape[0]), np.argmax(F, axis=1)
    W[rows, a] = 0.0
    C[rows, a] = W.sum(axis=1) / s
    return P, C


def softmax(F: np.ndarray) -> np.ndarray:
    """Row-wise softmax ``p_nk = exp(f_nk) / sum_j exp(f_nj)`` (N, K), overflow-free."""
    F = as_float_array(F, "F (logits)", ndim=2)
    _, Z, s = _shifted(F)
    return np.exp(Z) / s[:, None]


class SoftmaxCrossEntropyLoss(Loss):
    """``l_n = logsumexp(f_n) - t_n . f_n``; see the module docstring and :class:`Loss`."""

    name = "softmax_cross_entropy"

    # ------------------------------------------------------------- targets
    def _check_outputs(self, F: np.ndarray) -> None:
        if F.shape[1] < 2:
            raise ValueError(f"F (logits): softmax cross-entropy needs K >= 2 classes, got shape {F.shape}")

    def _check_targets(self, F: np.ndarray, Y) -> np.ndarray:
        N, K = F.shape
        labels = self._check_labels(F, Y)
        if labels is not None:
            T = np.zeros((N, K))
            T[np.arange(N), labels] = 1.0
            return T
        return self._check_probabilities(F, Y)

    def _check_labels(self, F: np.ndarray, Y):
        """The validated integer labels (N,) when ``Y`` holds labels, else None (then ``Y``
        is checked as probability rows by :meth:`_check_probabilities`)."""
        N, K = F.shape
        self._check_outputs(F)
        arr = Y if isinstance(Y, np.ndarray) else np.asarray(Y)
        if arr.dtype.kind not in "iu":
            return None
        if arr.ndim != 1:
            raise ValueError(f"Y (integer class labels): expected shape ({N},), got {arr.shape}")
        check_shape(arr, (N,), "Y (integer class labels)")
        if arr.size and (arr.min() < 0 or arr.max() >= K):
            raise ValueError(f"Y (integer class labels): labels must lie in [0, {K}), "
                             f"got range [{arr.min()}, {arr.max()}]")
        return arr

    def _check_probabilities(self, F: np.ndarray, Y) -> np.ndarray:
        arr = Y if isinstance(Y, np.ndarray) else np.asarray(Y)
        kind = arr.dtype.kind
        if kind == "f":
            if arr.ndim == 1:
                raise TypeError("Y: class labels of shape (N,) must be integers, got dtype "
                                f"{arr.dtype}; pass float targets as (N, K) probability rows")
            T = as_float_array(arr, "Y (probability targets)", ndim=2)
            check_shape(T, F.shape, "Y (probability targets)")
            if (T < 0).any():
                raise ValueError(f"Y (probability targets): {int((T < 0).sum())} negative entries")
            dev = np.abs(T.sum(axis=1) - 1.0)
            if (dev > PROB_SUM_TOL).any():
                raise ValueError(f"Y (probability targets): rows must sum to 1 within {PROB_SUM_TOL:g}, "
                                 f"worst row {int(dev.argmax())} is off by {dev.max():.3e}")
            return T
        raise TypeError(f"Y: expected integer class labels (N,) or float probability rows (N, K), "
                        f"got dtype {arr.dtype}")

    # ------------------------------------------------------ value and gradient
    def _per_example(self, F, T):
        """``l_n = (m_n - t_n . f_n) + log sum_k exp(f_nk - m_n)`` with ``m_n = max_k f_nk`` (N,)."""
        m, _, s = _shifted(F)
        return (m - np.sum(T * F, axis=1)) + np.log(s)

    def _output_grad(self, F, T):
        """``e_n = softmax(f_n) - t_n`` (N, K)."""
        _, Z, s = _shifted(F)
        return np.exp(Z) / s[:, None] - T

    def value_and_grad(self, F, Y):
        """``(L, E)`` as :meth:`Loss.value_and_grad`, the same numbers, computed from one
        evaluation of the shifted exponentials ``exp(f_n - m_n)``; integer labels are used
        directly (``t_n . f_n = f_{n, y_n}``, ``e_n = p_n - 1_{y_n}``) instead of through
        one-hot rows (both are exact: the other terms are zeros).  07-losses.md section 2."""
        F = as_float_array(F, "F (network outputs)", ndim=2)
        E = np.empty(F.shape)
        return self._value_and_grad_into(F, Y, E), E

    def _value_and_grad_into(self, F: np.ndarray, Y, E: np.ndarray) -> float:
        """:meth:`value_and_grad` for a validated float64 ``F`` (N, K), writing ``E`` (N, K) into
        the given buffer and returning ``L`` (``senn_ref.buffered_pass`` passes a buffer it keeps)."""
        labels = self._check_labels(F, Y)
        T = None if labels is not None else self._check_probabilities(F, Y)
        m = F.max(axis=1)
        np.subtract(F, m[:, None], out=E)
        np.exp(E, out=E)                                   # exp(Z), Z = F - m
        s = E.sum(axis=1)
        E /= s[:, None]                                    # p
        if labels is None:
            fy = np.sum(T * F, axis=1)
            E -= T
        else:
            rows = np.arange(F.shape[0])
            fy = F[rows, labels]
            E[rows, labels] -= 1.0
        return float(np.mean((m - fy) + np.log(s)))

    # -------------------------------------------------------------- metric
    def _true_metric(self, F, T):
        """``M_n = diag(p_n) - p_n p_n^T`` (N, K, K), the diagonal as ``p_nk (1 - p_nk)`` with
        ``1 - p_nk`` from :func:`_probabilities_and_complements` (relatively accurate)."""
        P, C = _probabilities_and_complements(F)
        M = -P[:, :, None] * P[:, None, :]
        idx = np.arange(F.shape[1])
        M[:, idx, idx] = P * C
        return M

    def _true_metric_sqrt(self, F, T):
        """``R_n = diag(q_n) - p_n q_n^T`` with ``q_n = sqrt(p_n)`` (N, K, K); ``R R^T = M`` as
        sum p = 1.  The diagonal ``q_nk (1 - p_nk)`` uses the relatively accurate complement
        of :func:`_probabilities_and_complements`, not ``q - p q``, which cancels when
        ``p_nk`` is near 1 (07-losses.md section 4.2)."""
        P, C = _probabilities_and_complements(F)
        Q = np.sqrt(P)
        R = -P[:, :, None] * Q[:, None, :]
        idx = np.arange(F.shape[1])
        R[:, idx, idx] = Q * C
        return R

    def _true_metric_apply(self, F, T, V):
        """``M_n v_n = p_n * (w_n - p_n . w_n)`` (N, K) with ``w_n = v_n - v_{n,a}``, ``a`` the
        most probable class: the same as ``p * v - p (p . v)`` since ``M_n 1 = 0``, but the entry
        of class ``a``, ``-p_a sum_{j != a} p_j (v_j - v_a)``, keeps its relative accuracy when
        ``p_a`` is near 1 instead of cancelling ``v_a - p . v`` (07-losses.md section 4.2)."""
        P = self.probabilities(F)
        a = np.argmax(F, axis=1)
        W = V - V[np.arange(F.shape[0]), a][:, None]
        return P * (W - np.sum(P * W, axis=1, keepdims=True))

    def _true_ceiling_terms(self, F, T):
        """``chi^2(t_n || p_n) = sum_k (p_nk - t_nk)^2 / p_nk`` (N,).

        Terms with ``t_nk = 0`` reduce to ``p_nk`` exactly (no 0/0 when ``p_nk``
        underflows); the others use ``1/p_nk = exp(logsumexp(f_n) - f_nk)``.  A
        target class whose probability underflows gives ``inf``, which is the
        correct value to float64 precision (it exceeds 1e308).  Exact when the
        target rows sum to 1 (then ``e_n`` lies in the range of ``M_n``); for
        rows off by ``d <= 1e-8`` the pseudo-inverse value differs by
        O(d sum_k 1/p_nk).
        """
        _, Z, s = _shifted(F)
        P = np.exp(Z) / s[:, None]
        terms = P.copy()
        mask = T > 0
        with np.errstate(over="ignore"):
            inv_p = np.exp(np.log(s)[:, None] - Z)[mask]
        D = P[mask] - T[mask]
        terms[mask] = D * D * inv_p
        return terms.sum(axis=1)

    def _true_whitened(self, F, T):
        """``h_n = R_n^+ e_n = e_n / sqrt(p_n)`` elementwise (N, K), the minimum-norm solution of
        ``R_n h_n = e_n`` (07-losses.md section 4.1): ``h_nk = sqrt(p_nk)`` where ``t_nk = 0``,
        ``(p_nk - t_nk) exp((logsumexp(f_n) - f_nk) / 2)`` elsewhere, so that no probability is
        divided by and a target class whose probability underflows gives a huge or infinite
        entry rather than 0/0.  ``||h_n||^2 = chi^2(t_n || p_n)``, the ceiling term."""
        _, Z, s = _shifted(F)
        half = 0.5 * (Z - np.log(s)[:, None])              # log sqrt(p_nk)
        H = np.exp(half)
        mask = T > 0
        E = np.exp(Z) / s[:, None] - T
        with np.errstate(over="ignore"):
            H[mask] = E[mask] * np.exp(-half[mask])
        return H

    # ------------------------------------------------------------- helpers
    def probabilities(self, F) -> np.ndarray:
        """``softmax(F)`` (N, K)."""
        return softmax(F)

    def predict(self, F) -> np.ndarray:
        """Predicted classes ``argmax_k f_nk`` (N,) int64 (first index on ties)."""
        F = as_float_array(F, "F (logits)", ndim=2)
        return np.argmax(F, axis=1)

    def accuracy(self, F, Y) -> float:
        """Fraction of examples with ``argmax f_n == argmax t_n`` (labels: ``== y_n``)."""
        F, T = self.check(F, Y)
        return float(np.mean(np.argmax(F, axis=1) == np.argmax(T, axis=1)))


def softmax_cross_entropy() -> SoftmaxCrossEntropyLoss:
    """The softmax cross-entropy loss object (see :class:`SoftmaxCrossEntropyLoss`)."""
    return SoftmaxCrossEntropyLoss()
