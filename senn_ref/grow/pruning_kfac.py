"""Per-unit pruning scores and OBS step under the consumer's K-FAC block.

The consumer's folded weights ``Wf = [W | b]`` (out, in+1) (Conv2D: ``W.reshape(O, C kh kw)``)
have the block ``F ~ G (x) A`` on ``vec(Wf)`` row-major.  With factored Tikhonov damping
``F_d = G_d (x) A_d``, ``G_d = G + sqrt(delta)/pi I``, ``A_d = A + pi sqrt(delta) I`` (the
damping of ``kfac_eta``'s default), a unit owns a set ``C`` of input coordinates (one column,
``S`` columns behind a Flatten, or ``kh kw`` patch coordinates of a Conv2D consumer) and its
block is *all rows* times ``C``.  Every quantity of ``pruning.py`` factorises (``R`` = the
other coordinates, bias included; ``+`` pseudo-inverses; 18-pruning.md section 5):

    T   = A_RR^+ A_RC                    S_A = A_CC - A_CR T            (|C| x |C|)
    P_c = G_d (x) S_A                    Res = V_C - V_R T              (out x |C|)
    U_C = G_d^+ Res S_A^+                (= the C columns of G_d^-1 V A_d^-1 for delta > 0)
    freeze   = <Res, U_C>                removal  = <E, G_d E S_A>,  E = W_C - U_C
    saliency = <W_C, G_d W_C S_A>        OBS      D_C = -W_C,  D_R = W_C T^T

(``A`` here is ``A_d``.)  ``G`` cancels from the OBS step: it is the least-squares
reconstruction of the removed inputs from the kept ones (and the bias).  ``T`` and ``S_A`` are
formed on a square-root factor of ``A`` (:func:`_split`), so that a Schur complement that is 0 in
exact arithmetic (duplicate units; singular ``A`` at delta = 0) is exactly 0.
Tests in ``tests/test_pruning.py``.
"""
from __future__ import annotations

import numpy as np

from ..kfac.damping import factored_damping, sym_eig, sym_inverse, zero_tolerance
from ..kfac.factors import kfac_factors
from ..kfac.layout import fold, has_bias, unfold
from .prune_neurons import consumer_input_coordinates
from .residual import apply_w, kept_svd


def kfac_block(net, X, Y, loss, path, delta, metric, pi):
    """(A_d, G_d, V folded mean-loss gradient, Wf folded weights) of the consumer: the setup
    :func:`kfac_pruning_scores` and :func:`kfac_obs` share (``pruning._prepare``).
    18-pruning.md sections 5 and 7."""
    cons = net.layers[path.consumer]
    f = kfac_factors(net, X, Y, loss, metric=metric, mode="exact")[cons.name]
    A_d, G_d = factored_damping(f.A, f.G, delta, pi)
    _, grads = net.loss_and_grad(X, Y, loss)
    bias = has_bias(cons)
    V = fold(grads.grads[f"{cons.name}.W"], grads.grads[f"{cons.name}.b"] if bias else None)
    Wf = fold(cons.params["W"], cons.params["b"] if bias else None)
    return A_d, G_d, V, Wf


def _split(A, C):
    """(R, T = A_RR^+ A_RC, S_A = A_CC - A_CR T, S_A^+) for the coordinates C of A
    (18-pruning.md section 5), formed on the factor ``Z = diag(sqrt(lam)) U^T`` of ``A = Z^T Z``:
    ``T = Z_R^+ Z_C`` and ``S_A = Q^T Q`` with ``Q = (I - P_{Z_R}) Z_C``, singular values of
    ``Z_R`` and ``Q`` below ``sqrt(n eps lam_max)`` cut (the zero tolerance ``sym_eig`` gives
    ``A``'s eigenvalues).  A Schur complement that vanishes in exact arithmetic (a unit whose
    inputs are combinations of the others' and the bias: a duplicate, a constant unit, every unit
    when ``A`` is singular at delta = 0) is then exactly 0, never inverted rounding noise."""
    R = np.setdiff1d(np.arange(A.shape[0]), C)
    lam, U = sym_eig(A, "A (damped)")
    Z = np.sqrt(lam)[:, None] * U.T
    cut = np.sqrt(zero_tolerance(A.shape[0], lam[-1])) if lam.size else 0.0
    U_o, s_o, Vt_o = kept_svd(Z[:, R], cut)
    T = Vt_o.T @ ((U_o.T @ Z[:, C]) / s_o[:, None])
    _, s_q, Vt_q = kept_svd(apply_w(U_o, s_o, 0.0, Z[:, C], 1.0), cut)
    return R, T, (Vt_q.T * s_q ** 2) @ Vt_q, (Vt_q.T / s_q ** 2) @ Vt_q


