"""NumPy twin of :mod:`senn_ref.kernels.sequential_numba`: the same results by the layer-wise path.

The compiled kernels fuse a sequential network's passes; their twin is the network's own
layer-by-layer code (:meth:`Network.forward <senn_ref.network.Network.forward>`,
``backward`` and ``jvp``, which never take the compiled path), packed like the kernels'
results.  Tests compare the two at 1e-12 (``tests/test_network_plan.py``);
``derivations/24-sequential-fast-path.md`` section 3.
"""
from __future__ import annotations

import numpy as np


def sequential_loss_grad_numpy(net, X, Y, loss):
    """Twin of the forward + loss/backward kernels: ``(L, grad (P,), output_grads)`` with
    ``L = (1/N) sum_n l_n``, ``grad = sum_n J_n^T e_n / N`` and ``output_grads[i]`` the
    cotangent of layer i's output (N, DOUT_i).  X (N, in); Y the loss's targets."""
    F = net.forward(X)
    N = F.shape[0]
    value, E = loss.value_and_grad(F.reshape(N, -1), Y)
    res = net.backward(E.reshape(F.shape) / N)
    return value, res.flat_grad(), res.output_grads


def sequential_ggn_numpy(net, X, loss, v, metric: str = "euclidean", Y=None) -> np.ndarray:
    """Twin of ``sequential_ggn_numba``: ``F v = (1/N) sum_n J_n^T M_n J_n v`` (P,) for the
    output metric ``M_n`` (euclidean, true, empirical; ``Y`` needed for empirical), by one
    layer-wise forward, JVP and backward pass.  X (N, in), v (P,)."""
    F = net.forward(X)
    N = F.shape[0]
    Jv = net.jvp_flat(v)
    if metric != "euclidean":
        Jv = loss.metric_apply(F.reshape(N, -1), Y, Jv.reshape(N, -1), metric).reshape(Jv.shape)
    return net.backward(Jv / N).flat_grad()
