"""The loss interface shared by every loss: values, output gradients, output metrics, ceiling.

A loss acts row by row on network outputs ``F`` (N, K) and targets ``Y``.
Subclasses supply the target check and the per-example kernels
(``_per_example``, ``_output_grad``, ``_true_metric*``, ``_true_ceiling_terms``, ``_true_whitened``);
this base class validates every input and dispatches on the output metric.

Public methods (the names the curvature code relies on)
------------------------------------------------------
``check(F, Y) -> (F, T)``
    Validate and normalise: ``F`` float64 (N, K) finite; ``T`` float64 (N, K)
    targets (for cross-entropy, integer labels become one-hot rows).  Every
    method below calls it first, so passing the returned ``T`` back in is fine.
``per_example(F, Y) -> (N,)``, ``value(F, Y) -> float`` (mean),
``output_grad(F, Y) -> E (N, K)`` with ``E[n] = dl_n/df_n`` (not divided by N),
``value_and_grad(F, Y) -> (float, E)``.
``metric(F, Y, metric) -> M (N, K, K)``, ``metric_sqrt(F, Y, metric) -> R (N, K, r)``
    with ``M[n] = R[n] R[n]^T``; ``metric_apply(F, Y, V, metric) -> (N, K)`` rows
    ``M[n] V[n]`` without forming ``M`` where possible.  The euclidean and true
    metrics depend on the outputs only, so ``Y`` may be ``None`` for them; the
    empirical metric needs the targets.
``ceiling_terms(F, Y, metric) -> (N,)`` with entries ``e_n^T M_n^+ e_n`` and
``ceiling(F, Y, metric) -> float`` their mean, ``lambda_M``.
``whitened(F, Y, metric) -> H (N, r)`` with ``H[n] = R[n]^+ e_n`` in closed form
    (``||H[n]||^2`` is the ceiling term).

Output metrics (``metric`` argument)
-------------------------------------
``"euclidean"`` (default): ``M_n = I``.
``"true"``: the Fisher of the model's own likelihood in output space (the
    Hessian of ``l_n`` w.r.t. ``f_n`` for these two losses).
``"empirical"``: ``M_n = e_n e_n^T``.  Offered only for contrast; it is the wrong
    curvature for SENN.  It is not a property of the model (it depends on the
    targets through the residual), it scales with the squared residual and
    vanishes at a perfect fit, and the natural expansion score built on it,
    ``eta = g^T F^+ g`` with ``F = (1/N) sum_n J_n^T e_n e_n^T J_n``, equals
    ``(1/N) 1^T P 1`` where ``P`` projects onto the span of the per-example
    gradients: it is ~1 (its own ceiling) for any gradient as soon as there
    are more parameters than examples, however good or bad the fit is.
    See ``derivations/07-losses.md`` section 5.

Derivations: ``derivations/07-losses.md``.  Tests: ``tests/test_losses.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_option, check_shape

#: the output metrics every loss supports
METRICS = ("euclidean", "true", "empirical")


class Loss:
    """Base class; see the module docstring for the interface."""

    name: str = "loss"

    # ---------------------------------------------------------------- checks
    def check(self, F, Y):
        """Validate ``F`` (N, K) float and the targets; return ``(F, T)`` as float64 (N, K)."""
        F = as_float_array(F, "F (network outputs)", ndim=2)
        T = self._check_targets(F, Y)
        return F, T

    def _check_targets(self, F: np.ndarray, Y) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_outputs(self, F: np.ndarray) -> None:
        """Loss-specific checks of validated outputs that do not involve targets (none here)."""

    @staticmethod
    def _check_metric(metric) -> str:
        return check_option(metric, METRICS, "output metric")

    def _check_for_metric(self, F, Y, metric):
        """``(F, T, metric)`` for the metric methods; ``T`` is None when ``Y`` is None, which
        only the target-free metrics (euclidean, true) accept."""
        metric = self._check_metric(metric)
        if Y is None:
            if metric == "empirical":
                raise ValueError("the empirical metric M_n = e_n e_n^T needs the targets Y")
            F = as_float_array(F, "F (network outputs)", ndim=2)
            self._check_outputs(F)
            return F, None, metric
        F, T = self.check(F, Y)
        return F, T, metric

    # ------------------------------------------------------ value and gradient
    def per_example(self, F, Y) -> np.ndarray:
        """Per-example losses ``l_n`` (N,)."""
        F, T = self.check(F, Y)
        return self._per_example(F, T)

    def value(self, F, Y) -> float:
        """Mean loss ``L = (1/N) sum_n l_n``."""
        F, T = self.check(F, Y)
        return float(np.mean(self._per_example(F, T)))

    def output_grad(self, F, Y) -> np.ndarray:
        """``E`` (N, K) with ``E[n] = dl_n / df_n`` (per example, NOT divided by N)."""
        F, T = self.check(F, Y)
        return self._output_grad(F, T)

    def value_and_grad(self, F, Y):
        """``(L, E)``: the mean loss and the per-example output gradients (N, K)."""
        F, T = self.check(F, Y)
        return float(np.mean(self._per_example(F, T))), self._output_grad(F, T)

    # ---------------------------------------------------------------- metrics
    def metric(self, F, Y=None, metric: str = "euclidean") -> np.ndarray:
        """Output metrics ``M`` (N, K, K): ``I``, the true Fisher, or ``e_n e_n^T``."""
        F, T, metric = self._check_for_metric(F, Y, metric)
        N, K = F.shape
        if metric == "euclidean":
            return np.broadcast_to(np.eye(K), (N, K, K)).copy()
        if metric == "true":
            return self._true_metric(F, T)
        E = self._output_grad(F, T)
        return E[:, :, None] * E[:, None, :]

    def metric_sqrt(self, F, Y=None, metric: str = "euclidean") -> np.ndarray:
        """Square-root factors ``R`` (N, K, r) with ``M[n] = R[n] R[n]^T``.

        euclidean: identity columns (r = K); true: loss-specific (r = K);
        empirical: the single column ``e_n`` (r = 1).
        """
        F, T, metric = self._check_for_metric(F, Y, metric)
        N, K = F.shape
        if metric == "euclidean":
            return np.broadcast_to(np.eye(K), (N, K, K)).copy()
        if metric == "true":
            return self._true_metric_sqrt(F, T)
        return self._output_grad(F, T)[:, :, None]

    def metric_apply(self, F, Y, V, metric: str = "euclidean") -> np.ndarray:
        """Rows ``M[n] V[n]`` (N, K) for ``V`` (N, K), without forming ``M`` where possible.
        ``Y`` may be None for the euclidean and true metrics."""
        F, T, metric = self._check_for_metric(F, Y, metric)
        V = as_float_array(V, "V (output-space vectors)", ndim=2)
        check_shape(V, F.shape, "V (output-space vectors)")
        if metric == "euclidean":
            return V.copy()
        if metric == "true":
            return self._true_metric_apply(F, T, V)
        E = self._output_grad(F, T)
        return E * np.sum(E * V, axis=1, keepdims=True)

    # ---------------------------------------------------------------- ceiling
    def ceiling_terms(self, F, Y, metric: str = "euclidean") -> np.ndarray:
        """Per-example ceiling terms ``e_n^T M_n^+ e_n`` (N,).

        euclidean: ``||e_n||^2``; true: loss-specific closed form;
        empirical: 1 if ``e_n != 0`` else 0 (``e^T (e e^T)^+ e = 1`` for ``e != 0``).
        """
        F, T = self.check(F, Y)
        metric = self._check_metric(metric)
        if metric == "true":
            return self._true_ceiling_terms(F, T)
        E = self._output_grad(F, T)
        if metric == "euclidean":
            return np.sum(E * E, axis=1)
        return np.any(E != 0.0, axis=1).astype(np.float64)

    def whitened(self, F, Y, metric: str = "euclidean") -> np.ndarray:
        """Whitened output gradients ``H`` (N, r): ``h_n = R_n^+ e_n``, the minimum-norm solution
        of ``R_n h_n = e_n`` for the factor ``R_n`` (K, r) of :meth:`metric_sqrt`, in closed form.

        euclidean: ``h_n = e_n`` (r = K); true: loss-specific closed form (r = K);
        empirical: ``R_n = e_n`` (one column), so ``h_n = [1]`` if ``e_n != 0`` else ``[0]``
        (r = 1).  ``||h_n||^2`` is the ceiling term ``e_n^T M_n^+ e_n`` of :meth:`ceiling_terms`.
        ``derivations/07-losses.md`` section 4.1; ``tests/test_losses.py``
        (``test_whitened_matches_pseudo_inverse``, ``test_whitened_ce_at_extreme_logits``).
        """
        F, T = self.check(F, Y)
        metric = self._check_metric(metric)
        if metric == "true":
            return self._true_whitened(F, T)
        E = self._output_grad(F, T)
        if metric == "euclidean":
            return E
        return np.any(E != 0.0, axis=1).astype(np.float64)[:, None]

    def ceiling(self, F, Y, metric: str = "euclidean") -> float:
        """``lambda_M = (1/N) sum_n e_n^T M_n^+ e_n``, the upper bound of the expansion score."""
        return float(np.mean(self.ceiling_terms(F, Y, metric)))

    # ---------------------------------------------------- subclass kernels
    def _per_example(self, F, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def _output_grad(self, F, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def _true_metric(self, F, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def _true_metric_sqrt(self, F, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def _true_metric_apply(self, F, T, V):  # pragma: no cover - abstract
        raise NotImplementedError

    def _true_ceiling_terms(self, F, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def _true_whitened(self, F, T):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_loss(loss, name: str = "loss"):
    """``loss`` must be a ``senn_ref.losses`` loss object (e.g. ``losses.mse()``); a string
    such as ``"mse"`` or anything else raises a TypeError naming the argument.  Returns it."""
    if not isinstance(loss, Loss):
        hint = (f" (use senn_ref.losses.{loss}() rather than the string {loss!r})"
                if isinstance(loss, str) and loss in ("mse", "softmax_cross_entropy") else "")
        raise TypeError(f"{name}: expected a senn_ref.losses loss object such as losses.mse(), "
                        f"got {type(loss).__name__}{hint}")
    return loss
