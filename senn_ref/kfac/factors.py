"""Kronecker factors ``A`` and ``G`` of Dense (K-FAC) and Conv2D (KFC "expand") layers.

For a layer with per-location inputs ``a_{n,t}`` (bias folded as a last
coordinate 1) and back-propagated pre-activation cotangents ``d_{n,r,t}``
(column ``r`` of the metric square root, ``columns.py``):

    A = (1/N) sum_n sum_t a_{n,t} a_{n,t}^T                  ((in+1) x (in+1))
    G = (1/N) sum_n (1/T) sum_t sum_r w_r d_{n,r,t} d_{n,r,t}^T   (out x out)

(Dense: ``T = 1``.)  The Fisher block of ``[W | b]`` flattened row-major is
approximated by ``G (x) A`` (``layout.py``).  The ``1/N`` belongs to the mean
loss; the cotangents are per example.  ``derivations/11-kfac.md`` sections 1-5
(dense) and ``derivations/12-kfc-conv.md`` (conv); tests in
``tests/test_kfac_factors.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .columns import check_options, run_columns
from .layout import has_bias


@dataclass
class KroneckerFactors:
    """The two factors of one layer's block ``F_layer ~ G (x) A``.

    A : (in+1, in+1) input second moment, bias coordinate last (``in`` without bias)
    G : (out, out) cotangent second moment
    with_bias : whether ``A``'s last coordinate is the folded bias
    n_locations : T (1 for Dense, Ho*Wo for Conv2D)
    ``np.kron(G, A)`` approximates the block of ``[W | b]`` flattened row-major
    (11-kfac.md section 2).
    """
    A: np.ndarray
    G: np.ndarray
    with_bias: bool = True
    n_locations: int = 1

    def copy(self) -> "KroneckerFactors":
        return KroneckerFactors(self.A.copy(), self.G.copy(), self.with_bias, self.n_locations)


def folded_inputs(layer) -> np.ndarray:
    """``abar = (a, 1)``: ``curvature_inputs()`` with a constant 1 appended when the layer has a
    bias, (N, T, in+1).  11-kfac.md section 1."""
    a = np.asarray(layer.curvature_inputs(), dtype=np.float64)
    if not has_bias(layer):
        return a
    return np.concatenate([a, np.ones(a.shape[:2] + (1,))], axis=2)


def input_factor(layer, a: np.ndarray | None = None) -> np.ndarray:
    """``A = (1/N) sum_{n,t} abar abar^T`` from the layer's cached forward inputs (or from
    ``a = folded_inputs(layer)`` (N, T, in+1) if given): (in+1, in+1).
    11-kfac.md section 2, 12-kfc-conv.md section 2."""
    a = folded_inputs(layer) if a is None else a
    N, T, D = a.shape
    flat = a.reshape(N * T, D)
    A = flat.T @ flat / N
    return 0.5 * (A + A.T)


class KronAccumulator:
    """Accumulates ``A`` and ``G`` for every layer with ``has_kfac_block`` (see ``run_columns``):
    ``G += (w_r / T) sum_{n,t} d d^T`` per column, divided by N at the end (11-kfac.md 2-3)."""

    def __init__(self) -> None:
        self.result: dict[str, KroneckerFactors] = {}

    def start(self, net, N: int) -> None:
        self._N = N
        self._layers = [(i, la) for i, la in enumerate(net.layers) if la.has_kfac_block]
        self._A, self._G, self._T = {}, {}, {}
        for _, la in self._layers:
            a = folded_inputs(la)
            self._A[la.name] = input_factor(la, a)
            self._T[la.name] = a.shape[1]
            self._G[la.name] = np.zeros((la.params["W"].shape[0],) * 2)

    def add(self, grads, weight: float) -> None:
        for i, la in self._layers:
            d = np.asarray(la.curvature_outgrads(grads.output_grads[i]), dtype=np.float64)
            N, T, D = d.shape
            flat = d.reshape(N * T, D)
            self._G[la.name] += (weight / T) * (flat.T @ flat)

    def finish(self) -> None:
        for _, la in self._layers:
            G = self._G[la.name] / self._N
            self.result[la.name] = KroneckerFactors(self._A[la.name], 0.5 * (G + G.T),
                                                    has_bias(la), self._T[la.name])


def kfac_layers(net) -> list:
    """The layers of ``net`` with a Kronecker block (Dense, Conv2D); ValueError if there are none.
    11-kfac.md section 1."""
    layers = [la for la in net.layers if la.has_kfac_block]
    if not layers:
        raise ValueError(f"network has no layer with a Kronecker-factored block (Dense/Conv2D): "
                         f"{[la.name for la in net.layers]}")
    return layers


def kfac_factors(net, X, Y, loss, metric: str = "euclidean", mode: str = "exact",
                 n_samples: int = 1, rng=None) -> dict:
    """K-FAC / KFC-expand factors of every Dense and Conv2D layer of ``net`` at ``X``.

    Parameters
    ----------
    net : ``Network``; X (N,) + in_shape; Y targets for ``loss`` (N, K), K = prod(out_shape)
        (the network output is flattened per example before the loss sees it)
    loss : a ``senn_ref.losses`` loss (``value_and_grad``, ``metric_sqrt``)
    metric : "euclidean" | "true" | "empirical" (output metric ``M_n = R_n R_n^T``)
    mode : "exact" (back-propagate every column of ``R_n``), "mc" (``n_samples``
        columns ``R_n xi``, ``xi ~ N(0, I)``, averaged), "code" (``e_n/||e_n||``)
    rng : ``numpy.random.Generator`` for "mc" (default ``default_rng(0)``)

    Returns
    -------
    dict layer name -> :class:`KroneckerFactors` with
    ``A = (1/N) sum_{n,t} a a^T`` ((in+1)^2, bias last) and
    ``G = (1/N) sum_n (1/T) sum_t sum_r d d^T`` (out^2); the Fisher block of
    ``[W | b]`` flattened row-major is approximated by ``G (x) A``
    (``layout.folded_permutation`` maps it to the network's W-then-b order).
    See ``derivations/11-kfac.md`` and ``derivations/12-kfc-conv.md``.
    """
    n_samples, rng = check_options(metric, mode, n_samples, rng)
    kfac_layers(net)
    acc = KronAccumulator()
    run_columns(net, X, Y, loss, metric, mode, n_samples, rng, [acc])
    return acc.result
