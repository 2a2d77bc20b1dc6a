"""The natural expansion score eta, its ceiling, and CG (senn-math section 3; section 11 claim 5).

Tolerances: identities that hold exactly in real arithmetic and are evaluated
through an eigendecomposition of a well-scaled F (condition numbers below ~1e6
in these tests) are checked at 1e-10 relative, invariances at 1e-9 (the
reparameterised F has a condition number up to c^4 ~ 1e2 larger).  CG against
the eigendecomposition at 1e-8 with a CG tolerance of 1e-12 (the residual bound
times the condition number of F + delta I).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from softmax_decimal import ggn_factor_decimal

from senn_ref import score
from senn_ref.fisher import exact, ggn_factor, jacobian
from senn_ref.gradcheck import central_difference
from senn_ref.layers.activations import Tanh
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.natural_gradient import CGWarning, cg_solve, natural_gradient
from senn_ref.network import Network
from senn_ref.testing import assert_close, assert_rel_error


def mlp(rng, sizes, act="tanh"):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, rng, bias_std=0.5))
        if i < len(sizes) - 2 and act is not None:
            layers.append(Tanh((b,)) if act == "tanh" else Rational(b, rng=rng))
    return Network(layers)


def regression(rng, N=8, sizes=(3, 4, 2), act="tanh"):
    net = mlp(rng, list(sizes), act)
    return net, rng.standard_normal((N, sizes[0])), rng.standard_normal((N, sizes[-1])), mse()


def mean_loss(net, X, Y, loss):
    return loss.value(net.forward(X), Y)


# ------------------------------------------------------------ ceiling and bounds
@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 8), n_in=st.integers(1, 3), hidden=st.integers(1, 4), K=st.integers(1, 3),
       act=st.sampled_from(["tanh", "rational"]), damping=st.floats(0.0, 10.0),
       seed=st.integers(0, 2**31 - 1))
def test_eta_between_zero_and_ceiling(N, n_in, hidden, K, act, damping, seed):
    rng = np.random.default_rng(seed)
    net, X, Y, loss = regression(rng, N, (n_in, hidden, K), act)
    lam = score.ceiling(net, X, Y, loss)
    eta0 = score.eta(net, X, Y, loss, damping=0.0)
    eta_d = score.eta(net, X, Y, loss, damping=damping)
    assert -1e-12 * lam <= eta_d <= eta0 * (1 + 1e-10) + 1e-300
    assert 0.0 <= eta0 <= lam * (1 + 1e-10), (eta0, lam)


@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 8), n_in=st.integers(1, 3), hidden=st.integers(1, 4), K=st.integers(2, 4),
       scale=st.sampled_from([0.3, 3.0, 12.0]), metric=st.sampled_from(["true", "empirical"]),
       damping=st.sampled_from([0.0, 1e-8, 0.5]), seed=st.integers(0, 2**31 - 1))
def test_eta_below_ceiling_cross_entropy_metrics(N, n_in, hidden, K, scale, metric, damping, seed):
    """0 <= eta <= lambda_M for the true and empirical metrics too (large logits included)."""
    rng = np.random.default_rng(seed)
    net = mlp(rng, [n_in, hidden, K], "rational")
    X, Y = scale * rng.standard_normal((N, n_in)), rng.integers(0, K, N)
    loss = softmax_cross_entropy()
    lam = score.ceiling(net, X, Y, loss, metric=metric)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # e_n must be found in range(M_n)
        value = score.eta(net, X, Y, loss, damping=damping, metric=metric)
    assert 0.0 <= value <= lam * (1 + 1e-10), (value, lam)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 8), n_in=st.integers(1, 3), hidden=st.integers(1, 4), K=st.integers(2, 4),
       scale=st.sampled_from([12.0, 30.0, 60.0]), metric=st.sampled_from(["true", "empirical"]),
       seed=st.integers(0, 2**31 - 1))
def test_eta_below_ceiling_at_large_logits(N, n_in, hidden, K, scale, metric, seed):
    """eta <= lambda_M (1 + 1e-10) at damping 0 with softmax probabilities down to ~1e-100
    (10-expansion-score.md sections 4 and 7).  Output-space path: b is the closed-form
    whitened residual, ||b||^2 = lambda_M to rounding, and eta = ||U_r^T b||^2 cannot exceed
    it.  Parameter-space fallback (a target class with sqrt(p) below R_n's rounding level,
    about 5 % of these cases): eta = sum a_i^2 / sigma_i^2 divides the rounding of
    a = V_r^T g by sigma_i, a relative error of a few eps sigma_max / sigma_min (at most
    3x that in 3000 random cases), so the bound is checked with 20x that allowance."""
    rng = np.random.default_rng(seed)
    net = mlp(rng, [n_in, hidden, K], "rational")
    X, Y = scale * rng.standard_normal((N, n_in)), rng.integers(0, K, N)
    loss = softmax_cross_entropy()
    lam = score.ceiling(net, X, Y, loss, metric=metric)
    d = score.eta_exact_details(net, X, Y, loss, damping=0.0, metric=metric)
    _, miss = score.whitened_residual(loss, net.forward(X), Y, metric, return_residual=True)
    allow = 1e-10
    if miss > score.WHITENING_TOL and d.rank:
        kept = d.sigma[:d.rank]
        allow += 20 * np.finfo(np.float64).eps * kept[0] / kept[-1]
    assert 0.0 <= d.eta <= lam * (1 + allow), (d.eta, lam, d.eta / lam - 1, miss, allow)
    assert d.eta == score.eta(net, X, Y, loss, damping=0.0, metric=metric)


def test_eta_at_ceiling_with_tiny_probability():
    """Regression (found by hypothesis): one example has p = (5.2e-26, 0.0215, 0.978); the
    batched pinv of R_n kept a singular value ~sqrt(5e-26) carrying rounding noise, and eta came
    out 4.8e-8 relative above lambda = 0.045458268469497514 (50-digit value of the closed form).
    Here B has full row rank on the range of the whitening, so eta = lambda."""
    rng = np.random.default_rng(3)
    net = mlp(rng, [3, 3, 3], "rational")
    X, Y = 12.0 * rng.standard_normal((3, 3)), rng.integers(0, 3, 3)
    loss = softmax_cross_entropy()
    lam = score.ceiling(net, X, Y, loss, metric="true")
    assert lam == pytest.approx(0.045458268469497514, rel=1e-14)
    value = score.eta(net, X, Y, loss, damping=0.0, metric="true")
    assert value <= lam * (1 + 1e-12)
    assert value == pytest.approx(lam, rel=1e-12)


def test_eta_at_ceiling_near_a_perfect_fit():
    """Regression (found by hypothesis at logit scale 12): one example, K = 2, p_label =
    1 - 8.8e-12.  e_label = p_label - 1 carries rounding ~eps, 1e-5 of ||e_n||, so e_n missed
    range(R_n) by more than WHITENING_TOL, the parameter-space fallback amplified a rounding-level
    singular value of B (1.4e-15 against 1.1e-4) and eta came out 1.0 against lambda = 8.8e-12.
    A miss at the rounding level of e_n's entries is not a whitening failure: the output-space
    path is taken, and with B of rank K - 1 = 1 on the range, eta = lambda = p_1 / p_0."""
    rng = np.random.default_rng(2)
    net = mlp(rng, [1, 4, 2], "rational")
    X, Y = 12.0 * rng.standard_normal((1, 1)), rng.integers(0, 2, 1)
    loss = softmax_cross_entropy()
    f = net.forward(X)[0]
    lam = score.ceiling(net, X, Y, loss, metric="true")
    assert Y[0] == 0 and lam == pytest.approx(np.exp(f[1] - f[0]), rel=1e-13) and lam < 1e-11
    _, miss = score.whitened_residual(loss, net.forward(X), Y, "true", return_residual=True)
    assert miss <= score.WHITENING_TOL
    value = score.eta(net, X, Y, loss, damping=0.0, metric="true")
    assert value == pytest.approx(lam, rel=1e-12)


@pytest.mark.parametrize("N, K", [(1, 3), (2, 2)])
@pytest.mark.parametrize("gap", [25.0, 35.0])
def test_exact_path_near_saturated_softmax(N, K, gap):
    """A correctly classified example at logit gap 25-35 (1 - p_label ~ 1e-11 to 1e-15), true metric,
    damping 0.  B has rank N (K - 1) exactly (R_n^T 1 = 0); its rows and singular values match a
    50-digit decimal evaluation of R_n^T J_n / sqrt(N) (J taken as exact) to 1e-13, the cut-off
    keeps N (K - 1) of them, and u = F^+ g is the minimum-norm least-squares solution of B u = b.
    With R_aa = q_a - p_a q_a (absolute rounding ~eps) the rows of the dominant classes were off by
    up to 1.7e-6 relative at gap 25, the cut-off kept N spurious singular values ~1e-17 .. 1e-16
    (against sigma_max 1.7e-5 .. 1e-7) and u was off by 114% (N 1, K 3) and 243% (N 2, K 2) of
    ||u|| (07-losses.md section 4.2)."""
    net = Network([Dense(2, 3, np.random.default_rng(1)), Tanh((3,)), Dense(3, K, np.random.default_rng(2))])
    X = np.random.default_rng(3).standard_normal((N, 2))
    f = net.forward(X)
    net.layers[-1].params["b"][0] += gap - np.mean(f[:, 0] - f[:, 1:].max(axis=1))
    y = np.zeros(N, dtype=np.int64)
    loss = softmax_cross_entropy()
    B_ref, b_ref = ggn_factor_decimal(jacobian(net, X), net.forward(X), y)
    B = ggn_factor(net, X, loss, metric="true", Y=y)
    assert_close(B, B_ref, rtol=0, atol=1e-13 * np.abs(B_ref).max(axis=1, keepdims=True), name="B rows")
    d = score.eta_exact_details(net, X, y, loss, damping=0.0, metric="true")
    sv_ref = np.linalg.svd(B_ref, compute_uv=False)[:N * (K - 1)]       # well separated from 0 here
    assert d.rank == N * (K - 1), (d.rank, d.sigma)
    assert_close(d.sigma[:d.rank], sv_ref, rtol=1e-13, name="singular values")
    u_ref = np.linalg.lstsq(B_ref, b_ref, rcond=1e-10)[0]
    assert_close(d.u, u_ref, rtol=0, atol=1e-10 * np.linalg.norm(u_ref), name="u = F^+ g")
    assert_close(d.eta, score.ceiling(net, X, y, loss, metric="true"), rtol=1e-12, name="eta = lambda")


@pytest.mark.parametrize("gap, valid", [(20.0, True), (60.0, True), (70.0, False), (800.0, False)])
def test_whitening_check_flags_classes_below_rounding_level(gap, valid):
    """whitened_residual's check zeroes singular values of R_n below max(K, r) eps max(1, ||R_n||):
    a target class with sqrt(p) under that level (logit gap above ~70.5 for K = 3) misses e_n by
    O(1), so callers fall back to parameter space; below it the miss is rounding (h is exact)."""
    F = np.array([[gap, 0.0, 0.0], [1.0, 0.0, -1.0]])
    y = np.array([1, 2])
    loss = softmax_cross_entropy()
    h, miss = score.whitened_residual(loss, F, y, "true", return_residual=True)
    assert np.array_equal(h, loss.whitened(F, y, "true"))
    if valid:
        assert miss < 1e-14
    else:
        assert miss > 0.1 > score.WHITENING_TOL


def test_damping_lowers_eta_monotonically(rng):
    net, X, Y, loss = regression(rng, N=10, act="rational")
    deltas = [0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    etas = [score.eta(net, X, Y, loss, damping=d) for d in deltas]
    assert all(a > b for a, b in zip(etas[:-1], etas[1:])), etas
    assert etas[0] <= score.ceiling(net, X, Y, loss) * (1 + 1e-10)


@pytest.mark.parametrize("act", ["tanh", "rational"])
def test_ceiling_mse_is_twice_the_loss(rng, act):
    net, X, Y, loss = regression(rng, act=act)
    assert_close(score.ceiling(net, X, Y, loss), 2 * mean_loss(net, X, Y, loss), rtol=1e-14, name="2L")


def test_eta_equals_projection_of_residual(rng):
    """eta = (1/N) e^T P_J e (euclidean), with P_J from an SVD of the stacked Jacobian."""
    for N in (2, 30):                       # N K < P (eta = lambda) and N K > P
        net, X, Y, loss = regression(rng, N=N, act="rational")
        J = jacobian(net, X).reshape(N * 2, -1)
        e = (net.forward(X) - Y).ravel()
        U, S, _ = np.linalg.svd(J, full_matrices=False)
        Ur = U[:, S > S[0] * 1e-12]
        proj = float(np.sum((Ur.T @ e) ** 2)) / N
        assert_close(score.eta(net, X, Y, loss), proj, rtol=1e-10, name=f"eta vs projection N={N}")
        if N * 2 <= Ur.shape[0] and Ur.shape[1] == N * 2:
            assert_close(proj, score.ceiling(net, X, Y, loss), rtol=1e-10, name="eta = lambda when NK <= rank")


def test_ceiling_bounds_true_metric_ce(rng):
    net = mlp(rng, [3, 4, 3], "tanh")
    X, Y = rng.standard_normal((12, 3)), rng.integers(0, 3, 12)
    loss = softmax_cross_entropy()
    lam = score.ceiling(net, X, Y, loss, metric="true")
    for d in (0.0, 0.1):
        eta = score.eta(net, X, Y, loss, damping=d, metric="true")
        assert 0.0 <= eta <= lam * (1 + 1e-10), (eta, lam)


def test_gradient_in_range_of_fisher(rng):
    """g = (1/N) J^T e lies in range(F) for every metric (10-expansion-score.md section 6)."""
    net = mlp(rng, [3, 4, 3], "rational")
    X, Y = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)    # N K = 12 < P: F singular
    loss = softmax_cross_entropy()
    for metric in ("euclidean", "true", "empirical"):
        d = score.eta_exact_details(net, X, Y, loss, metric=metric)
        assert d.rank < d.F.shape[0], "test needs a singular F"
        assert_rel_error(d.F @ d.u, d.g, 1e-8, f"F F^+ g = g ({metric})")


def test_empirical_score_saturates_at_one(rng):
    """With linearly independent per-example gradients the empirical score is exactly 1."""
    net, X, Y, loss = regression(rng, N=5, sizes=(3, 6, 2))
    for scale in (1e-3, 1.0, 1e3):
        eta = score.eta(net, X, scale * Y, loss, metric="empirical")
        assert_close(eta, 1.0, rtol=1e-9, name=f"empirical eta, target scale {scale}")


# ------------------------------------------------------------ quadratic model and flow
def test_half_eta_is_quadratic_model_decrease(rng):
    net, X, Y, loss = regression(rng, N=40, act="rational")
    d = score.eta_exact_details(net, X, Y, loss)
    # singular F (pseudo-inverse path).  u^T F u is evaluated as ||J u||^2 / N by a JVP, whose
    # rounding error relative to eta is about eps * sigma_max / sigma_min (< 1e-11 here);
    # forming u^T F u from the dense F would square that condition number.
    assert d.rank < d.F.shape[0] and d.sigma[0] / d.sigma[d.rank - 1] < 1e4
    u = -d.u
    net.forward(X)
    uFu = float(np.sum(net.jvp_flat(u) ** 2)) / X.shape[0]
    decrease = -(d.g @ u + 0.5 * uFu)
    assert_close(decrease, d.eta / 2, rtol=1e-10, name="quadratic model decrease")
    # the variational form: no other step does better
    for _ in range(5):
        w = u + 0.1 * rng.standard_normal(u.shape)
        assert -(d.g @ w + 0.5 * w @ d.F @ w) <= decrease * (1 + 1e-12)


@pytest.mark.parametrize("N", [3, 40])
def test_linear_model_mse_decrease_is_exactly_half_eta(rng, N):
    """For a model linear in its parameters and MSE, L is its own quadratic model."""
    net = Network([Dense(4, 2, rng, bias_std=0.5)])
    X, Y = rng.standard_normal((N, 4)), rng.standard_normal((N, 2))
    loss = mse()
    d = score.eta_exact_details(net, X, Y, loss)
    net.set_flat(net.get_flat() - d.u)
    after = mean_loss(net, X, Y, loss)
    assert_close(d.loss - after, d.eta / 2, rtol=1e-10, name="exact decrease")
    if N == 3:      # N K = 6 < P = 10: the step interpolates, eta = lambda = 2 L
        assert after < 1e-20 * d.loss + 1e-28


def test_loss_rate_along_natural_gradient_is_minus_eta(rng):
    net, X, Y, loss = regression(rng, N=15, act="tanh")
    d = score.eta_exact_details(net, X, Y, loss)
    theta0 = net.get_flat()

    unit = d.u / np.linalg.norm(d.u)

    def along(t):
        net.set_flat(theta0 - t[0] * unit)
        try:
            return np.array([mean_loss(net, X, Y, loss)])
        finally:
            net.set_flat(theta0)

    rate = central_difference(along, np.zeros(1), np.ones(1), h=1e-3)[0] * np.linalg.norm(d.u)
    assert_close(rate, -d.eta, rtol=1e-9, name="dL/dt")


# ------------------------------------------------------------ invariance
def test_invariance_rescaling_around_linear_unit(rng):
    net = mlp(rng, [3, 4, 2, 2], act=None)                 # Dense-Dense-Dense: linear units
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    loss = mse()
    before = score.eta(net, X, Y, loss)
    out = net.forward(X)
    c = np.array([3.0, 0.2, -1.5, 7.0])                    # one factor per hidden unit
    p0, p1 = net.layers[0].params, net.layers[1].params
    p0["W"] *= c[:, None]
    p0["b"] *= c
    p1["W"] /= c[None, :]
    assert_close(net.forward(X), out, rtol=1e-12, atol=1e-13, name="function preserved")
    assert_close(score.eta(net, X, Y, loss), before, rtol=1e-9, name="eta after rescaling")


def test_invariance_linear_reparameterisation_of_dense_inputs(rng):
    """Inputs x -> A x with W1 -> W1 A^{-1}: same function, same eta (nonlinear net)."""
    net, X, Y, loss = regression(rng, N=12, sizes=(3, 4, 2), act="tanh")
    before = score.eta(net, X, Y, loss)
    A = rng.standard_normal((3, 3)) + 2 * np.eye(3)
    out = net.forward(X)
    net.layers[0].params["W"][...] = net.layers[0].params["W"] @ np.linalg.inv(A)
    X2 = X @ A.T
    assert_close(net.forward(X2), out, rtol=1e-12, atol=1e-12, name="function preserved")
    assert_close(score.eta(net, X2, Y, loss), before, rtol=1e-9, name="eta after input reparam")


def test_invariance_general_hidden_reparameterisation(rng):
    """Linear chain: W1 -> A W1, b1 -> A b1, W2 -> W2 A^{-1} for a general invertible A."""
    net = mlp(rng, [3, 4, 2], act=None)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))   # singular F: pseudo-inverse path
    loss = mse()
    before = score.eta_exact_details(net, X, Y, loss)
    assert before.rank < before.F.shape[0]
    A = rng.standard_normal((4, 4)) + 2 * np.eye(4)
    p0, p1 = net.layers[0].params, net.layers[1].params
    p0["W"][...] = A @ p0["W"]
    p0["b"][...] = A @ p0["b"]
    p1["W"][...] = p1["W"] @ np.linalg.inv(A)
    assert_close(score.eta(net, X, Y, loss), before.eta, rtol=1e-9, name="eta after hidden reparam")


# ------------------------------------------------------------ CG and K-FAC paths
@pytest.mark.parametrize("metric,act", [("euclidean", "tanh"), ("euclidean", "rational"), ("true", "tanh")])
@pytest.mark.parametrize("damping", [1e-3, 0.1, 5.0])
def test_eta_cg_equals_exact(rng, metric, act, damping):
    net = mlp(rng, [3, 5, 3], act)
    X, Y = rng.standard_normal((10, 3)), rng.integers(0, 3, 10)
    loss = softmax_cross_entropy()
    e_exact = score.eta(net, X, Y, loss, "exact", damping, metric)
    e_cg = score.eta(net, X, Y, loss, "cg", damping, metric, tol=1e-12)
    assert_close(e_cg, e_exact, rtol=1e-8, name="eta cg vs exact")


def test_natural_gradient_cg_equals_dense_solve(rng):
    net, X, Y, loss = regression(rng, N=10, act="rational")
    u, g, value, info = natural_gradient(net, X, Y, loss, damping=0.3, tol=1e-12)
    F = exact(net, X, loss)
    assert info.converged and info.relative_residual <= 1e-12
    assert_rel_error(u, np.linalg.solve(F + 0.3 * np.eye(len(g)), g), 1e-10, "CG natural gradient")
    assert_close(value, mean_loss(net, X, Y, loss), rtol=1e-14, name="loss value")


def test_cg_solve_spd_warm_start_and_zero_rhs(rng):
    B = rng.standard_normal((12, 12))
    A = B @ B.T + 0.5 * np.eye(12)
    b = rng.standard_normal(12)
    x, info = cg_solve(lambda v: A @ v, b, tol=1e-13)
    assert info.converged and not info.indefinite
    assert_rel_error(x, np.linalg.solve(A, b), 1e-10, "cg vs solve")
    x2, info2 = cg_solve(lambda v: A @ v, b, tol=1e-13, x0=x)
    assert info2.iterations <= 1 and info2.converged
    z, infoz = cg_solve(lambda v: A @ v, np.zeros(12))
    assert np.all(z == 0) and infoz.iterations == 0


def test_cg_warns_instead_of_nan(rng):
    b = rng.standard_normal(6)
    with pytest.warns(CGWarning, match="p\\^T A p"):
        x, info = cg_solve(lambda v: -v, b)
    assert info.indefinite and np.all(np.isfinite(x))
    with pytest.warns(CGWarning, match="p\\^T A p"):
        x, info = cg_solve(lambda v: np.zeros_like(v), b)
    assert np.all(x == 0)
    A = np.diag(np.logspace(0, 6, 6))
    with pytest.warns(CGWarning, match="did not converge"):
        x, info = cg_solve(lambda v: A @ v, b, maxiter=2)
    assert not info.converged and info.iterations == 2 and np.all(np.isfinite(x))


def test_kfac_path_calls_kfac_eta(rng):
    from senn_ref import kfac
    net = Network([Dense(3, 2, rng, bias_std=0.5)])       # single dense layer, euclidean: K-FAC exact
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((9, 2))
    loss = mse()
    total, per_layer = kfac.kfac_eta(net, X, Y, loss, damping=0.0, metric="euclidean")
    assert_close(score.eta(net, X, Y, loss, curvature="kfac"), total, rtol=1e-14, name="wiring")
    assert_close(total, score.eta(net, X, Y, loss), rtol=1e-10, name="K-FAC = exact, single dense layer")


# ------------------------------------------------------------ errors
def test_errors(rng):
    net, X, Y, loss = regression(rng)
    with pytest.raises(ValueError, match="unknown curvature"):
        score.eta(net, X, Y, loss, curvature="hessian")
    with pytest.raises(TypeError, match="curvature"):
        score.eta(net, X, Y, loss, curvature=None)
    with pytest.raises(ValueError, match="unknown metric"):
        score.eta(net, X, Y, loss, metric="fisher")
    with pytest.raises(ValueError, match="unknown metric"):
        score.ceiling(net, X, Y, loss, metric="fisher")
    with pytest.raises(ValueError, match="damping"):
        score.eta(net, X, Y, loss, damping=-0.1)
    with pytest.raises(ValueError, match="damping"):
        score.eta(net, X, Y, loss, curvature="cg", damping=float("nan"))
    with pytest.raises(ValueError, match="unknown option"):
        score.eta(net, X, Y, loss, curvature="exact", tol=1e-3)
    with pytest.raises(ValueError, match="unknown option"):
        score.eta(net, X, Y, loss, curvature="cg", rcond=1e-3)
    Xbad = X.copy()
    Xbad[1, 2] = np.inf
    for curvature in ("exact", "cg"):
        with pytest.raises(ValueError, match="NaN or infinite"):
            score.eta(net, Xbad, Y, loss, curvature=curvature)
    with pytest.raises(ValueError, match="Y"):
        score.eta(net, X, Y[:3], loss)
    with pytest.raises(ValueError, match="x0"):
        score.eta(net, X, Y, loss, curvature="cg", damping=0.1, x0=np.zeros(3))
    with pytest.raises(ValueError, match="tol"):
        cg_solve(lambda v: v, np.ones(3), tol=0.0)


def test_bench_eta_smoke():
    """senn_ref.bench.eta runs; its exact and CG scores agree (CG tol 1e-8, cond < 1e2 here)."""
    from senn_ref.bench import eta as bench
    rows = bench.run(widths=(4, 8), repeats=1)
    by = {(r["width"], r["method"]): r for r in rows}
    for w in (4, 8):
        assert_close(by[(w, "cg")]["eta"], by[(w, "exact")]["eta"], rtol=1e-6, name=f"bench width {w}")
        assert by[(w, "kfac")]["seconds"] > 0


@pytest.mark.parametrize("gap", [20.0, 60.0, 70.0, 75.0, 100.0, 800.0])
def test_exact_eta_at_extreme_logits(gap):
    """Confidently wrong softmax labels (p_label ~ exp(-gap)) under the true metric: the exact
    path must still equal g^T (F + delta I)^-1 g from a dense solve (10-expansion-score.md 7).
    At these gaps sqrt(p_label) drops below the whitening cut-off, so the output-space
    evaluation is invalid and the parameter-space one must take over; 1e-8 is the accuracy
    of the dense solve on F with condition number < 1e3 here (F's entries are O(1))."""
    rng = np.random.default_rng(0)
    net = Network([Dense(2, 3, rng, bias_std=0.1)])
    net.layers[0].params["W"][:] = np.array([[gap, 0.0], [0.0, 0.0], [0.0, 0.0]])
    X = np.array([[1.0, 0.0], [0.5, 1.0]])
    y = np.array([1, 2])
    loss = softmax_cross_entropy()
    d = score.eta_exact_details(net, X, y, loss, damping=0.1, metric="true")
    F = exact(net, X, loss, metric="true")
    ref = d.g @ np.linalg.solve(F + 0.1 * np.eye(F.shape[0]), d.g)
    assert_close(d.eta, ref, rtol=1e-8, name=f"eta at logit gap {gap}")


def test_option_errors_name_the_problem():
    rng = np.random.default_rng(3)
    net = Network([Dense(2, 3, rng, bias_std=0.1), Tanh((3,)), Dense(3, 1, rng)])
    X, Y = rng.standard_normal((5, 2)), rng.standard_normal((5, 1))
    with pytest.raises(ValueError, match="unknown option"):
        score.eta(net, X, Y, mse(), curvature="kfac", tol=1e-3)
    with pytest.raises(ValueError, match="pi"):
        score.eta(net, X, Y, mse(), curvature="kfac", damping=0.1, damping_mode="exact", pi="bogus")
    with pytest.raises(ValueError, match="extra_grad"):
        natural_gradient(net, X, Y, mse(), damping=0.1, extra_grad=np.array([0.5]))
    assert score.eta(net, X.tolist(), Y, mse()) == pytest.approx(score.eta(net, X, Y, mse()), rel=1e-14)
