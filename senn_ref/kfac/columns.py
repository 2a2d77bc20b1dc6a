"""Back-propagated metric columns: the per-example cotangents every K-FAC statistic needs.

The curvature is ``F = (1/N) sum_n J_n^T M_n J_n`` with ``M_n = R_n R_n^T``
(``R_n`` (K, r) from ``loss.metric_sqrt``).  Writing ``F = (1/N) sum_n sum_r
(J_n^T R_n[:, r]) (J_n^T R_n[:, r])^T``, every curvature block is a sum over
*columns* ``r`` of outer products of back-propagated cotangents.  This module
produces those columns and runs one batched backward pass per column; the
K-FAC factor and rational-block accumulators (``factors.py``,
``rational_block.py``) read what they need from each pass.

Modes (``derivations/11-kfac.md`` sections 3 and 5):

``"exact"``  columns ``R_n[:, r]``, ``r = 1..r``, weight 1 each;
``"mc"``     ``S = n_samples`` columns ``R_n xi_{s,n}``, ``xi_{s,n} ~ N(0, I_r)`` drawn
             independently for every sample ``s`` AND every example ``n``, weight ``1/S``
             (unbiased: ``E[R xi xi^T R^T] = R R^T = M``; independent draws per example
             make the variance of a factor fall like ``1/(N S)``, section 5);
``"code"``   the single column ``e_n / ||e_n||`` (the released code's scorer; zero where
             ``e_n = 0``), weight 1.  It ignores ``metric``.

Cotangents are per example and NOT divided by N: the ``1/N`` of the mean-loss
Fisher is applied once, by the accumulators.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_positive_int, check_str_option
from ..losses.base import METRICS, check_loss
from ..network import Gradients

MODES = ("exact", "mc", "code")


@dataclass
class ForwardRecord:
    """What one ``run_columns`` call saw: outputs ``F`` (N, K) (flattened per example),
    output gradients ``E`` (N, K) (``dl_n/df_n``, not divided by N), mean loss value."""
    F: np.ndarray
    E: np.ndarray
    value: float
    out_shape: tuple

    @property
    def N(self) -> int:
        return self.F.shape[0]


def check_options(metric: str, mode: str, n_samples, rng):
    """Validate metric / mode / n_samples / rng (ValueError or TypeError naming the option);
    returns ``(n_samples, rng)`` with ``default_rng(0)`` for mc when ``rng`` is None.
    ``derivations/11-kfac.md`` section 3."""
    check_str_option(metric, METRICS, "metric")
    check_str_option(mode, MODES, "mode", label="K-FAC mode")
    n_samples = check_positive_int(n_samples, "n_samples")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    if mode == "mc" and rng is None:
        rng = np.random.default_rng(0)
    return n_samples, rng


def metric_columns(F, E, Y, loss, metric: str, mode: str, n_samples: int, rng):
    """Cotangent columns ``C`` (S, N, K) and their weights ``w`` (S,).

    ``F`` (N, K) outputs, ``E`` (N, K) output gradients.  See the module
    docstring for the three modes.  ``sum_s w_s C_s[n] C_s[n]^T`` equals ``M_n``
    (exact), is an unbiased estimate of it (mc, ``xi`` (S, N, r) independent per
    example), or is ``e_n e_n^T/||e_n||^2`` (code).  ``derivations/11-kfac.md`` sections 3 and 5.
    """
    if mode == "code":
        norms = np.linalg.norm(E, axis=1, keepdims=True)
        col = np.divide(E, norms, out=np.zeros_like(E), where=norms > 0)
        return col[None], np.ones(1)
    R = np.asarray(loss.metric_sqrt(F, Y, metric), dtype=np.float64)   # (N, K, r)
    if mode == "exact":
        return np.ascontiguousarray(np.moveaxis(R, 2, 0)), np.ones(R.shape[2])
    # one independent draw per sample AND per example: a draw shared across the batch
    # would leave the factors' relative spread at sqrt(2/S) whatever N (11-kfac.md sec. 5)
    xi = rng.standard_normal((n_samples, R.shape[0], R.shape[2]))      # (S, N, r)
    cols = np.einsum("nkr,snr->snk", R, xi)
    return cols, np.full(n_samples, 1.0 / n_samples)


def output_cotangents(net, dY) -> Gradients:
    """The reverse pass of ``dY`` (N,) + out_shape keeping only what the accumulators read:
    ``output_grads[i]`` is the cotangent of layer i's output, the same arrays as
    ``net.backward(dY).output_grads``; ``grads`` is empty and the parameter gradients are
    never formed (``Layer.backward_input``; layer 0's input cotangent is not needed).
    11-kfac.md section 3."""
    outgrads: list = [None] * len(net.layers)
    g = dY
    for i in range(len(net.layers) - 1, -1, -1):
        outgrads[i] = g
        if i > 0:
            g = net.layers[i].backward_input(g)
    return Gradients({}, None, outgrads)


def run_columns(net, X, Y, loss, metric: str, mode: str, n_samples: int, rng,
                accumulators) -> ForwardRecord:
    """Forward ``X``, then one batched backward pass per metric column.

    Each accumulator gets ``start(net, N)`` right after the forward pass (the
    layer caches then hold ``X``), ``add(grads, weight)`` for every column
    (``grads`` a ``network.Gradients`` from :func:`output_cotangents`: the layers' output
    cotangents only, no parameter gradients), and ``finish()`` at the end.  The
    network output is flattened per example to ``K = prod(out_shape)`` before
    the loss sees it; cotangents are reshaped back.  Returns the forward record.
    ``derivations/11-kfac.md`` section 3.
    """
    check_loss(loss)
    out = net.forward(X)
    N = out.shape[0]
    F = out.reshape(N, -1)
    value, E = loss.value_and_grad(F, Y)
    for acc in accumulators:
        acc.start(net, N)
    cols, weights = metric_columns(F, E, Y, loss, metric, mode, n_samples, rng)
    for col, w in zip(cols, weights):
        grads = output_cotangents(net, col.reshape(out.shape))
        for acc in accumulators:
            acc.add(grads, float(w))
    for acc in accumulators:
        acc.finish()
    return ForwardRecord(F=F, E=np.asarray(E), value=float(value), out_shape=tuple(out.shape[1:]))
