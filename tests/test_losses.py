"""Tests for senn_ref.losses (derivations/07-losses.md).

Tolerances: identities that hold in exact arithmetic and are evaluated with a
handful of float64 operations per entry (metric square roots, metric-vector
products, lambda = 2L) use 1e-14; central finite differences with h = 1e-5 have
truncation error ~h^2/6 * |l'''| ~ 2e-11 and rounding error ~eps |l| / h ~ 1e-10,
so the gradient check uses 1e-7 (relative) and the Hessian check 1e-8 (absolute,
entries are O(1)); np.linalg.pinv of the rank-deficient CE metric is accurate to
about eps * cond ~ 1e-13 for the moderate logits used, checked at 1e-9.
"""
from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from softmax_decimal import softmax_decimal, true_metric_decimal

from senn_ref.losses import METRICS, mse, softmax, softmax_cross_entropy
from senn_ref.testing import assert_close, assert_rel_error

SETTINGS = settings(max_examples=20, deadline=None)
TARGET_KINDS = ("mse", "ce_labels", "ce_probs")


def make_problem(kind: str, N: int, K: int, rng: np.random.Generator, scale: float = 1.5):
    """A loss, outputs F (N, K) and targets of the requested kind."""
    F = scale * rng.standard_normal((N, K))
    if kind == "mse":
        return mse(), F, rng.standard_normal((N, K))
    if kind == "ce_labels":
        return softmax_cross_entropy(), F, rng.integers(0, K, size=N)
    Y = rng.dirichlet(np.ones(K), size=N)
    return softmax_cross_entropy(), F, Y / Y.sum(axis=1, keepdims=True)


shapes = st.tuples(st.integers(1, 6), st.integers(2, 5), st.integers(0, 2**31 - 1))


# ------------------------------------------------------------ gradients
@SETTINGS
@given(shape=shapes, kind=st.sampled_from(TARGET_KINDS))
def test_output_grad_matches_finite_differences(shape, kind):
    N, K, seed = shape
    loss, F, Y = make_problem(kind, N, K, np.random.default_rng(seed))
    h = 1e-5
    fd = np.empty((N, K))
    for k in range(K):
        Fp, Fm = F.copy(), F.copy()
        Fp[:, k] += h
        Fm[:, k] -= h
        # row n of F only enters l_n, so one perturbed column gives dl_n/df_nk for all n
        fd[:, k] = (loss.per_example(Fp, Y) - loss.per_example(Fm, Y)) / (2 * h)
    E = loss.output_grad(F, Y)
    assert_rel_error(E, fd, 1e-7, name=f"{kind} output_grad vs FD")
    value, E2 = loss.value_and_grad(F, Y)
    assert np.array_equal(E, E2)
    assert value == pytest.approx(np.mean(loss.per_example(F, Y)), rel=1e-15)


def test_per_example_formulas():
    rng = np.random.default_rng(1)
    F, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert_close(mse().per_example(F, Y), 0.5 * ((F - Y) ** 2).sum(axis=1), rtol=1e-15)
    y = rng.integers(0, 3, 5)
    naive = np.log(np.exp(F).sum(axis=1)) - F[np.arange(5), y]
    assert_close(softmax_cross_entropy().per_example(F, y), naive, rtol=1e-13)


