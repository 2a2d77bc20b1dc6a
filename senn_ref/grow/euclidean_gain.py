"""The Euclidean (GradMax-like) width gain: the squared gradient norm of new zero outgoing weights.

A baseline for the natural score (issue 8): the same proposals, search and criterion, but every
score measured in the Euclidean norm of the parameters instead of the natural one.

For the hidden layer produced by ``net.layers[layer]`` let ``d_{n,t}`` (m,) be the consumer's
pre-activation cotangent of the mean loss at example n, location t (``(1/N) delta_{n,t}`` with
``delta`` the cotangent of the per-example loss; T = 1 for a Dense consumer) and ``h_{n,t}`` (q,)
a candidate's new consumer input coordinates (``CandidatePath``; q = k S or k kh' kw').  The new
units' outgoing weights ``Omega`` (m, q) are zero, so (14-growth-operations.md section 3)

    g     = dL/dOmega = sum_{n,t} d_{n,t} h_{n,t}^T = (1/N) sum_{n,t} delta_{n,t} h_{n,t}^T   (m, q)
    gain  Delta_E = ||g||_F^2 = sum_j ||g_j||^2            (g_j the columns of unit j)
    dDelta_E/dh_{n,t} = 2 g^T d_{n,t}                                                        (q,)

and the incoming parameters' gradient follows by ``CandidatePath.backward``.  The new units'
incoming and activation parameters have zero gradient (zero outgoing weights), so Delta_E is
the whole squared gradient the addition contributes: ``||grad L(grown)||^2 = ||grad L||^2 + Delta_E``.

**Norm constraint.**  Delta_E grows with the scale of h, hence of the incoming weights, without
bound (a SiLU unit; a rational or any unit through its bias), so the incoming parameters are
constrained as in GradMax: every unit's incoming vector ``u_j = (W_j, b_j)`` (kernel entries and
bias, the bias being the weight of the folded constant input) is used at the fixed radius
``RADIUS = sqrt(2)``, the root-mean-square norm of the released code's draw (LeCun-normal kernel:
``E||W_j||^2 = 1``; bias N(0, 1): ``E b_j^2 = 1``).  The score is evaluated at the projection
``psi_j = RADIUS u_j / ||u_j||``; its gradient with respect to ``u_j`` is

    dS/du_j = (RADIUS / ||u_j||) (I - uhat_j uhat_j^T) dS/dpsi_j,    uhat_j = u_j / ||u_j||,

tangent to the sphere, so every search method (Adam ascent with :meth:`project` after each step,
MALA without a projection, random) optimises the constrained score.  Rational activation
parameters (v, c, l) are free: the rational unit is invariant to their scale (05-rational.md).

**Network scores.**  The Euclidean analogue of eta is ``E = ||grad L||^2`` of the existing
parameters: the whole network's (``eta_c = "network"``) or the consuming layer's W and b
(``"layer"``), :func:`euclidean_eta`.  Weight decay is not part of L (as for the natural score).
``derivations/23-euclidean-gain.md``; tests ``tests/test_euclidean_gain.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_flag, check_network, check_scalar, check_shape
from ..losses.base import check_loss
from .candidate_path import CandidatePath
from .kfac_proposal import WidthScore
from .structure import hidden_path

#: the norm of every new unit's incoming vector (W_j, b_j): sqrt(E||W_j||^2 + E b_j^2) = sqrt(1 + 1)
#: for the released code's draw (LeCun-normal kernel, N(0, 1) bias); derivations/23 section 3
RADIUS = float(np.sqrt(2.0))


def euclidean_eta(net, X, Y, loss) -> tuple[float, dict]:
    """``(E, {layer name: E_l})``: the squared norm ``||grad L||^2`` of the mean loss's gradient
    over all parameters, and per layer over that layer's parameters (layers with parameters only).

    X (N,) + in_shape, Y the loss's targets.  The Euclidean analogue of ``kfac_eta``'s
    ``(eta, per layer)``; the network's caches hold this batch afterwards.
    ``derivations/23-euclidean-gain.md`` section 4; ``tests/test_euclidean_gain.py``."""
    check_network(net)
    check_loss(loss)
    return _squared_norms(net, net.loss_and_grad(X, Y, loss)[1])


def _squared_norms(net, grads) -> tuple[float, dict]:
    """:func:`euclidean_eta`'s ``(E, per layer)`` from the gradients ``grads`` of ``net``."""
    per = {}
    for la in net.layers:
        if la.param_names:
            per[la.name] = float(sum(np.sum(grads.grads[f"{la.name}.{p}"] ** 2) for p in la.param_names))
    flat = grads.flat_grad()
    return float(flat @ flat), per


def project_units(W, b, radius: float = RADIUS):
    """``(W', b')`` with every unit's incoming vector ``(W[c, j], b[c, j])`` scaled to norm ``radius``.

    W (C, k) + w_shape, b (C, k), radius > 0.  A unit with an all-zero vector gets NaN (no
    direction; the search scores it -inf).  ``derivations/23-euclidean-gain.md`` section 3."""
    b = as_float_array(b, "b (candidate biases)", ndim=2)
    W = as_float_array(W, "W (candidate kernels)")
    if W.ndim < 3:
        raise ValueError(f"W (candidate kernels): expected (C, k) + kernel shape, got shape {W.shape}")
    check_shape(W, b.shape + (None,) * (W.ndim - 2), "W (candidate kernels)")
    return _project(W, b, check_scalar(radius, "radius", minimum=0.0, strict=True))


def _project(W, b, radius):
    C, k = b.shape
    Wf = W.reshape(C, k, -1)
    norm = np.sqrt(np.sum(Wf * Wf, axis=2) + b * b)                  # (C, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = radius / norm
    scale = np.where(norm > 0, scale, np.nan)
    return (Wf * scale[:, :, None]).reshape(W.shape), b * scale


