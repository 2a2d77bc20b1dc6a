"""Exact GGN, Jacobian and matrix-free Fisher products (senn-math section 11, claim 3).

Tolerances: quantities that are the same sums computed in a different order
(J^T e via backward vs J.T @ e, matrix-free F v vs dense F @ v) agree to a few
ulps of the largest term, so 1e-10 relative (2-norm) leaves a wide margin.
Finite differences are Richardson-extrapolated central differences with step
1e-4 (truncation O(h^4) ~ 1e-16, rounding ~ eps / h ~ 1e-12): 1e-8 relative.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref import fisher
from senn_ref.fisher import FisherOperator, exact, ggn_from_jacobian, jacobian, matvec
from senn_ref.gradcheck import central_difference
from senn_ref.layers.activations import Tanh
from senn_ref.layers.conv2d import Conv2D
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.network import Network
from senn_ref.testing import assert_close, assert_rel_error


def mlp(rng, sizes, act="tanh"):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, rng, bias_std=0.5))
        if i < len(sizes) - 2:
            layers.append(Tanh((b,)) if act == "tanh" else Rational(b, rng=rng))
    return Network(layers)


def problem(rng, loss_name, N=6, sizes=(3, 5, 4), act="tanh"):
    net = mlp(rng, list(sizes), act)
    X = rng.standard_normal((N, sizes[0]))
    K = sizes[-1]
    if loss_name == "mse":
        return net, X, rng.standard_normal((N, K)), mse()
    return net, X, rng.integers(0, K, N), softmax_cross_entropy()


def conv_net(rng):
    return Network([Conv2D(2, 3, 3, stride=2, padding=1, rng=rng, bias_std=0.3, in_hw=(5, 5)),
                    Tanh((3, 3, 3)),
                    Conv2D(3, 2, 2, rng=rng, bias_std=0.3, in_hw=(3, 3))])


# ---------------------------------------------------------------- Jacobian
@pytest.mark.parametrize("act", ["tanh", "rational"])
def test_jacobian_matches_finite_differences(rng, act):
    net, X, _, _ = problem(rng, "mse", act=act)
    J = jacobian(net, X)
    theta0 = net.get_flat()
    N, K, P = J.shape
    assert (N, K, P) == (X.shape[0], 4, net.num_params())

    def f(theta):
        net.set_flat(theta)
        try:
            return net.forward(X).reshape(N, K)
        finally:
            net.set_flat(theta0)

    for p in range(P):          # every column, i.e. every parameter direction
        unit = np.zeros(P)
        unit[p] = 1.0
        fd = central_difference(f, theta0, unit)
        assert_close(J[:, :, p], fd, rtol=1e-8, atol=1e-8 * np.abs(fd).max(initial=1.0),
                     name=f"J column {p}")


@pytest.mark.parametrize("act", ["tanh", "rational"])
def test_jacobian_transpose_matches_backward(rng, act):
    net, X, _, _ = problem(rng, "mse", act=act)
    J = jacobian(net, X)
    E = rng.standard_normal((X.shape[0], 4))
    net.forward(X)
    back = net.backward(E).flat_grad()
    assert_rel_error(back, np.einsum("nkp,nk->p", J, E), 1e-12, "J^T e via backward")


def test_jacobian_conv_matches_jvp(rng):
    net = conv_net(rng)
    X = rng.standard_normal((3, 2, 5, 5))
    J = jacobian(net, X)
    v = rng.standard_normal(net.num_params())
    net.forward(X)
    assert_rel_error(J @ v, net.jvp_flat(v).reshape(3, -1), 1e-12, "J v conv")


# ---------------------------------------------------------------- F v
CASES = [("mse", "euclidean"), ("mse", "true"), ("ce", "euclidean"), ("ce", "true"),
         ("mse", "empirical"), ("ce", "empirical")]


@pytest.mark.parametrize("act", ["tanh", "rational"])
@pytest.mark.parametrize("loss_name,metric", CASES)
def test_matvec_equals_dense(rng, act, loss_name, metric):
    net, X, Y, loss = problem(rng, loss_name, act=act)
    Yk = Y if metric == "empirical" else None
    F = exact(net, X, loss, metric=metric, Y=Yk)
    for _ in range(3):
        v = rng.standard_normal(net.num_params())
        assert_rel_error(matvec(net, X, loss, v, metric=metric, Y=Yk), F @ v, 1e-10,
                         f"F v {loss_name}/{metric}/{act}")


@pytest.mark.parametrize("loss_name,metric", [("mse", "euclidean"), ("ce", "true")])
def test_matvec_equals_dense_conv(rng, loss_name, metric):
    net = conv_net(rng)
    X = rng.standard_normal((4, 2, 5, 5))
    loss = mse() if loss_name == "mse" else softmax_cross_entropy()
    F = exact(net, X, loss, metric=metric)
    v = rng.standard_normal(net.num_params())
    assert_rel_error(matvec(net, X, loss, v, metric=metric), F @ v, 1e-10, f"conv F v {metric}")


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 6), n_in=st.integers(1, 4), hidden=st.integers(1, 5), K=st.integers(2, 4),
       seed=st.integers(0, 2**31 - 1), act=st.sampled_from(["tanh", "rational"]),
       metric=st.sampled_from(["euclidean", "true"]))
def test_matvec_equals_dense_random_shapes(N, n_in, hidden, K, seed, act, metric):
    rng = np.random.default_rng(seed)
    net = mlp(rng, [n_in, hidden, K], act)
    X = rng.standard_normal((N, n_in))
    loss = softmax_cross_entropy()
    F = exact(net, X, loss, metric=metric)
    v = rng.standard_normal(net.num_params())
    assert_rel_error(matvec(net, X, loss, v, metric=metric), F @ v, 1e-10, "F v random")


def test_true_metric_ce_equals_explicit_formula(rng):
    net, X, Y, loss = problem(rng, "ce", N=5)
    J = jacobian(net, X)
    out = net.forward(X)
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = sum(J[n].T @ (np.diag(p[n]) - np.outer(p[n], p[n])) @ J[n] for n in range(5)) / 5
    assert_rel_error(exact(net, X, loss, metric="true"), expected, 1e-12, "true CE GGN")


@pytest.mark.parametrize("loss_name", ["mse", "ce"])
def test_empirical_equals_outer_products_of_per_example_gradients(rng, loss_name):
    net, X, Y, loss = problem(rng, loss_name, N=5)
    out = net.forward(X)
    E = loss.output_grad(out, Y)
    grads = []
    for n in range(5):                      # per-example gradient by its own backward pass
        dY = np.zeros_like(E)
        dY[n] = E[n]
        grads.append(net.backward(dY).flat_grad())
    expected = sum(np.outer(gn, gn) for gn in grads) / 5
    assert_rel_error(exact(net, X, loss, metric="empirical", Y=Y), expected, 1e-12, "empirical Fisher")


@pytest.mark.parametrize("act", ["tanh", "rational"])
def test_fisher_symmetric_psd(rng, act):
    net, X, Y, loss = problem(rng, "ce", N=4, act=act)
    F = exact(net, X, loss, metric="true")
    s = np.linalg.eigvalsh(F)
    assert s[0] >= -1e-12 * s[-1], f"most negative eigenvalue {s[0]:.3e} vs largest {s[-1]:.3e}"
    # symmetry of the matrix-free operator itself (the dense F is symmetrised by construction)
    op = FisherOperator(net, X, loss, metric="true")
    v, w = rng.standard_normal((2, net.num_params()))
    lhs, rhs = w @ op.matvec(v), v @ op.matvec(w)
    assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + abs(rhs)), (lhs, rhs)
    assert v @ op.matvec(v) >= 0.0


@pytest.mark.parametrize("loss_name,metric", CASES)
def test_factor_reproduces_fisher(rng, loss_name, metric):
    net, X, Y, loss = problem(rng, loss_name)
    Yk = Y if metric == "empirical" else None
    B = fisher.ggn_factor(net, X, loss, metric=metric, Y=Yk)
    assert_rel_error(B.T @ B, exact(net, X, loss, metric=metric, Y=Yk), 1e-12, f"B^T B {metric}")


def test_ggn_from_jacobian_identity_metric_equals_none(rng):
    J = rng.standard_normal((4, 3, 7))
    M = np.broadcast_to(np.eye(3), (4, 3, 3))
    assert_close(ggn_from_jacobian(J, M), ggn_from_jacobian(J), rtol=1e-14, atol=1e-15, name="M=I")
    expected = sum(J[n].T @ J[n] for n in range(4)) / 4
    assert_rel_error(ggn_from_jacobian(J), expected, 1e-14, "GGN from J")


@pytest.mark.parametrize("shape,layout", [((1, 1, 1), "C"), ((4, 3, 7), "C"), ((13, 2, 40), "F"),
                                          ((9, 1, 64), "strided"), ((50, 1, 3001), "C")])
def test_identity_metric_gram_is_exactly_symmetric(rng, shape, layout):
    """M=None skips the (F + F^T)/2 pass because NumPy forms A^T A exactly symmetric; pin that
    (a NumPy change would make this fail), and that the result is what the symmetrised
    formula gives, bit for bit (derivations/09-fisher.md section 1)."""
    J = rng.standard_normal(shape)
    if layout == "F":
        J = np.asfortranarray(J)
    elif layout == "strided":
        J = rng.standard_normal(shape[:2] + (2 * shape[2],))[:, :, ::2]
    F = ggn_from_jacobian(J)
    worst = np.unravel_index(np.argmax(np.abs(F - F.T)), F.shape)
    assert np.array_equal(F, F.T), f"asymmetric at {worst}: {F[worst]!r} vs {F.T[worst]!r}"
    N, K, P = J.shape
    A = J.reshape(N * K, P)
    G = A.T @ A / N                              # the formula before the in-place division
    reference = 0.5 * (G + G.T)
    worst = np.unravel_index(np.argmax(np.abs(F - reference)), F.shape)
    assert np.array_equal(F, reference), f"worst entry {worst}: {F[worst]!r} vs {reference[worst]!r}"
    assert_rel_error(F, sum(J[n].T @ J[n] for n in range(N)) / N, 1e-13, "GGN from J")


def test_operator_damping_and_point_guard(rng):
    net, X, Y, loss = problem(rng, "mse")
    F = exact(net, X, loss)
    op = FisherOperator(net, X, loss, damping=0.7)
    v = rng.standard_normal(net.num_params())
    assert_rel_error(op.matvec(v), F @ v + 0.7 * v, 1e-10, "damped product")
    assert_rel_error(op.matvec(v), F @ v + 0.7 * v, 1e-10, "repeated product (no damping build-up)")
    net.forward(rng.standard_normal((9, 3)))        # someone else moves the layer caches
    assert_rel_error(op.ggn_matvec(v), F @ v, 1e-10, "product after a foreign forward")
    assert op.n_products == 3


# ---------------------------------------------------------------- errors
def test_errors(rng):
    net, X, Y, loss = problem(rng, "mse")
    P = net.num_params()
    with pytest.raises(ValueError, match="unknown metric"):
        exact(net, X, loss, metric="fisher")
    with pytest.raises(ValueError, match="needs the targets"):
        exact(net, X, loss, metric="empirical")
    with pytest.raises(ValueError, match="needs the targets"):
        matvec(net, X, loss, np.zeros(P), metric="empirical")
    with pytest.raises(ValueError, match="v: expected shape"):
        matvec(net, X, loss, np.zeros(P + 1))
    with pytest.raises(ValueError, match="v: expected"):
        matvec(net, X, loss, np.zeros((P, 1)))
    with pytest.raises(TypeError, match="floating"):
        matvec(net, X, loss, np.zeros(P, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        matvec(net, X, loss, np.full(P, np.nan))
    Xbad = X.copy()
    Xbad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        exact(net, Xbad, loss)
    with pytest.raises(ValueError, match="NaN"):
        FisherOperator(net, Xbad, loss)
    with pytest.raises(ValueError, match="empty"):
        jacobian(net, X[:0])
    with pytest.raises(ValueError, match="damping"):
        FisherOperator(net, X, loss, damping=-1.0)
    with pytest.raises(ValueError, match="M: expected shape"):
        ggn_from_jacobian(np.zeros((2, 3, 4)), np.zeros((2, 2, 2)))


def test_public_names():
    assert fisher.exact is exact and fisher.matvec is matvec and fisher.jacobian is jacobian
