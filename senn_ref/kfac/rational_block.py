"""Exact per-unit 3x3 curvature blocks of the Rational activation's parameters (v, c, l).

Unit ``u`` of a Rational layer acts on its own entries ``x_{n,u,t}`` (``t`` runs
over spatial positions; one position for dense batches) with its own
parameters ``theta_u = (v_u, c_u, l_u)``.  With ``phi_{n,u,t} = d sigma(x_{n,u,t};
theta_u) / d theta_u`` (3,) and ``delta_{n,r,u,t}`` the cotangent that metric
column ``r`` delivers to the layer's output, the rows of ``R_n^T J_n`` that
belong to ``theta_u`` are ``w_{n,r,u} = sum_t delta_{n,r,u,t} phi_{n,u,t}``, so the
exact diagonal block of the Fisher is

    B_u = (1/N) sum_n sum_r w_{n,r,u} w_{n,r,u}^T        (3 x 3, order = param_names)

No Kronecker assumption is involved: it is the exact Fisher restricted to the
unit's three parameters (for the "exact" column mode).  Off-diagonal blocks
(between units or with other layers) are dropped.
``derivations/13-rational-curvature.md``; ``tests/test_kfac_factors.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .columns import check_options, run_columns

#: relative eigenvalue cut-off for solves with a per-unit block.  sigma depends on
#: (v, c, l) only through its direction up to eps = 1e-8, so ``B_u theta_u = O(eps)`` and
#: the block has an eigenvalue ~ eps^2 = 1e-16 times its scale along ``theta_u``; that
#: direction is treated as the null direction it is up to eps.  13-rational-curvature.md
#: section 3.
RATIONAL_RCOND = 1e-10


@dataclass
class RationalBlocks:
    """Per-unit blocks of one Rational layer: ``B`` (units, 3, 3) in ``param_names`` order,
    ``B[u] = (1/N) sum_{n,r} w w^T`` (13-rational-curvature.md section 1)."""
    B: np.ndarray
    param_names: tuple

    def copy(self) -> "RationalBlocks":
        return RationalBlocks(self.B.copy(), self.param_names)


def is_rational(layer) -> bool:
    """True for the Rational activation layer (per-unit parameters v, c, l; 13-rational-curvature.md)."""
    from ..layers.rational import Rational
    return isinstance(layer, Rational)


def param_partials(layer) -> np.ndarray:
    """``phi`` (N, units, T, 3): ``d sigma / d(p)`` for ``p`` in ``param_names`` at every entry.

    Obtained from the layer's forward-mode pass with an all-ones tangent of one
    parameter: each parameter touches only its own unit, so the output tangent
    entry ``(n, u, t)`` is exactly ``d sigma_{n,u,t} / d p_u`` (13-rational-curvature.md 2).
    """
    cols = []
    for k in layer.param_names:
        t = layer.jvp(None, {k: np.ones(layer.params[k].shape)})
        cols.append(t.reshape(t.shape[0], t.shape[1], -1))
    return np.stack(cols, axis=3)


def unit_rows(phi: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``w`` (N, units, 3) with ``w_{n,u} = sum_t delta_{n,u,t} phi_{n,u,t}``;
    ``phi`` (N, units, T, 3), ``delta`` (N, units, ...) (reshaped to (N, units, T)).
    13-rational-curvature.md section 1."""
    d = delta.reshape(phi.shape[0], phi.shape[1], -1)
    return np.einsum("nut,nutp->nup", d, phi)


def rational_flat_indices(net, layer) -> np.ndarray:
    """(units, 3) positions of ``(v_u, c_u, l_u)`` in ``net.get_flat()`` (``param_names`` order;
    13-rational-curvature.md section 1)."""
    sl = net.param_slices()
    return np.stack([np.arange(sl[f"{layer.name}.{k}"].start, sl[f"{layer.name}.{k}"].stop)
                     for k in layer.param_names], axis=1)


class RationalAccumulator:
    """Accumulates the blocks ``B_u`` of every Rational layer (see ``columns.run_columns``;
    13-rational-curvature.md section 1)."""

    def __init__(self) -> None:
        self.result: dict[str, RationalBlocks] = {}

    def start(self, net, N: int) -> None:
        self._N = N
        self._layers = [(i, la) for i, la in enumerate(net.layers) if is_rational(la)]
        self._phi = {la.name: param_partials(la) for _, la in self._layers}
        self._B = {la.name: np.zeros((la.units, 3, 3)) for _, la in self._layers}

    def add(self, grads, weight: float) -> None:
        for i, la in self._layers:
            w = unit_rows(self._phi[la.name], np.asarray(grads.output_grads[i]))
            self._B[la.name] += weight * np.einsum("nup,nuq->upq", w, w)

    def finish(self) -> None:
        for _, la in self._layers:
            B = self._B[la.name] / self._N
            self.result[la.name] = RationalBlocks(0.5 * (B + np.swapaxes(B, 1, 2)),
                                                  tuple(la.param_names))


def unit_gradients(layer, grads: dict) -> np.ndarray:
    """(units, 3) gradient rows ``g_u = (dv_u, dc_u, dl_u)`` from a layer-local grads dict
    (13-rational-curvature.md section 4)."""
    return np.stack([np.asarray(grads[k]) for k in layer.param_names], axis=1)


def rational_blocks(net, X, Y, loss, metric: str = "euclidean", mode: str = "exact",
                    n_samples: int = 1, rng=None) -> dict:
    """Per-unit blocks of every Rational layer: dict layer name -> :class:`RationalBlocks`.

    ``B[u]`` (3, 3) equals the exact Fisher's diagonal block of ``(v_u, c_u, l_u)``
    (rows/columns in ``rational_flat_indices`` order) when ``mode="exact"``;
    "mc"/"code" use the same columns as :func:`kfac_factors`.  Empty dict if
    the network has no Rational layer.  ``derivations/13-rational-curvature.md``.
    """
    n_samples, rng = check_options(metric, mode, n_samples, rng)
    acc = RationalAccumulator()
    run_columns(net, X, Y, loss, metric, mode, n_samples, rng, [acc])
    return acc.result