class EuclideanWidthProposals:
    """Euclidean width proposals for the hidden layer produced by ``net.layers[layer]``; the
    interface of :class:`~senn_ref.grow.kfac_proposal.WidthProposals` (``random_candidates``,
    ``score``, ``eta_layer``, ``act_names``) so that ``best_width_proposal`` can use either.

    ``EuclideanWidthProposals(net, X, Y, loss, layer)`` computes once (module docstring): the
    consumer's mean-loss cotangents ``d`` (N, T, m), ``E_network = ||grad L||^2`` and
    ``eta_layer`` = the consumer's ``||grad_W L||^2 + ||grad_b L||^2``.  X (N,) + in_shape,
    Y the loss's targets.  The network is not changed (its forward caches are refreshed).
    ``derivations/23-euclidean-gain.md`` sections 2-4.
    """

    def __init__(self, net, X, Y, loss, layer) -> None:
        path = hidden_path(net, layer)
        check_loss(loss)
        _, grads = net.loss_and_grad(X, Y, loss)
        cons = net.layers[path.consumer]
        self.path = path
        self.d = np.asarray(cons.curvature_outgrads(grads.output_grads[path.consumer]), dtype=np.float64)
        self.N = self.d.shape[0]
        self.E_network, per_layer = _squared_norms(net, grads)
        self.eta_layer = per_layer[cons.name]
        self.candidates = CandidatePath(net, path)
        self.radius = RADIUS

    @property
    def act_names(self) -> tuple:
        """Per-unit activation parameter names of the candidates (("v", "c", "l") or ())."""
        return self.candidates.act_names

    def random_candidates(self, n, rng, k=1):
        """``n`` candidates of ``k`` units: the released code's draw (``CandidatePath.random``, the
        same numbers as ``WidthProposals.random_candidates`` for the same ``rng``) with every unit's
        ``(W_j, b_j)`` projected to norm :data:`RADIUS`.  Shapes: W (n, k) + w_shape, b (n, k),
        act name -> (n, k).  ``derivations/23-euclidean-gain.md`` section 3."""
        W, b, act = self.candidates.random(n, rng, k)
        W, b = _project(W, b, self.radius)
        return W, b, act

    def project(self, params: dict) -> dict:
        """The search's projection: ``params`` (``"W"``, ``"b"``, ``"act.*"`` -> (C, ...)) with
        ``W``, ``b`` by :func:`project_units`; the rest unchanged."""
        W, b = _project(params["W"], params["b"], self.radius)
        return {**params, "W": W, "b": b}

    def outgoing_gradient(self, H) -> np.ndarray:
        """``g = sum_{n,t} d_{n,t} h_{n,t}^T`` (C, m, q) of consumer inputs ``H`` (C, N, T, q): the
        mean loss's gradient with respect to the new zero outgoing weights, in the consumer's
        curvature layout.  ``derivations/23-euclidean-gain.md`` section 2."""
        H = as_float_array(H, "H (candidate inputs)", ndim=4)
        check_shape(H, (None, self.N, self.d.shape[1], None), "H (candidate inputs)")
        return self._outgoing(H)

    def _outgoing(self, H):
        C, q = H.shape[0], H.shape[3]
        return self.d.reshape(-1, self.d.shape[2]).T @ H.reshape(C, -1, q)

    def score(self, W, b, act, grad: bool = False, *, gain: bool = True) -> WidthScore:
        """Delta_E (C,) of C candidates ``W`` (C, k) + w_shape, ``b`` (C, k), ``act`` name -> (C, k),
        evaluated at their projection (:func:`project_units`), as ``WidthScore.lower_bound`` and
        ``.gain`` (the same exact number: the Euclidean gain has no bound); with ``grad``,
        ``grad_W``, ``grad_b`` (the tangential gradient of the module docstring) and ``grad_act``.
        ``gain`` is accepted for interface compatibility and changes nothing.
        ``derivations/23-euclidean-gain.md`` sections 2-3;
        ``tests/test_euclidean_gain.py::test_gradients_match_finite_differences``."""
        W, b, act = self.candidates.check(W, b, act)
        check_flag(grad, "grad")
        check_flag(gain, "gain")
        Wp, bp = _project(W, b, self.radius)
        H, tape = self.candidates.forward(Wp, bp, act)
        g = self._outgoing(H)                                              # (C, m, q)
        value = np.einsum("cmq,cmq->c", g, g)
        out = WidthScore(value, value.copy())
        if not grad:
            return out
        dH = (2.0 * (self.d.reshape(-1, self.d.shape[2]) @ g)).reshape(H.shape)    # (C, N, T, q)
        dWp, dbp, out.grad_act = self.candidates.backward(dH, tape, Wp)
        out.grad_W, out.grad_b = _tangent_grad(W, b, dWp, dbp, self.radius)
        return out


def _tangent_grad(W, b, dWp, dbp, radius):
    """Chain ``dS/dpsi`` through ``psi = radius u / ||u||`` per unit: ``(radius/||u||) (I - uhat
    uhat^T) dS/dpsi`` for ``u = (W_j, b_j)``; shapes as W, b."""
    C, k = b.shape
    u = np.concatenate([W.reshape(C, k, -1), b[:, :, None]], axis=2)
    gp = np.concatenate([dWp.reshape(C, k, -1), dbp[:, :, None]], axis=2)
    norm = np.sqrt(np.sum(u * u, axis=2, keepdims=True))
    uhat = u / norm
    gu = (radius / norm) * (gp - uhat * np.sum(uhat * gp, axis=2, keepdims=True))
    return gu[:, :, :-1].reshape(W.shape), gu[:, :, -1]
