"""Lower-bound scores of a layer inserted at its identity point (senn-math section 7 [ours]).

:class:`DepthProposals` scores candidates ``(B, s)`` of
:func:`senn_ref.grow.insert_layer.insert_layer` by the lower bound

    Delta eta' = r_p^T (F_pp + delta I)^+ r_p,     p = the inserted rationals' (v, c),

with ``F_pp`` the exact (2k x 2k) GGN block of those parameters (all units together, from the
per-unit closed forms of :mod:`senn_ref.grow.depth_rows`) and ``r_p`` the residual against the
whole original network's exact damped natural gradient; it never exceeds the exact gain of
``(v, c)`` (``derivations/17-depth.md`` section 6), and for ``delta = 0`` that of all inserted
parameters.  Optionally (``condition="consumer"``) the curvature is the Schur complement given the
consumer's own parameters, a tighter bound.  Its gradient in ``B`` and ``s`` is analytic
(section 7).  Tests: ``tests/test_depth.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, check_flag, check_scalar, check_shape, check_str_option
from ..fisher.exact import check_metric, ggn_factor
from .depth_rows import ConsumerSide, consumer_side, input_cotangent, psi, psi_prime
from .insert_layer import COND_LIMIT, consumer_at, consumer_width, depth_supported  # noqa: F401
from .residual import apply_w, kept_svd


#: natural-gradient solvers for the residual of DepthProposals ("auto": "exact" up to
#: EXACT_MAX_PARAMS parameters, else "cg"; the dense GGN costs P forward-mode passes)
NATURAL = ("auto", "exact", "cg")
EXACT_MAX_PARAMS = 500
#: what the curvature of the bound is conditioned on: nothing (F_pp) or the consumer's W, b (S_c)
CONDITIONS = ("none", "consumer")
#: candidates are scored in chunks holding about this many entries of beta = B^-T q
CHUNK_ENTRIES = 2_000_000


@dataclass
class DepthScore:
    """Scores of ``C`` candidates: ``lower_bound`` (C,) (``-inf`` where ``cond(B) > COND_LIMIT``),
    ``residual`` (C, 2, k) ``r_p`` (v row, c row), and with ``grad=True`` the analytic
    ``grad_B`` (C, k, k) and ``grad_s`` (C, k) (zero for refused candidates and for ``s``
    before a padded conv).  17-depth.md sections 6-7."""
    lower_bound: np.ndarray
    residual: np.ndarray
    grad_B: np.ndarray | None = None
    grad_s: np.ndarray | None = None


class DepthProposals:
    """Lower-bound scores of layers inserted before ``net.layers[position]`` (module docstring).

    Parameters: ``net``; X (N,) + in_shape; Y targets; ``loss``; ``position`` a Dense/Conv2D
    index; ``damping`` delta >= 0; ``metric``; ``natural`` "exact" (dense GGN, tiny networks),
    "cg" (matrix-free CG; with damping 0 it may stop early on a singular F and warn) or "auto"
    ("exact" up to EXACT_MAX_PARAMS parameters) for the original network's natural gradient ``u``;
    ``condition`` "none" (``F_pp``, the specification's bound) or "consumer" (the tighter bound
    ``r_p^T S_c^+ r_p`` conditioned on the consumer's own W, b; one Jacobian of the consumer and
    the layers after it at setup, ``O(N R |c| k)`` more per candidate; section 6).

    Attributes: ``eta`` (the network's exact score ``g^T u``), ``eta_layer`` (the consumer's
    K-FAC score, kfac_eta's per-layer value), ``side`` (:class:`ConsumerSide`), ``rho`` (N, k, T)
    the residual's cotangent at the consumer's input.  Construction costs one natural-gradient
    solve, R + 2 backward passes and the K-FAC score; :meth:`score` never touches the network.
    17-depth.md sections 5-7; ``tests/test_depth.py``.
    """

    def __init__(self, net, X, Y, loss, position, damping=0.0, metric: str = "euclidean",
                 natural: str = "auto", condition: str = "none") -> None:
        from ..kfac import kfac_eta
        from ..natural_gradient import natural_gradient
        from ..score import eta_exact_details
        check_metric(metric, Y)
        self.delta = check_scalar(damping, "damping", minimum=0.0)
        for value, allowed, name in ((natural, NATURAL, "natural"), (condition, CONDITIONS, "condition")):
            check_str_option(value, allowed, name)
        i, layer = consumer_at(net, position)
        self.position, self.k = i, consumer_width(layer)
        if natural == "auto":
            natural = "exact" if net.num_params() <= EXACT_MAX_PARAMS else "cg"
        self.natural = natural
        if natural == "exact":
            det = eta_exact_details(net, X, Y, loss, damping=self.delta, metric=metric)
            u, self.eta = det.u, float(det.eta)
        else:
            u, g, _, _ = natural_gradient(net, X, Y, loss, damping=self.delta, metric=metric)
            self.eta = float(g @ u)
        self.side = consumer_side(net, X, Y, loss, i, metric)
        out = net.forward(X)
        N = out.shape[0]
        flat = out.reshape(N, -1)
        E = np.asarray(loss.output_grad(flat, Y))
        Ju = net.jvp_flat(u).reshape(N, -1)
        M = np.asarray(loss.metric(flat, Y, metric))
        resid = E - np.einsum("nkl,nl->nk", M, Ju)                      # e_n - M_n J_n u
        self.rho = input_cotangent(net, i, resid.reshape(out.shape))
        k = self.k                                                      # unit-last copies for score()
        self._a = np.swapaxes(self.side.a, 1, 2).reshape(-1, k)        # (N T, k)
        self._q = np.swapaxes(self.side.q, 2, 3).reshape(-1, k)        # (N R T, k)
        self._rho = np.swapaxes(self.rho, 1, 2).reshape(-1, k)         # (N T, k)
        self.condition = condition
        self._Uc = self._sc = None
        if condition == "consumer":
            Bc = consumer_factor(net, X, Y, loss, i, metric, self.side)
            self._Uc, self._sc, _ = kept_svd(Bc)
        self.eta_layer = float(kfac_eta(net, X, Y, loss, damping=self.delta, metric=metric)[1][layer.name])

    def score(self, B, s, grad: bool = False) -> DepthScore:
        """Lower bounds of candidates ``B`` (C, k, k), ``s`` (C, k) (a float array each; ``s`` must
        be 0 before a zero-padded conv); see :class:`DepthScore`.  Vectorised over candidates:
        ``z = B a + s``, ``beta = B^-T q``, rows ``w``, ``x = (F + delta I)^+ r``, bound ``r . x``
        (F = F_pp or S_c - delta I).  ``derivations/17-depth.md`` sections 6-7;
        ``tests/test_depth.py::test_lower_bound_gradient_matches_finite_differences``."""
        k = self.k
        check_flag(grad, "grad")
        B = as_float_array(B, "B", ndim=3)
        check_shape(B, (None, k, k), "B")
        s = as_float_array(s, "s", ndim=2)
        check_shape(s, (B.shape[0], k), "s")
        if self.side.padded and np.any(s != 0):
            raise ValueError("s: must be 0 before a zero-padded Conv2D consumer (insert_layer refuses "
                             "a shift there)")
        C = B.shape[0]
        per = max(1, CHUNK_ENTRIES // max(1, self.side.q.size))
        parts = [self._score_chunk(B[j:j + per], s[j:j + per], grad) for j in range(0, C, per)]
        def cat(idx):
            return np.concatenate([p[idx] for p in parts])
        out = DepthScore(cat(0), cat(1))
        if grad:
            out.grad_B, out.grad_s = cat(2), cat(3)
            if self.side.padded:
                out.grad_s[...] = 0.0
        return out

    def _score_chunk(self, B, s, grad):
        """One chunk of candidates, in a unit-last layout so that every contraction over
        examples, columns or units is a (batched) matrix product."""
        delta, k, N = self.delta, self.k, self.side.N
        R, T = self.side.q.shape[1], self.side.q.shape[3]
        C = B.shape[0]
        sv = np.linalg.svd(B, compute_uv=False)
        ok = (sv[:, -1] > 0) & (sv[:, 0] <= COND_LIMIT * sv[:, -1])
        Bs = np.where(ok[:, None, None], B, np.eye(k))
        Binv = np.linalg.inv(Bs)
        z = (self._a @ np.swapaxes(Bs, 1, 2)).reshape(C, N, T, k) + s[:, None, None, :]
        beta = (self._q @ Binv).reshape(C, N, R, T, k)                  # B^-T q
        beps = (self._rho @ Binv).reshape(C, N, T, k)                   # B^-T rho
        ps = psi(z)                                                     # (C, N, T, k, 2)
        w = (beta[..., None] * ps[:, :, None]).sum(axis=3)              # (C, N, R, k, 2)
        r = (beps[..., None] * ps).sum(axis=(1, 2)).reshape(C, 2 * k) / N
        W2 = w.reshape(C, N * R, 2 * k)
        top = np.linalg.norm(W2, axis=(1, 2)) ** 2 / N                 # >= lambda_max(F_pp)
        H = self._omega(W2, 0.5)                                        # Omega^(1/2) W2 (or W2)
        F = np.swapaxes(H, 1, 2) @ H / N
        lam, V = np.linalg.eigh(0.5 * (F + np.swapaxes(F, 1, 2)))
        cut = 2 * k * np.finfo(np.float64).eps * top[:, None]
        keep = lam > cut if delta == 0 else np.ones(lam.shape, dtype=bool)
        denom = np.where(keep, np.maximum(lam, 0.0) + delta, 1.0)
        coef = np.where(keep, (np.swapaxes(V, 1, 2) @ r[..., None])[..., 0] / denom, 0.0)
        x = (V @ coef[..., None])[..., 0]                               # (F_pp + delta I)^+ r
        lb = np.where(ok, np.sum(r * x, axis=1), -np.inf)
        res = np.swapaxes(r.reshape(C, k, 2), 1, 2)
        if not grad:
            return lb, res
        s_nr = self._omega(W2 @ x[..., None], 1.0).reshape(C, N, 1, R)  # Omega (w_{n,r} . x)
        xk = x.reshape(C, 1, 1, k, 2)
        phix = (ps * xk).sum(axis=-1)                                   # (C, N, T, k)
        phixp = (psi_prime(z) * xk).sum(axis=-1)
        eta = beps - (s_nr @ beta.reshape(C, N, R, T * k)).reshape(C, N, T, k)   # residual after the step
        Gz = ((2.0 / N) * eta * phixp).reshape(C, N * T, k)
        P = (2.0 / N) * np.swapaxes(eta.reshape(C, N * T, k), 1, 2) @ phix.reshape(C, N * T, k)
        gB = np.swapaxes(Gz, 1, 2) @ self._a - P @ np.swapaxes(Binv, 1, 2)
        gs = Gz.sum(axis=1)
        gB[~ok], gs[~ok] = 0.0, 0.0
        return lb, res, gB, gs

    def _omega(self, M, power):
        """``Omega^power M`` for ``M`` (C, N R, m): ``Omega = delta (B_c B_c^T + delta I)^-1`` (the
        projector off the consumer's columns for delta = 0); ``M`` itself without conditioning."""
        if self._Uc is None:
            return M
        C, rows, m = M.shape
        flat = np.moveaxis(M, 0, 1).reshape(rows, C * m)
        return np.moveaxis(apply_w(self._Uc, self._sc, self.delta, flat, power).reshape(rows, C, m), 1, 0)


def consumer_factor(net, X, Y, loss, position: int, metric: str, side: ConsumerSide) -> np.ndarray:
    """GGN-factor columns (N R, |c|) of the consumer's own ``W, b`` (rows ``R_n^T J_n / sqrt(N)``,
    ordered like ``new_rows``), from the Jacobian of the sub-network ``net.layers[position:]``
    at the consumer's input ``side.a``.  17-depth.md section 6."""
    clone = net.copy()
    layers = clone.layers[position:]
    for layer in layers:
        layer.name = None
    from ..network import Network
    sub = Network(layers)
    a = side.a.reshape((side.N,) + tuple(sub.in_shape))
    ncols = sub.layers[0].num_params()
    return ggn_factor(sub, a, loss, metric=metric, Y=Y)[:, :ncols]
