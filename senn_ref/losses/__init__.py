"""Losses with output-space gradients, output metrics and the expansion-score ceiling.

Public API: ``mse()`` and ``softmax_cross_entropy()`` return loss objects that
follow the interface documented in :mod:`senn_ref.losses.base` (``check``,
``per_example``, ``value``, ``output_grad``, ``value_and_grad``, ``metric``,
``metric_sqrt``, ``metric_apply``, ``ceiling_terms``, ``ceiling``, ``whitened``; the
cross-entropy object adds ``probabilities``, ``predict`` and ``accuracy``).
``METRICS`` lists the output metrics: "euclidean", "true", "empirical".

Derivations: ``derivations/07-losses.md``.
"""
from .base import METRICS, Loss
from .cross_entropy import SoftmaxCrossEntropyLoss, softmax, softmax_cross_entropy
from .mse import MSELoss, mse

__all__ = ["METRICS", "Loss", "MSELoss", "SoftmaxCrossEntropyLoss", "mse",
           "softmax", "softmax_cross_entropy"]