def kfac_group_scores(A, G, V, Wf, C) -> tuple:
    """``(freeze, removal, saliency, eta_without)`` of the column block ``C`` (int (k,)) of a
    Kronecker block ``G (x) A`` (damped factors ``A`` (in+1, in+1), ``G`` (out, out)), gradient
    ``V`` and weights ``Wf`` (out, in+1) folded.  Formulas in the module docstring;
    18-pruning.md section 5; ``tests/test_pruning.py::test_kfac_forms_equal_kronecker_brute_force``."""
    return _group_scores(A, G, sym_inverse(G, "G (damped)"), V, Wf, C)


def _group_scores(A, G, G_inv, V, Wf, C) -> tuple:
    """:func:`kfac_group_scores` with ``G_inv = G^+`` given (inverted once for all groups)."""
    R, T, S, S_inv = _split(A, C)
    Res = V[:, C] - V[:, R] @ T
    U = G_inv @ Res @ S_inv
    E = Wf[:, C] - U
    W_C = Wf[:, C]
    eta_without = float(np.sum(V[:, R] * (G_inv @ V[:, R] @ sym_inverse(A[np.ix_(R, R)], "A_RR (damped)"))))
    return (float(np.sum(Res * U)), float(np.sum(E * (G @ E @ S))), float(np.sum(W_C * (G @ W_C @ S))),
            eta_without)


def kfac_obs_folded(A, Wf, C) -> np.ndarray:
    """OBS step on the folded weights (out, in+1): ``D_C = -W_C``, ``D_R = W_C T^T`` with
    ``T = A_RR^+ A_RC`` (damped ``A``).  18-pruning.md section 5."""
    R, T, _, _ = _split(A, C)
    D = np.zeros_like(Wf)
    D[:, C] = -Wf[:, C]
    D[:, R] = Wf[:, C] @ T.T
    return D


def kfac_pruning_scores(net, path, block, groups, delta, incoming="free"):
    """:class:`~.pruning.PruningScores` of ``groups`` under the consumer's damped K-FAC block;
    ``eta`` is that block's ``<V, G_d^+ V A_d^+>`` (the consumer's ``kfac_eta`` entry).
    ``incoming`` is only recorded: the unit's incoming parameters lie in other blocks, which
    block-diagonal K-FAC decouples.  ``block`` = :func:`kfac_block`; arguments validated by
    :func:`~.pruning.pruning_scores`.  ``G_d`` is inverted once for every group and ``eta``.
    18-pruning.md section 5."""
    from .pruning import PruningScores
    A, G, V, Wf = block
    G_inv = sym_inverse(G, "G (damped)")
    rows = [_group_scores(A, G, G_inv, V, Wf, consumer_input_coordinates(net, path, grp)) for grp in groups]
    eta = float(np.sum(V * (G_inv @ V @ sym_inverse(A, "A (damped)"))))
    arr = np.array(rows).reshape(len(groups), 4)
    return PruningScores(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], eta, groups, "kfac", delta,
                         incoming, "consumer", path.units)


def kfac_obs(net, path, block, units) -> np.ndarray:
    """Flat (P,) OBS update within the consumer's K-FAC block (zero elsewhere); ``block`` =
    :func:`kfac_block`.  18-pruning.md section 5."""
    A, _, _, Wf = block
    D = kfac_obs_folded(A, Wf, consumer_input_coordinates(net, path, units))
    cons = net.layers[path.consumer]
    dW, db = unfold(D, cons.params["W"].shape, has_bias(cons))
    d = np.zeros(net.num_params())
    sl = net.param_slices()
    d[sl[f"{cons.name}.W"]] = dW.reshape(-1)
    if db is not None:
        d[sl[f"{cons.name}.b"]] = db
    return d