def test_cross_entropy_huge_logits():
    ce = softmax_cross_entropy()
    F = np.array([[1e4, 0.0, -1e4]] * 3)
    y = np.array([0, 1, 2])
    # exact values: log(1 + e^-1e4 + e^-2e4) = 0 in float64, then +1e4, +2e4
    assert_close(ce.per_example(F, y), np.array([0.0, 1e4, 2e4]), rtol=1e-15, atol=0.0)
    assert_close(ce.output_grad(F, y), np.array([[0.0, 0, 0], [1, -1, 0], [1, 0, -1]]), atol=0.0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow is fine
        ce.value_and_grad(F, y)
        ce.metric(F, y, "true")
    # chi^2 ceiling: 0 when the target class dominates, inf when its probability underflows
    assert ce.ceiling_terms(F, y, "true")[0] == 0.0
    assert np.isinf(ce.ceiling_terms(F, y, "true")[1:]).all()
    # shift invariance at a large offset; F + 1e4 is rounded by up to 1e4 * eps ~ 1e-12
    rng = np.random.default_rng(2)
    G = rng.standard_normal((6, 4))
    lab = rng.integers(0, 4, 6)
    assert_close(ce.per_example(G + 1e4, lab), ce.per_example(G, lab), rtol=0, atol=1e-10)


# -------------------------------------------------------------- metrics
@SETTINGS
@given(shape=shapes, kind=st.sampled_from(TARGET_KINDS), metric=st.sampled_from(METRICS))
def test_metric_sqrt_and_apply(shape, kind, metric):
    N, K, seed = shape
    rng = np.random.default_rng(seed)
    loss, F, Y = make_problem(kind, N, K, rng)
    M = loss.metric(F, Y, metric)
    R = loss.metric_sqrt(F, Y, metric)
    assert M.shape == (N, K, K)
    assert R.shape == (N, K, 1 if metric == "empirical" else K)
    # each entry is a sum of r (or K) products: its rounding error is at most a few
    # r * eps * (sum of |products|) (standard summation bound), plus 1e-14 for O(1) entries
    eps = np.finfo(np.float64).eps
    absR = np.abs(R)
    bound = 4 * R.shape[2] * eps * (absR @ absR.transpose(0, 2, 1)) + 1e-14
    assert_close(R @ R.transpose(0, 2, 1), M, rtol=0, atol=bound, name="R R^T vs M")
    V = rng.standard_normal((N, K))
    bound = 4 * K * eps * np.einsum("nij,nj->ni", np.abs(M), np.abs(V)) + 1e-14
    assert_close(loss.metric_apply(F, Y, V, metric), np.einsum("nij,nj->ni", M, V),
                 rtol=0, atol=bound, name="metric_apply vs M v")
    eig = np.linalg.eigvalsh(M)                       # PSD up to rounding of the entries
    assert eig.min() >= -1e-14 * max(1.0, np.abs(eig).max())


def test_metric_definitions():
    rng = np.random.default_rng(3)
    for kind in TARGET_KINDS:
        loss, F, Y = make_problem(kind, 4, 3, rng)
        E = loss.output_grad(F, Y)
        assert np.array_equal(loss.metric(F, Y, "euclidean"), np.stack([np.eye(3)] * 4))
        assert_close(loss.metric(F, Y, "empirical"), np.stack([np.outer(e, e) for e in E]), rtol=1e-15)
        if kind == "mse":
            assert np.array_equal(loss.metric(F, Y, "true"), np.stack([np.eye(3)] * 4))
        else:
            P = np.exp(F) / np.exp(F).sum(axis=1, keepdims=True)
            ref = np.stack([np.diag(p) - np.outer(p, p) for p in P])
            assert_close(loss.metric(F, Y, "true"), ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", ["ce_labels", "ce_probs"])
def test_true_ce_metric_is_hessian(kind):
    rng = np.random.default_rng(4)
    loss, F, Y = make_problem(kind, 5, 4, rng)
    h = 1e-5
    H = np.empty((5, 4, 4))
    for k in range(4):
        Fp, Fm = F.copy(), F.copy()
        Fp[:, k] += h
        Fm[:, k] -= h
        H[:, :, k] = (loss.output_grad(Fp, Y) - loss.output_grad(Fm, Y)) / (2 * h)
    assert_close(loss.metric(F, Y, "true"), H, rtol=0, atol=1e-8, name="true metric vs FD Hessian")


# -------------------------------------------------------------- ceiling
@SETTINGS
@given(shape=shapes)
def test_mse_ceiling_is_twice_the_loss(shape):
    N, K, seed = shape
    loss, F, Y = make_problem("mse", N, K, np.random.default_rng(seed))
    E = F - Y
    for metric in ("euclidean", "true"):
        assert loss.ceiling(F, Y, metric) == pytest.approx(2 * loss.value(F, Y), rel=1e-14)
        assert loss.ceiling(F, Y, metric) == pytest.approx(np.mean((E * E).sum(axis=1)), rel=1e-14)


@SETTINGS
@given(shape=shapes, kind=st.sampled_from(TARGET_KINDS))
def test_ceiling_matches_pseudo_inverse(shape, kind):
    N, K, seed = shape
    loss, F, Y = make_problem(kind, N, K, np.random.default_rng(seed))
    E = loss.output_grad(F, Y)
    for metric in METRICS:
        M = loss.metric(F, Y, metric)
        # the CE metric's exact null vector (ones) shows up as an eigenvalue of size
        # ~eps * ||M||, which numpy's default cutoff (1e-15 relative) can keep; 1e-10 is
        # far above rounding and far below the smallest true eigenvalue here
        ref = np.array([e @ np.linalg.pinv(m, rcond=1e-10, hermitian=True) @ e for e, m in zip(E, M)])
        assert_close(loss.ceiling_terms(F, Y, metric), ref, rtol=1e-9, atol=1e-12,
                     name=f"{kind} {metric} ceiling vs pinv")
        assert loss.ceiling(F, Y, metric) == pytest.approx(ref.mean(), rel=1e-9, abs=1e-12)


def test_ce_true_ceiling_closed_forms():
    rng = np.random.default_rng(5)
    ce = softmax_cross_entropy()
    F = rng.standard_normal((7, 4))
    y = rng.integers(0, 4, 7)
    p = softmax(F)
    # one-hot targets: chi^2 = 1/p_y - 1
    assert_close(ce.ceiling_terms(F, y, "true"), 1.0 / p[np.arange(7), y] - 1.0, rtol=1e-13)
    # probability targets: sum_k t_k^2 / p_k - 1
    T = rng.dirichlet(np.ones(4), size=7)
    assert_close(ce.ceiling_terms(F, T, "true"), (T * T / p).sum(axis=1) - 1.0, rtol=1e-12)
    # perfect fit (t = p): zero ceiling
    assert_close(ce.ceiling_terms(F, p / p.sum(axis=1, keepdims=True), "true"), np.zeros(7), atol=1e-14)


def test_empirical_ceiling_counts_nonzero_residuals():
    rng = np.random.default_rng(6)
    F = rng.standard_normal((8, 3))
    Y = rng.standard_normal((8, 3))
    Y[[1, 4, 5]] = F[[1, 4, 5]]     # three exact fits -> e_n = 0
    assert mse().ceiling(F, Y, "empirical") == 5 / 8
    assert mse().ceiling(F, Y, "euclidean") == pytest.approx(2 * mse().value(F, Y), rel=1e-14)


def test_true_ce_metric_entries_relatively_accurate_near_saturation():
    """Logit gaps 25-35 (1 - p_a ~ 1e-11 to 1e-15 for the dominant class a): every entry of M,
    R and M v equals the 50-digit decimal value to 1e-13 of its own size (M v: of the size
    p_k sum_j p_j |v_k - v_j| of the terms it sums).  Computed as p_a - p_a^2, q_a - p_a q_a or
    p_a (v_a - p . v), these entries kept an absolute error ~eps: 1e-3 relative at gap 30, all of
    it at gap 37 (07-losses.md section 4.2)."""
    rng = np.random.default_rng(21)
    rows = []
    for K in (2, 3, 4):
        for gap in (25.0, 30.0, 35.0):
            f = rng.standard_normal(K)
            f[0] = f[1:].max() + gap
            rows.append((f, rng.standard_normal(K)))
    ce = softmax_cross_entropy()
    for f, v in rows:
        F, V = f[None], v[None]
        M_ref, R_ref, MV_ref = true_metric_decimal(F, V)
        for name, got, ref in (("M", ce.metric(F, None, "true"), M_ref),
                               ("R", ce.metric_sqrt(F, None, "true"), R_ref)):
            assert_close(got, ref, rtol=1e-13, atol=0, name=f"{name} at gap {f[0] - f[1:].max():.0f}")
        P = softmax(F)
        size = P * np.sum(P[:, None, :] * np.abs(V[:, :, None] - V[:, None, :]), axis=2)
        assert_close(ce.metric_apply(F, None, V, "true"), MV_ref, rtol=0, atol=1e-13 * size,
                     name=f"M v at gap {f[0] - f[1:].max():.0f}")


# ------------------------------------------------------ whitened gradient
def _whitened_ce_exact(f, t, prec=60):
    """h_k = (p_k - t_k) / sqrt(p_k) for one row, evaluated in decimal arithmetic at ``prec``
    digits from the exact binary values of the float logits f and targets t (a float64-free
    reference; 07-losses.md section 4.1); returns floats and the size q_k + t_k / q_k of the
    two terms that cancel in h_k = q_k - t_k / q_k (q_k = sqrt(p_k))."""
    with localcontext() as ctx:
        ctx.prec = prec
        h, size = [], []
        for p, tk in zip(softmax_decimal(f), t):
            td = Decimal(float(tk))
            q = p.sqrt()
            h.append(float((p - td) / q))
            size.append(float(q + td / q))
    return np.array(h), np.array(size)


@SETTINGS
@given(shape=shapes, kind=st.sampled_from(TARGET_KINDS), metric=st.sampled_from(METRICS))
def test_whitened_matches_pseudo_inverse(shape, kind, metric):
    """The closed-form h_n = R_n^+ e_n equals np.linalg.pinv of metric_sqrt's R_n at moderate
    logits (pinv accurate to ~eps cond(R_n) ~ 1e-13 here), solves R_n h_n = e_n, and
    ||h_n||^2 is the ceiling term e_n^T M_n^+ e_n."""
    N, K, seed = shape
    loss, F, Y = make_problem(kind, N, K, np.random.default_rng(seed))
    E = loss.output_grad(F, Y)
    R = loss.metric_sqrt(F, Y, metric)
    H = loss.whitened(F, Y, metric)
    assert H.shape == (N, R.shape[2])
    ref = np.stack([np.linalg.pinv(r, rcond=1e-10) @ e for r, e in zip(R, E)])
    scale = np.linalg.norm(ref, axis=1, keepdims=True)
    assert_close(H, ref, rtol=0, atol=1e-12 * scale, name=f"{kind} {metric} whitened vs pinv")
    assert_close(np.einsum("nkr,nr->nk", R, H), E, rtol=0, atol=1e-14, name="R h vs e")
    assert_close((H * H).sum(axis=1), loss.ceiling_terms(F, Y, metric), rtol=1e-12, atol=1e-300,
                 name="||h||^2 vs ceiling term")


@pytest.mark.parametrize("kind", ["ce_labels", "ce_probs"])
def test_whitened_ce_at_extreme_logits(kind):
    """True-metric CE at logit scales 30 and 60 (probabilities down to ~1e-150): every entry of
    h equals the 60-digit decimal value of (p_k - t_k) / sqrt(p_k) to 1e-13 of the size of
    the terms that cancel (rounding of f - max f costs ~eps |f| relative in p)."""
    rng = np.random.default_rng(11)
    ce = softmax_cross_entropy()
    for scale in (30.0, 60.0):
        _, F, Y = make_problem(kind, 40, 4, rng, scale=scale)
        T = ce.check(F, Y)[1]
        H = ce.whitened(F, Y, "true")
        for n in range(40):
            ref, size = _whitened_ce_exact(F[n], T[n])
            assert_close(H[n], ref, rtol=0, atol=1e-13 * size, name=f"scale {scale} row {n}")
    # the seed-3 row of tests/test_score.py::test_eta_at_ceiling_with_tiny_probability:
    # p = (5.2e-26, 0.0215, 0.978), label 2; pinv(R) gave h_0 = -8.1e-5 instead of sqrt(p_0)
    f = np.array([[-48.65747834, 5.72967296, 9.54687571]])
    ref, _ = _whitened_ce_exact(f[0], [0.0, 0.0, 1.0])
    assert_close(ce.whitened(f, np.array([2]), "true")[0], ref, rtol=1e-14, name="tiny p_0 row")
    assert 2e-13 < ref[0] < 3e-13


def test_whitened_empirical_and_euclidean_are_exact():
    """empirical: h_n = [1] for e_n != 0 and [0] for e_n = 0 exactly; euclidean: h = e."""
    rng = np.random.default_rng(12)
    F, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    Y[[1, 3]] = F[[1, 3]]
    assert np.array_equal(mse().whitened(F, Y, "empirical"), np.array([[1.0], [0.0], [1.0], [0.0], [1.0]]))
    assert np.array_equal(mse().whitened(F, Y, "euclidean"), F - Y)
    assert np.array_equal(mse().whitened(F, Y, "true"), F - Y)


# ------------------------------------------------------ label handling
def test_labels_and_one_hot_identical():
    rng = np.random.default_rng(7)
    ce = softmax_cross_entropy()
    F = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    T = np.eye(5)[y]
    V = rng.standard_normal((6, 5))
    for name in ("per_example", "output_grad"):
        assert np.array_equal(getattr(ce, name)(F, y), getattr(ce, name)(F, T))
    assert ce.value(F, y) == ce.value(F, T)
    for metric in METRICS:
        assert np.array_equal(ce.metric(F, y, metric), ce.metric(F, T, metric))
        assert np.array_equal(ce.metric_sqrt(F, y, metric), ce.metric_sqrt(F, T, metric))
        assert np.array_equal(ce.metric_apply(F, y, V, metric), ce.metric_apply(F, T, V, metric))
        assert ce.ceiling(F, y, metric) == ce.ceiling(F, T, metric)
        assert np.array_equal(ce.whitened(F, y, metric), ce.whitened(F, T, metric))
    assert ce.accuracy(F, y) == ce.accuracy(F, T)
    assert np.array_equal(ce.check(F, y)[1], T)
    assert np.array_equal(ce.check(F, y.astype(np.uint8))[1], T)


def test_accuracy_and_predict():
    ce = softmax_cross_entropy()
    F = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0], [1.0, 0.0, 0.5]])
    assert np.array_equal(ce.predict(F), [0, 1, 2, 0])
    assert ce.accuracy(F, np.array([0, 1, 0, 2])) == 0.5
    assert_close(ce.probabilities(F).sum(axis=1), np.ones(4), rtol=1e-15)


