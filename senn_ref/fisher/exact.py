"""The exact generalised Gauss-Newton matrix, assembled densely (tiny networks only).

    F = (1/N) sum_n J_n^T M_n J_n        (P, P)

with ``J_n = d f(x_n) / d theta`` (K, P) the per-example parameter Jacobian and
``M_n`` (K, K) the PSD output metric of the loss (``loss.metric``).  Rows and
columns follow ``net.get_flat()``.  This module is the reference that the
matrix-free product, CG and K-FAC are checked against.
See ``derivations/09-fisher.md`` sections 1-3.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_network, check_str_option
from ..layers.base import Layer
from ..losses.base import METRICS, check_loss



def check_metric(metric: str, Y) -> str:
    """Validate the metric name; ``"empirical"`` needs targets ``Y`` (09-fisher.md section 2)."""
    check_str_option(metric, METRICS, "metric")
    if metric == "empirical" and Y is None:
        raise ValueError("metric='empirical' needs the targets: pass Y=... "
                         "(M_n = e_n e_n^T depends on y_n; note it is the wrong curvature for SENN)")
    return metric


def jacobian(net, X) -> np.ndarray:
    """Per-example parameter Jacobian ``J[n, k, p] = d f_k(x_n) / d theta_p``, shape (N, K, P).

    ``K`` is the number of entries of one network output (``prod(net.out_shape)``);
    columns follow ``net.get_flat()``.  Computed by the cheaper of two modes (the
    same matrix up to rounding; tests compare them to 1e-12):

    * reverse (:func:`jacobian_reverse`): K batched backward passes that keep
      per-example parameter gradients, ``J[:, k, :] = [J_n^T e_k]_n``;
    * forward (:func:`jacobian_forward`): P forward-mode passes, ``J[:, :, p] = J e_p``.

    Reverse mode is used when ``K < P`` and every layer with parameters has a
    per-example backward pass (``Layer.backward_per_example``); both modes cost
    about one pass over the batch each, so the count K vs P decides.  Runs
    ``net.forward(X)`` first, so the layer caches afterwards hold the point ``X``.
    See ``derivations/09-fisher.md`` sections 3 and 3b; tested in ``tests/test_fisher.py``.
    """
    return _jacobian_and_output(net, X)[0]


def _jacobian_and_output(net, X):
    """``(J, out)``: the Jacobian of :func:`jacobian` and the network output ``net.forward(X)``
    it was taken at (so callers that need both run one forward)."""
    check_network(net)
    out = net.forward(X)
    K = int(np.prod(out.shape[1:], dtype=np.int64))
    if K < net.num_params() and _has_reverse(net):
        return _reverse_at(net, out), out
    return _forward_at(net, out), out


def _has_reverse(net) -> bool:
    """True when every layer with parameters overrides ``backward_per_example``."""
    base = Layer.backward_per_example
    return all(not layer.param_names or type(layer).backward_per_example is not base
               for layer in net.layers)


def jacobian_forward(net, X) -> np.ndarray:
    """:func:`jacobian` by forward mode: P passes, ``J[:, :, p] = net.jvp({key: e_i})`` with
    a unit tangent ``e_i`` of one parameter array (all N examples in one batched pass).
    Shape (N, K, P).  Cost ``O(P * pass)``.  ``derivations/09-fisher.md`` section 3."""
    check_network(net)
    return _forward_at(net, net.forward(X))


def jacobian_reverse(net, X) -> np.ndarray:
    """:func:`jacobian` by reverse mode: for each output entry k one backward pass of the
    cotangent ``e_k`` (the same for every example) through ``Layer.backward_per_example``,
    whose per-example gradients ``J_n^T e_k`` are row k of every ``J_n``.  Shape (N, K, P).
    Cost ``O(K * pass)``.  NotImplementedError if a layer with parameters has no
    per-example backward.  ``derivations/09-fisher.md`` section 3b."""
    check_network(net)
    out = net.forward(X)
    if not _has_reverse(net):
        raise NotImplementedError("jacobian_reverse: a layer with parameters has no "
                                  "backward_per_example; use jacobian_forward")
    return _reverse_at(net, out)


def _forward_at(net, out) -> np.ndarray:
    N = out.shape[0]
    K = int(np.prod(out.shape[1:], dtype=np.int64))
    J = np.empty((N, K, net.num_params()))
    col = 0
    for key, param in net.named_params().items():
        tangent = np.zeros(param.shape)
        flat = tangent.reshape(-1)          # a view: writing flat[i] sets the unit tangent
        for i in range(param.size):
            flat[i] = 1.0
            J[:, :, col] = net.jvp({key: tangent}).reshape(N, K)
            flat[i] = 0.0
            col += 1
    return J


def _reverse_at(net, out) -> np.ndarray:
    N = out.shape[0]
    K = int(np.prod(out.shape[1:], dtype=np.int64))
    J = np.empty((N, K, net.num_params()))
    slices = net.param_slices()                       # key -> columns of J, flat order
    seed = np.zeros((N, K))
    for k in range(K):
        seed[:, k] = 1.0
        g = seed.reshape(out.shape)
        for i in range(len(net.layers) - 1, -1, -1):
            layer = net.layers[i]
            g, grads = layer.backward_per_example(g, need_input_grad=i > 0)
            for name in layer.param_names:
                J[:, k, slices[f"{layer.name}.{name}"]] = grads[name].reshape(N, -1)
        seed[:, k] = 0.0
    return J


def ggn_from_jacobian(J, M=None) -> np.ndarray:
    """``F = (1/N) sum_n J_n^T M_n J_n`` from J (N, K, P) and M (N, K, K); ``M=None`` means I.

    Computed as one (P, NK) @ (NK, P) product of the stacked Jacobian with the
    stacked ``M_n J_n``.  With ``M=None`` that product is ``A^T A`` of one array
    ``A = J.reshape(NK, P)``, which NumPy forms exactly symmetric (BLAS ``syrk`` and a
    mirrored triangle, or one summation order for both triangles without BLAS), so it is
    only divided by N, in place; otherwise the result is symmetrised (``(F + F^T)/2``) to
    remove rounding asymmetry.  Either way the result is what ``(F + F^T)/2`` of
    ``J^T M J / N`` gives, bit for bit.  Returns (P, P).  See ``derivations/09-fisher.md``
    section 1; tested in ``tests/test_fisher.py::test_identity_metric_gram_is_exactly_symmetric``.
    """
    J = as_float_array(J, "J", ndim=3)
    N, K, P = J.shape
    if M is None:
        A = J.reshape(N * K, P)
        F = A.T @ A
        return np.divide(F, N, out=F)
    M = as_float_array(M, "M", ndim=3)
    if M.shape != (N, K, K):
        raise ValueError(f"M: expected shape {(N, K, K)} to match J {J.shape}, got {M.shape}")
    F = J.reshape(N * K, P).T @ np.matmul(M, J).reshape(N * K, P) / N
    return 0.5 * (F + F.T)


def ggn_factor(net, X, loss, metric: str = "euclidean", Y=None) -> np.ndarray:
    """A factor ``B`` (N r, P) with ``F = B^T B``: rows ``R_n^T J_n / sqrt(N)`` stacked over n.

    ``R_n`` (K, r) is the metric square root ``M_n = R_n R_n^T`` from ``loss.metric_sqrt``
    (euclidean: ``R_n = I``, r = K; empirical: ``R_n = e_n``, r = 1).  Working with
    ``B`` instead of ``F`` keeps the singular values of ``B`` accurate to ``eps * s_max``
    rather than the eigenvalues of ``F`` to ``eps * s_max^2`` (used by
    :func:`senn_ref.score.eta_exact_details`).  See ``derivations/09-fisher.md`` section 1.
    """
    check_loss(loss)
    check_metric(metric, Y)
    J, out = _jacobian_and_output(net, X)
    N, K, P = J.shape
    if metric == "euclidean":
        return J.reshape(N * K, P) / np.sqrt(N)
    out = out.reshape(N, -1)
    R = np.asarray(loss.metric_sqrt(out, Y, metric))
    B = np.matmul(np.swapaxes(R, 1, 2), J)            # (N, r, P)
    return B.reshape(-1, P) / np.sqrt(N)


def exact(net, X, loss, metric: str = "euclidean", Y=None) -> np.ndarray:
    """Dense exact GGN ``F = (1/N) sum_n J_n^T M_n J_n``, shape (P, P), order of ``net.get_flat()``.

    Parameters
    ----------
    net    : ``senn_ref.network.Network``
    X      : inputs (N,) + net.in_shape
    loss   : a ``senn_ref.losses`` loss object (supplies ``metric(F, Y, metric)`` -> (N, K, K))
    metric : ``"euclidean"`` (M_n = I, the SENN default), ``"true"`` (the Fisher of the
             model's likelihood: I for MSE, diag(p) - p p^T for softmax cross-entropy;
             depends on the outputs only), or ``"empirical"`` (M_n = e_n e_n^T; needs ``Y``).
             The empirical metric is the wrong curvature for SENN: its score equals 1
             whenever the per-example gradients are linearly independent, whatever the
             loss (``derivations/09-fisher.md`` section 2).  It is offered for contrast.
    Y      : targets, keyword-only in spirit; required only for ``metric="empirical"``.

    See ``derivations/09-fisher.md``; tested in ``tests/test_fisher.py``.
    """
    check_loss(loss)
    check_metric(metric, Y)
    J, out = _jacobian_and_output(net, X)
    if metric == "euclidean":
        return ggn_from_jacobian(J)
    out = out.reshape(J.shape[0], -1)
    M = loss.metric(out, Y, metric)
    return ggn_from_jacobian(J, np.asarray(M).reshape(J.shape[0], J.shape[1], J.shape[1]))
