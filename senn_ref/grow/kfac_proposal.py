"""The K-FAC form of the width gain, for scoring and optimising many candidate units at once.

For a consuming layer with folded inputs ``a`` (N, T, n) (bias last), loss cotangents
``delta`` (N, T, m) (per example, not divided by N), metric factors ``A_c``, ``G`` and
"expectations" ``E[.] = (1/N) sum_n sum_t`` (11-kfac.md, 12-kfc-conv.md):

    V       = E[delta a^T]                       the consumer's mean-loss gradient (m, n)
    r       = delta - V A_c~^+ a                 the residual cotangent (N, T, m)
    D       = E[r h^T]                           (m, q) for candidate inputs h (N, T, q)
    A_h~    = E[h h^T] + s I,   s = sqrt(damping)
    Sigma_h = A_h~ - E[h a^T] A_c~^+ E[a h^T]    (Schur complement of the extended A~)
    lower bound  = tr(G~^+ D A_h~^+ D^T),   gain = tr(G~^+ D Sigma_h^+ D^T)

with the factored Tikhonov damping of :func:`senn_ref.kfac.kfac_eta` at ``pi = 1``:
``A_c~ = A_c + s I``, ``G~ = G + s I``.  ``gain`` equals ``kfac_eta(grown)[consumer] -
kfac_eta(net)[consumer]`` (same damping) when Sigma_h is invertible; ``damping = 0`` uses
pseudo-inverses (``sym_inverse`` for ``A_c``, ``G``; for the candidate blocks the eigenvalue
cut-offs of :func:`kfac_width_gain`: ``q eps`` relative for ``A_h~``, :data:`SCHUR_RCOND` for Sigma_h).
``derivations/16-kfac-proposal.md``; tests in ``tests/test_kfac_proposal.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, check_flag, check_scalar, check_shape
from ..kfac.columns import check_options, run_columns
from ..kfac.damping import factored_damping, sym_inverse, zero_tolerance
from ..kfac.factors import folded_inputs, input_factor
from .candidate_path import CandidatePath
from .structure import hidden_path

#: Sigma_h eigenvalues at or below this fraction of A_h~'s largest count as zero.  Sigma_h is
#: formed as a Gram matrix of h_perp (no cancellation); at damping 0 WidthProposals projects with
#: an orthonormal basis of the consumer inputs, so h_perp is accurate to about eps ||h|| whatever
#: A_c's condition, and Sigma_h to about eps ||A_h~||, as A_h~ itself (derivations/16 section 3)
SCHUR_RCOND = 1e-14


@dataclass
class ActivationScore:
    """Scores of C candidates given by their consumer inputs: ``lower_bound`` (C,), ``gain`` (C,),
    ``grad_lower_bound`` and ``grad_gain`` (C, N, T, q) = dS/dH (None unless asked for)."""
    lower_bound: np.ndarray
    gain: np.ndarray
    grad_lower_bound: np.ndarray | None = None
    grad_gain: np.ndarray | None = None


@dataclass
class WidthScore:
    """Scores of C candidates (k units each): ``lower_bound`` (C,), ``gain`` (C,) (exact K-FAC
    gain) and, with ``grad=True``, ``grad_W``, ``grad_b``, ``grad_act`` of the lower bound
    (shaped like the candidates' ``W``, ``b``, ``act``)."""
    lower_bound: np.ndarray
    gain: np.ndarray
    grad_W: np.ndarray | None = None
    grad_b: np.ndarray | None = None
    grad_act: dict | None = None


def _psd_pinv(M: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Batched pseudo-inverse of symmetric ``M`` (C, q, q): eigenvalues ``<= cut`` (C,) -> 0."""
    lam, U = np.linalg.eigh(0.5 * (M + np.swapaxes(M, 1, 2)))
    keep = lam > cut[:, None]
    inv = np.divide(1.0, lam, out=np.zeros_like(lam), where=keep)
    return (U * inv[:, None, :]) @ np.swapaxes(U, 1, 2)


def kfac_width_gain(H, R, G_inv, a, A_inv, shift: float = 0.0, grad: bool = False) -> ActivationScore:
    """Lower bound and K-FAC gain of C candidates from their consumer inputs ``H``.

    H (C, N, T, q) candidate inputs; R (N, T, m) residual cotangents ``r``; G_inv (m, m) the
    (damped pseudo-)inverse ``G~^+``; a (N, T, n) the consumer's folded inputs; A_inv (n, n)
    ``A_c~^+``; ``shift = sqrt(damping)`` added to ``A_h`` (module docstring, N = H.shape[1]):

        D^T = H^T R / N   (C, q, m),   A_h~ = H^T H / N + shift I,   B = H^T a / N  (C, q, n)
        lower_bound = tr(A_h~^+ D^T G~^+ D),   gain = tr(Sigma_h^+ D^T G~^+ D),
        Sigma_h = A_h~ - B A_inv B^T.

    With ``grad``: ``dLB/dh_{n,t} = (2/N) A_h~^+ D^T G~^+ (r_{n,t} - D A_h~^+ h_{n,t})`` and
    ``dGain/dh_{n,t} = (2/N) Sigma_h^+ D^T G~^+ (r_{n,t} - D Sigma_h^+ (h_{n,t} - B A_inv a_{n,t}))``.
    Cost per candidate O(N T q (m + n) + q^3 + q m^2 + q n^2), nothing depends on other layers.
    A_h~ eigenvalues <= q eps max count as zero; Sigma_h's <= SCHUR_RCOND max(A_h~).  Sigma_h is
    formed as ``E[h_perp h_perp^T] + shift (I + X^T X)``, ``X = A_inv B^T``; at shift 0 pass an
    orthonormal ``a`` (``E[a a^T] = I``, ``A_inv = I``, as :class:`WidthProposals` does) so that
    ``h_perp`` does not inherit A_c's condition number.
    ``derivations/16-kfac-proposal.md`` sections 2-4; tests
    ``tests/test_kfac_proposal.py::test_activation_gradients_match_finite_differences``.
    """
    H = as_float_array(H, "H (candidate inputs)", ndim=4)
    C, N, T, q = H.shape
    R = as_float_array(R, "R (residual cotangents)", ndim=3)
    check_shape(R, (N, T, None), "R (residual cotangents)")
    a = as_float_array(a, "a (consumer inputs)", ndim=3)
    check_shape(a, (N, T, None), "a (consumer inputs)")
    G_inv = as_float_array(G_inv, "G_inv", ndim=2)
    check_shape(G_inv, (R.shape[2], R.shape[2]), "G_inv")
    A_inv = as_float_array(A_inv, "A_inv", ndim=2)
    check_shape(A_inv, (a.shape[2], a.shape[2]), "A_inv")
    check_flag(grad, "grad")
    shift = check_scalar(shift, "shift", minimum=0.0)
    return _width_scores(H, R, G_inv, a, A_inv, shift, grad_lower_bound=grad, gain=True, grad_gain=grad)


def _psd_pinv_top(M: np.ndarray, rel: float, top: np.ndarray | None = None):
    """``(_psd_pinv(M, rel |top|), top)`` with ``top`` (C,) the largest eigenvalue of ``M``
    (C, q, q) unless given.  For ``q = 1`` the same numbers without LAPACK: the eigenvalue of a
    1 x 1 matrix is its entry and its eigenvector +-1, so the result is bit-identical."""
    if M.shape[1] == 1:
        m = M[:, 0, 0]
        top = m if top is None else top
        keep = m > rel * np.abs(top)
        inv = np.divide(1.0, m, out=np.zeros_like(m), where=keep)
        return inv[:, None, None], top
    if top is None:
        top = np.linalg.eigvalsh(0.5 * (M + np.swapaxes(M, 1, 2)))[:, -1]
    return _psd_pinv(M, rel * np.abs(top)), top


def _width_scores(H, R, G_inv, a, A_inv, shift, *, grad_lower_bound: bool, gain: bool,
                  grad_gain: bool) -> ActivationScore:
    """The arithmetic of :func:`kfac_width_gain` on validated arrays, computing only what is
    asked for: the lower bound always, its gradient with ``grad_lower_bound``, the gain (the
    Schur complement Sigma_h and its pseudo-inverse) with ``gain``, the gain's gradient with
    ``grad_gain`` (needs ``gain``).  What is computed is computed exactly as before, so every
    returned number is the same; the proposal search asks for the lower bound and its gradient
    only (derivations/21-trainer.md section 5)."""
    C, N, T, q = H.shape
    Hf = H.reshape(C, N * T, q)
    Ht = np.swapaxes(Hf, 1, 2)
    Rf, af = R.reshape(N * T, -1), a.reshape(N * T, -1)
    Dt = np.matmul(Ht, Rf) / N                                          # (C, q, m)
    Ah = np.matmul(Ht, Hf) / N + shift * np.eye(q)
    Ah_inv, top = _psd_pinv_top(Ah, zero_tolerance(q))
    GD = Dt @ G_inv                                                        # (C, q, m) = D^T G~^+
    Q = GD @ np.swapaxes(Dt, 1, 2)                                         # D^T G~^+ D (C, q, q)
    out = ActivationScore(np.einsum("cij,cji->c", Ah_inv, Q), None)
    if grad_lower_bound:
        M = Ah_inv @ GD                                                    # (C, q, m)
        P = Ah_inv @ Q @ Ah_inv
        out.grad_lower_bound = ((2.0 / N) * (Rf @ np.swapaxes(M, 1, 2) - Hf @ P)).reshape(H.shape)
    if not gain:
        return out
    B = np.matmul(Ht, af) / N                                              # (C, q, n)
    X = A_inv @ np.swapaxes(B, 1, 2)                                     # (C, n, q) = A_c~^+ E[a h^T]
    h_perp = Hf - af @ X                                                 # (C, NT, q)
    # Sigma_h = A_h~ - B A_c~^+ B^T = E[h_perp h_perp^T] + s (I + X^T X) (exact for an exact
    # A_inv, see derivations/16 section 3): a sum of PSD Gram terms, without the cancellation
    # of the subtraction, which lost the small eigenvalues of nearly collinear candidate inputs
    Sigma = np.matmul(np.swapaxes(h_perp, 1, 2), h_perp) / N + shift * (np.eye(q) + np.swapaxes(X, 1, 2) @ X)
    S_inv, _ = _psd_pinv_top(Sigma, SCHUR_RCOND, top)
    out.gain = np.einsum("cij,cji->c", S_inv, Q)
    if grad_gain:
        Mg = S_inv @ GD
        Pg = S_inv @ Q @ S_inv
        out.grad_gain = ((2.0 / N) * (Rf @ np.swapaxes(Mg, 1, 2) - h_perp @ Pg)).reshape(H.shape)
    return out


class _ConsumerStats:
    """run_columns accumulator: the consumer's ``G = (1/N) sum_n (1/T) sum_{t,r} w_r d d^T``
    (the same sums as ``kfac.factors.KronAccumulator``, for one layer)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def start(self, net, N: int) -> None:
        self.layer, self.N, self.G = net.layers[self.index], N, None

    def add(self, grads, weight: float) -> None:
        d = np.asarray(self.layer.curvature_outgrads(grads.output_grads[self.index]), dtype=np.float64)
        flat = d.reshape(-1, d.shape[2])
        term = (weight / d.shape[1]) * (flat.T @ flat)
        self.G = term if self.G is None else self.G + term

    def finish(self) -> None:
        self.G = 0.5 * (self.G + self.G.T) / self.N


class WidthProposals:
    """K-FAC width proposals for the hidden layer produced by ``net.layers[layer]``.

    ``WidthProposals(net, X, Y, loss, layer, damping=0.0, metric="euclidean")`` computes once
    (module docstring): the consumer's folded inputs ``a`` (N, T, n), loss cotangents
    ``delta`` (N, T, m), ``G`` from the exact metric columns (as ``kfac_factors(mode="exact")``),
    ``A_c``, the damped (pseudo-)inverses ``A_inv``, ``G_inv``, the residual ``R`` (N, T, m),
    and ``eta_layer = tr(G~^+ V A_c~^+ V^T)`` (the consumer's entry of ``kfac_eta`` with
    ``damping_mode="factored"``, ``pi=1``).  X (N,) + in_shape; Y the loss's targets;
    ``damping`` >= 0; ``metric`` "euclidean" | "true" | "empirical".  The network is not changed
    (its forward caches are refreshed).  ``derivations/16-kfac-proposal.md`` sections 1-6.
    """

    def __init__(self, net, X, Y, loss, layer, damping=0.0, metric: str = "euclidean") -> None:
        path = hidden_path(net, layer)
        delta = check_scalar(damping, "damping", minimum=0.0)
        check_options(metric, "exact", 1, None)
        self.path, self.damping, self.shift = path, delta, float(np.sqrt(delta))
        stats = _ConsumerStats(path.consumer)
        record = run_columns(net, X, Y, loss, metric, "exact", 1, None, [stats])
        cons = net.layers[path.consumer]
        grads = net.backward(record.E.reshape((record.N,) + record.out_shape))
        self.delta = np.asarray(cons.curvature_outgrads(grads.output_grads[path.consumer]), dtype=np.float64)
        self.a = folded_inputs(cons)
        self.N = record.N
        self.A_c, self.G = input_factor(cons, self.a), stats.G
        A_d, G_d = factored_damping(self.A_c, self.G, delta)
        self.A_inv = sym_inverse(A_d, "A (consumer, damped)")
        self.G_inv = sym_inverse(G_d, "G (consumer, damped)")
        self.V = np.einsum("ntm,ntj->mj", self.delta, self.a, optimize=True) / self.N
        # what the candidate scores project on: at damping 0 an orthonormal basis of the consumer
        # inputs' span (columns over the N T rows), scaled so that its A is I: the projection
        # a A_c^+ a^T / N is then computed without A_c's condition number (derivations/16 section 3)
        self._a_score, self._A_inv_score = self.a, self.A_inv
        if delta == 0.0:
            af = self.a.reshape(-1, self.a.shape[2])
            U, sv, _ = np.linalg.svd(af, full_matrices=False)
            keep = sv ** 2 > zero_tolerance(af.shape[1], sv[0] ** 2)   # sym_inverse's cut on A_c = a^T a / N
            Q = U[:, keep] * np.sqrt(self.N)
            self._a_score = Q.reshape(self.a.shape[:2] + (Q.shape[1],))
            self._A_inv_score = np.eye(Q.shape[1])
        self.R = self.delta - self._a_score @ (self._A_inv_score @ (
            np.einsum("ntm,ntj->mj", self.delta, self._a_score, optimize=True) / self.N).T)
        self.eta_layer = float(np.sum(self.V * (self.G_inv @ self.V @ self.A_inv)))
        self.candidates = CandidatePath(net, path)

    @property
    def act_names(self) -> tuple:
        """Per-unit activation parameter names of the candidates (("v", "c", "l") or ());
        16-kfac-proposal.md section 7."""
        return self.candidates.act_names

    def random_candidates(self, n, rng, k=1):
        """``n`` candidates of ``k`` units as the released code draws them: ``W`` (n, k) + w_shape
        LeCun-normal ``N(0, 1/fan_in)`` (fan_in = in or Cin kh kw), ``b`` (n, k) ``N(0, 1)``, each
        activation parameter (n, k) ``N(0, 1)``; drawn in that order.  derivations/16 section 7."""
        return self.candidates.random(n, rng, k)

    def _check_candidates(self, W, b, act):
        return self.candidates.check(W, b, act)

    def activations(self, W, b, act) -> np.ndarray:
        """The candidates' consumer inputs ``H`` (C, N, T, k q) from ``W`` (C, k) + w_shape, ``b`` (C, k),
        ``act`` name -> (C, k) (candidate_path.py); ``derivations/16-kfac-proposal.md`` section 6."""
        W, b, act = self._check_candidates(W, b, act)
        return self.candidates.forward(W, b, act)[0]

    def score_activations(self, H, grad: bool = False) -> ActivationScore:
        """:func:`kfac_width_gain` of consumer inputs ``H`` (C, N, T, q) with this context's ``R``,
        ``G_inv``, ``a``, ``A_inv`` and shift sqrt(damping): lower bound and gain (C,), with ``grad``
        dS/dH (C, N, T, q).  The depth code may call it with its own H.
        ``derivations/16-kfac-proposal.md`` sections 3-4; ``tests/test_kfac_proposal.py::test_equality_and_duplicates``."""
        H = as_float_array(H, "H (candidate inputs)", ndim=4)
        check_shape(H, (None, self.N, self.candidates.T, None), "H (candidate inputs)")
        return kfac_width_gain(H, self.R, self.G_inv, self._a_score, self._A_inv_score, self.shift, grad)

    def score(self, W, b, act, grad: bool = False, *, gain: bool = True) -> WidthScore:
        """Lower bound (C,) and K-FAC gain (C,) of C candidates ``W`` (C, k) + w_shape, ``b`` (C, k),
        ``act`` name -> (C, k); with ``grad``, the lower bound's gradients ``grad_W``, ``grad_b``,
        ``grad_act`` (same shapes), chained by :meth:`CandidatePath.backward` from
        ``dLB/dH`` (:func:`kfac_width_gain`).  ``gain=False`` skips the K-FAC gain (``gain`` is
        then None; the lower bound and its gradients are the same numbers): the proposal search
        follows the lower bound only.  The gain's own gradient is never formed here.
        ``derivations/16-kfac-proposal.md`` sections 2-5;
        ``tests/test_kfac_proposal.py::test_candidate_gradients_match_finite_differences``."""
        W, b, act = self._check_candidates(W, b, act)
        check_flag(grad, "grad")
        check_flag(gain, "gain")
        return self.score_unchecked(W, b, act, bool(grad), bool(gain))

    def score_unchecked(self, W, b, act, grad: bool, gain: bool) -> WidthScore:
        """:meth:`score` without its argument checks, for a caller that passes arrays it built
        itself (float64, C-contiguous, the shapes of :meth:`random_candidates`, finite): the
        proposal search, which calls it on every step (``grow/proposals.py``).  Same numbers.
        ``derivations/16-kfac-proposal.md`` section 5; ``tests/test_kfac_proposal.py``."""
        H, tape = self.candidates.forward(W, b, act)
        sc = _width_scores(H, self.R, self.G_inv, self._a_score, self._A_inv_score, self.shift,
                           grad_lower_bound=bool(grad), gain=bool(gain), grad_gain=False)
        out = WidthScore(sc.lower_bound, sc.gain)
        if grad:
            out.grad_W, out.grad_b, out.grad_act = self.candidates.backward(sc.grad_lower_bound, tape, W)
        return out