# --------------------------------------------------------------- errors
def test_names():
    assert mse().name == "mse"
    assert softmax_cross_entropy().name == "softmax_cross_entropy"


@pytest.mark.parametrize("F, Y, exc, match", [
    (np.ones((3, 2), dtype=int), np.ones((3, 2)), TypeError, "floating"),
    (np.full((3, 2), np.nan), np.ones((3, 2)), ValueError, "NaN"),
    (np.ones(3), np.ones(3), ValueError, "dimensions"),
    (np.ones((0, 2)), np.ones((0, 2)), ValueError, "empty"),
    (np.ones((3, 2)), np.ones((3, 3)), ValueError, "shape"),
    (np.ones((3, 2)), np.ones((3, 2), dtype=np.int64), TypeError, "floating"),
    (np.ones((3, 2)), np.array([[1.0, np.inf]] * 3), ValueError, "infinite"),
])
def test_mse_errors(F, Y, exc, match):
    with pytest.raises(exc, match=match):
        mse().value(F, Y)


@pytest.mark.parametrize("F, Y, exc, match", [
    (np.ones((3, 2)), np.array([0, 1, 2]), ValueError, "in \\[0, 2\\)"),
    (np.ones((3, 2)), np.array([0, -1, 1]), ValueError, "in \\[0, 2\\)"),
    (np.ones((3, 2)), np.array([0, 1]), ValueError, "shape"),
    (np.ones((3, 2)), np.array([[0], [1], [1]]), ValueError, "shape"),
    (np.ones((3, 2)), np.array([0.0, 1.0, 1.0]), TypeError, "integers"),
    (np.ones((3, 2)), np.array([True, False, True]), TypeError, "dtype bool"),
    (np.ones((3, 2)), np.array([[0.5, 0.6]] * 3), ValueError, "sum to 1"),
    (np.ones((3, 2)), np.array([[1.5, -0.5]] * 3), ValueError, "negative"),
    (np.ones((3, 2)), np.array([[0.5, np.nan]] * 3), ValueError, "NaN"),
    (np.ones((3, 1)), np.array([0, 0, 0]), ValueError, "K >= 2"),
    (np.ones((0, 2)), np.zeros(0, dtype=int), ValueError, "empty"),
])
def test_cross_entropy_errors(F, Y, exc, match):
    with pytest.raises(exc, match=match):
        softmax_cross_entropy().value(F, Y)
    with pytest.raises(exc, match=match):          # the one-pass value_and_grad checks alike
        softmax_cross_entropy().value_and_grad(F, Y)


