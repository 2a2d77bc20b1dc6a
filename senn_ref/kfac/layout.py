"""Kronecker ordering and flattening: how a K-FAC block maps onto the flat parameter vector.

Convention (``derivations/11-kfac.md`` section 2, pinned by
``tests/test_kfac_factors.py::test_worked_example_ordering``):

* A layer with a Kronecker block has a weight ``W`` viewed as a matrix
  ``(out, in)`` (Dense: as stored; Conv2D ``(O, C, kh, kw)``: reshaped row-major to
  ``(O, C*kh*kw)``, which matches the patch layout of ``curvature_inputs``) and,
  optionally, a bias ``b`` (out,).
* The *folded* matrix is ``[W | b]`` (out, in+1): the bias is the last column,
  the coefficient of a constant input 1.  Flattened row-major, its Fisher block
  is approximated by ``G (x) A`` (``np.kron(G, A)``), because the per-example
  gradient ``d a^T`` flattens row-major to ``d (x) a``.
* The network's flat order is different: ``W`` row-major, then ``b``.
  ``folded_permutation`` converts between the two.
"""
from __future__ import annotations

import numpy as np


def has_bias(layer) -> bool:
    """True if the layer owns a bias ``params["b"]`` (folded into K-FAC as a constant input;
    11-kfac.md section 1)."""
    return "b" in layer.params


def weight_matrix_shape(layer) -> tuple[int, int]:
    """``(out, in)``: the weight viewed as a matrix (Conv2D: ``(O, C*kh*kw)``; 12-kfc-conv.md 1)."""
    W = layer.params["W"]
    return W.shape[0], int(W.size // W.shape[0])


def fold(dW, db=None) -> np.ndarray:
    """``[dW | db]`` (out, in+1) from ``dW`` (out, ...) and ``db`` (out,); ``db=None`` gives ``dW``
    reshaped to (out, in) (a layer without bias).  11-kfac.md section 2; tested in
    ``tests/test_kfac_factors.py::test_fold_unfold_roundtrip``."""
    dW = np.asarray(dW, dtype=np.float64)
    M = dW.reshape(dW.shape[0], -1)
    if db is None:
        return M.copy()
    return np.concatenate([M, np.asarray(db, dtype=np.float64)[:, None]], axis=1)


def unfold(M, w_shape, with_bias: bool = True):
    """Inverse of :func:`fold`: ``(dW shaped w_shape, db (out,))`` from ``M`` (out, in+1);
    ``db`` is None when ``with_bias`` is false.  11-kfac.md section 2."""
    M = np.asarray(M, dtype=np.float64)
    if not with_bias:
        return M.reshape(w_shape).copy(), None
    return M[:, :-1].reshape(w_shape).copy(), M[:, -1].copy()


def folded_permutation(n_out: int, n_in: int, with_bias: bool = True) -> np.ndarray:
    """Index array ``p`` (out*(in+1),) with ``network_vec = folded_vec[p]``.

    ``folded_vec`` is ``[W | b]`` flattened row-major; ``network_vec`` is
    ``concatenate([W.ravel(), b])`` (the network's flat order for this layer).
    So a block in the network order is ``B_net = B_folded[np.ix_(p, p)]``.
    Entry ``W[i, j]`` sits at ``i*(in+1) + j`` when folded and ``i*in + j`` in
    the network; ``b[i]`` sits at ``i*(in+1) + in`` and ``out*in + i``.
    Without bias the two orders coincide (``p = arange(out*in)``).
    11-kfac.md section 2; ``tests/test_kfac_factors.py::test_worked_example_ordering``.
    """
    cols = n_in + 1 if with_bias else n_in
    rows = np.arange(n_out)[:, None]
    w_part = (rows * cols + np.arange(n_in)[None, :]).ravel()
    if not with_bias:
        return w_part
    return np.concatenate([w_part, np.arange(n_out) * cols + n_in])


def layer_flat_indices(net, layer) -> np.ndarray:
    """Positions (out*in + out,) of the layer's ``W`` then ``b`` entries in ``net.get_flat()``
    (network order; 11-kfac.md section 2)."""
    slices = net.param_slices()
    idx = [np.arange(slices[f"{layer.name}.W"].start, slices[f"{layer.name}.W"].stop)]
    if has_bias(layer):
        idx.append(np.arange(slices[f"{layer.name}.b"].start, slices[f"{layer.name}.b"].stop))
    return np.concatenate(idx)


def kron_block_network_order(factors) -> np.ndarray:
    """The explicit ``G (x) A`` of a :class:`KroneckerFactors`, permuted to the network's
    (W row-major, then b) order: (out*(in+1), out*(in+1)).  For tests and tiny layers only; 11-kfac.md section 2."""
    K = np.kron(factors.G, factors.A)
    p = folded_permutation(factors.G.shape[0], factors.A.shape[0] - int(factors.with_bias),
                           factors.with_bias)
    return K[np.ix_(p, p)]
