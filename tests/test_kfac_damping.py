"""Damping and inverses of Kronecker factors against dense solves (claim 4 of senn-math 11)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.kfac import (COND_LIMIT, CurvatureWarning, DampedKronInverse, block_inverse, block_solve,
                           factored_damping, kron_solve_exact, kron_solve_factored, sym_eig,
                           sym_inverse, tikhonov, trace_norm_pi)
from senn_ref.kfac.damping import zero_tolerance
from senn_ref.testing import assert_close, assert_rel_error


def psd(rng, n, rank=None, scale=1.0):
    B = rng.standard_normal((n, n if rank is None else rank))
    return scale * B @ B.T / B.shape[1]


def kron_dense_solve(A, G, V, delta):
    """Reference: np.linalg.solve on the explicit (G (x) A + delta I), row-major vec."""
    K = np.kron(G, A) + delta * np.eye(A.shape[0] * G.shape[0])
    return np.linalg.solve(K, V.ravel()).reshape(V.shape)


@settings(max_examples=15, deadline=None)
@given(a=st.integers(1, 5), g=st.integers(1, 4), delta=st.sampled_from([1e-3, 0.1, 2.0]),
       seed=st.integers(0, 10**6))
def test_exact_damping_equals_dense_solve(a, g, delta, seed):
    rng = np.random.default_rng(seed)
    A, G, V = psd(rng, a), psd(rng, g, scale=3.0), rng.standard_normal((g, a))
    assert_rel_error(kron_solve_exact(A, G, V, delta), kron_dense_solve(A, G, V, delta), 1e-10,
                     name="exact damping")
    inv = DampedKronInverse(A, G, delta, "exact")
    assert_rel_error(inv.apply(V), kron_dense_solve(A, G, V, delta), 1e-10, name="DampedKronInverse exact")


@settings(max_examples=15, deadline=None)
@given(a=st.integers(1, 5), g=st.integers(1, 4), delta=st.sampled_from([1e-3, 0.1, 2.0]),
       pi=st.sampled_from([1.0, 0.3, 2.5, "trace"]), seed=st.integers(0, 10**6))
def test_factored_damping_equals_dense_solve(a, g, delta, pi, seed):
    rng = np.random.default_rng(seed)
    A, G, V = psd(rng, a), psd(rng, g, scale=3.0), rng.standard_normal((g, a))
    p = trace_norm_pi(A, G) if pi == "trace" else pi
    s = np.sqrt(delta)
    K = np.kron(G + s / p * np.eye(g), A + p * s * np.eye(a))
    ref = np.linalg.solve(K, V.ravel()).reshape(V.shape)
    assert_rel_error(kron_solve_factored(A, G, V, delta, pi), ref, 1e-10, name="factored damping")
    assert_rel_error(DampedKronInverse(A, G, delta, "factored", pi).apply(V), ref, 1e-10,
                     name="DampedKronInverse factored")


def test_trace_norm_pi_by_hand():
    A = np.diag([2.0, 4.0, 6.0])          # tr/dim = 4
    G = np.diag([1.0, 0.0])               # tr/dim = 0.5
    assert trace_norm_pi(A, G) == pytest.approx(np.sqrt(8.0), rel=1e-15)
    assert trace_norm_pi(A, np.zeros((2, 2))) == 1.0
    A_d, G_d = factored_damping(A, G, 0.25, "trace")
    assert_close(A_d, A + np.sqrt(8.0) * 0.5 * np.eye(3), 1e-15, name="A_d")
    assert_close(G_d, G + 0.5 / np.sqrt(8.0) * np.eye(2), 1e-15, name="G_d")


def test_factored_damping_dominates_exact_damping(rng):
    """(A + pi s I) (x) (G + s/pi I) = G (x) A + d I + PSD cross terms, so v^T X_factored v <= v^T X_exact v."""
    A, G, V = psd(rng, 4), psd(rng, 3), rng.standard_normal((3, 4))
    for d in (1e-2, 1.0):
        assert np.sum(V * kron_solve_factored(A, G, V, d)) < np.sum(V * kron_solve_exact(A, G, V, d))


def test_never_in_place_and_no_accumulation(rng):
    A, G, V = psd(rng, 4), psd(rng, 3), rng.standard_normal((3, 4))
    B = rng.standard_normal((2, 3, 3))
    B = B @ np.swapaxes(B, 1, 2)
    g = rng.standard_normal((2, 3))
    copies = [x.copy() for x in (A, G, V, B, g)]
    results = []
    for _ in range(3):
        results.append((tikhonov(A, 0.5), *factored_damping(A, G, 0.5), kron_solve_exact(A, G, V, 0.5),
                        kron_solve_factored(A, G, V, 0.5), sym_inverse(A), block_inverse(B, 0.5),
                        block_solve(B, g, 0.5), DampedKronInverse(A, G, 0.5, "exact").apply(V)))
    for x, c in zip((A, G, V, B, g), copies):
        assert np.array_equal(x, c), "an input was modified"
    for r in results[1:]:
        for x, y in zip(r, results[0]):
            assert np.array_equal(x, y), "repeated calls differ (damping accumulated?)"
    assert_close(tikhonov(A, 0.5), A + 0.5 * np.eye(4), 0, 0, name="tikhonov")
    assert tikhonov(A, 0.5) is not A


def test_pseudo_inverse_of_singular_factors(rng):
    """Exactly singular factors (rank-deficient A, zero row/col in G): delta = 0 gives the
    Moore-Penrose solution (G (x) A)^+ vec(V), without any warning."""
    A = psd(rng, 4, rank=2)
    G = psd(rng, 3)
    G[1, :] = G[:, 1] = 0.0                     # an inactive unit
    V = rng.standard_normal((3, 4))
    ref = (np.linalg.pinv(np.kron(G, A), rcond=1e-10, hermitian=True) @ V.ravel()).reshape(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CurvatureWarning)
        assert_rel_error(kron_solve_exact(A, G, V, 0.0), ref, 1e-10, name="exact, delta 0")
        assert_rel_error(kron_solve_factored(A, G, V, 0.0), ref, 1e-10, name="factored, delta 0")
        assert_rel_error(sym_inverse(A), np.linalg.pinv(A, rcond=1e-10, hermitian=True), 1e-10,
                         name="sym_inverse")
        assert np.array_equal(sym_inverse(np.zeros((2, 2))), np.zeros((2, 2)))
    lam, _ = sym_eig(A)
    assert np.count_nonzero(lam) == 2


def test_zero_tolerance_is_the_cut_of_sym_eig():
    """sym_eig zeroes exactly the eigenvalues <= zero_tolerance(dim, max|lam|) (the cut the
    K-FAC proposal and pruning code import instead of restating it); a diagonal matrix keeps
    its entries exactly as eigenvalues, so the test sits 1e-9 relative on either side."""
    t = zero_tolerance(3, 4.0)
    assert t == 3 * np.finfo(np.float64).eps * 4.0
    lam, _ = sym_eig(np.diag([t * (1 - 1e-9), t * (1 + 1e-9), 4.0]))
    assert lam[0] == 0.0 and lam[1] == t * (1 + 1e-9) and lam[2] == 4.0, lam


def test_ill_conditioned_factor_warns_and_damping_repairs(rng):
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    A = (Q * np.array([1.0, 1e-6, 1e-14])) @ Q.T    # 1e-14 is far above the zero tolerance 3 eps
    with pytest.warns(CurvatureWarning, match="condition number"):
        sym_inverse(A)
    with pytest.warns(CurvatureWarning):
        kron_solve_exact(A, np.eye(2), np.ones((2, 3)), 0.0)
    with pytest.warns(CurvatureWarning):
        block_inverse(A[None], 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CurvatureWarning)
        out = kron_solve_exact(A, np.eye(2), np.ones((2, 3)), 1e-3)
        assert np.all(np.isfinite(out))
        block_inverse(A[None], 1e-3)
    assert COND_LIMIT == 1e12


def test_block_inverse_and_solve_match_dense(rng):
    B = rng.standard_normal((4, 3, 3))
    B = B @ np.swapaxes(B, 1, 2)
    g = rng.standard_normal((4, 3))
    inv = block_inverse(B, 0.2)
    for u in range(4):
        assert_rel_error(inv[u], np.linalg.inv(B[u] + 0.2 * np.eye(3)), 1e-10, name=f"block {u}")
    assert_rel_error(block_solve(B, g, 0.2), np.einsum("upq,uq->up", inv, g), 1e-12, name="block_solve")
    # relative cut-off: a direction at 1e-12 of the scale is treated as null
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    S = (Q * np.array([2.0, 1.0, 2e-12])) @ Q.T
    ref = (Q[:, :2] / np.array([2.0, 1.0])) @ Q[:, :2].T
    assert_rel_error(block_inverse(S[None], 0.0, rcond=1e-10)[0], ref, 1e-8, name="rcond cut")


def test_errors(rng):
    A, G = psd(rng, 3), psd(rng, 2)
    with pytest.raises(ValueError, match="damping"):
        tikhonov(A, -1.0)
    with pytest.raises(ValueError, match="damping"):
        kron_solve_exact(A, G, np.ones((2, 3)), -0.1)
    with pytest.raises(ValueError, match="square"):
        sym_inverse(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        tikhonov(np.full((2, 2), np.nan), 0.1)
    with pytest.raises(TypeError, match="floating"):
        tikhonov(np.eye(2, dtype=int), 0.1)
    with pytest.raises(ValueError, match="unknown pi"):
        factored_damping(A, G, 0.1, "auto")
    with pytest.raises(ValueError, match="pi"):
        factored_damping(A, G, 0.1, 0.0)
    with pytest.raises(ValueError, match="positive semi-definite"):
        sym_inverse(-np.eye(2))
    with pytest.raises(ValueError, match="expected shape"):
        kron_solve_factored(A, G, np.ones((3, 2)), 0.1)
    with pytest.raises(ValueError, match="unknown damping_mode"):
        DampedKronInverse(A, G, 0.1, "tikhonov")
    with pytest.raises(ValueError, match="expected shape"):
        block_solve(np.eye(3)[None], np.ones((2, 3)), 0.1)