def test_cross_entropy_value_and_grad_equals_the_generic_one():
    """The fused value_and_grad (one exp, labels without one-hot rows) gives the very bits of
    the generic ``(mean(per_example), output_grad)`` (07-losses.md section 2)."""
    from senn_ref.losses.base import Loss
    rng = np.random.default_rng(11)
    ce = softmax_cross_entropy()
    for N, K in [(1, 2), (7, 3), (300, 10)]:
        F = 8.0 * rng.standard_normal((N, K))
        y = rng.integers(0, K, N)
        T = rng.random((N, K))
        T /= T.sum(axis=1, keepdims=True)
        for Y in (y, y.astype(np.uint8), list(y), T, np.eye(K)[y]):
            value, E = ce.value_and_grad(F, Y)
            ref_value, ref_E = Loss.value_and_grad(ce, F, Y)
            assert value == ref_value and np.array_equal(E, ref_E)


def test_unknown_metric_and_bad_vectors():
    rng = np.random.default_rng(8)
    F, Y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    for method in ("metric", "metric_sqrt", "ceiling", "ceiling_terms", "whitened"):
        with pytest.raises(ValueError, match="euclidean.*true"):
            getattr(mse(), method)(F, Y, "fisher")
    with pytest.raises(ValueError, match="shape"):
        mse().metric_apply(F, Y, np.ones((3, 3)), "true")
    with pytest.raises(TypeError, match="floating"):
        mse().metric_apply(F, Y, np.ones((3, 2), dtype=int))
    # a probability row summing to 1 within the documented tolerance is accepted
    T = np.array([[0.25, 0.75 + 5e-9]] * 3)
    assert np.isfinite(softmax_cross_entropy().value(F, T))


def test_target_free_metrics_accept_no_targets():
    """euclidean and true metrics depend on F only: Y=None gives the same result; empirical needs Y."""
    rng = np.random.default_rng(7)
    F = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    V = rng.standard_normal((4, 3))
    for loss, Y in ((mse(), rng.standard_normal((4, 3))), (softmax_cross_entropy(), labels)):
        for metric in ("euclidean", "true"):
            assert np.array_equal(loss.metric(F, None, metric), loss.metric(F, Y, metric))
            assert np.array_equal(loss.metric_sqrt(F, None, metric), loss.metric_sqrt(F, Y, metric))
            assert np.array_equal(loss.metric_apply(F, None, V, metric), loss.metric_apply(F, Y, V, metric))
        with pytest.raises(ValueError, match="needs the targets"):
            loss.metric(F, None, "empirical")
    with pytest.raises(ValueError, match="K >= 2"):
        softmax_cross_entropy().metric(np.zeros((2, 1)), None, "true")
