"""Tests of the rational activation (derivations/05-rational.md)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.gradcheck import central_difference, check_layer
from senn_ref.layers.rational import (
    EPS, Rational, identity_param_partials, identity_scale, rational_dc, rational_dl,
    rational_dv, rational_dx, rational_partials, rational_value,
)
from senn_ref.testing import assert_close, assert_rel_error

U = np.finfo(float).eps  # unit roundoff * 2 = 2.2e-16


def make_layer(units, init, spatial, seed=0):
    return Rational(units, init=init, rng=np.random.default_rng(seed), spatial=spatial)


# ---- 1. gradient checks (JVP vs finite differences, VJP vs JVP) -------------------
@pytest.mark.parametrize("spatial", [(), (3, 4)])
@pytest.mark.parametrize("init", ["random", "identity"])
def test_gradcheck_layouts(spatial, init):
    rng = np.random.default_rng(1)
    layer = make_layer(5, init, spatial)
    X = 2.0 * rng.standard_normal((4, 5) + spatial)
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), units=st.integers(1, 5), conv=st.booleans(),
       hw=st.tuples(st.integers(1, 4), st.integers(1, 4)), scale=st.floats(0.05, 8.0),
       init=st.sampled_from(["random", "identity"]), seed=st.integers(0, 2**31 - 1))
def test_gradcheck_hypothesis(n, units, conv, hw, scale, init, seed):
    rng = np.random.default_rng(seed)
    spatial = hw if conv else ()
    layer = Rational(units, init=init, rng=rng, spatial=spatial)
    X = scale * rng.standard_normal((n, units) + spatial)
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


def test_pure_partials_match_finite_differences_incl_large_x():
    """Each public partial equals a central difference of ``rational_value`` in that
    argument, on both branches of the basis (|x| <= 1 and |x| > 1, up to 1e4)."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-1, 1, 20), rng.uniform(1, 20, 10), -rng.uniform(1, 1e4, 10)])
    v, c, l = rng.standard_normal((3, x.size))
    # the map is elementwise: scale the direction so each entry steps by h * max(1, |arg_i|)
    def fd_along(f, a):
        u = np.maximum(1.0, np.abs(a))
        return central_difference(f, a, u / u.max()) * u.max() / u

    fd = {
        "x": fd_along(lambda z: rational_value(z, v, c, l), x),
        "v": fd_along(lambda z: rational_value(x, z, c, l), v),
        "c": fd_along(lambda z: rational_value(x, v, z, l), c),
        "l": fd_along(lambda z: rational_value(x, v, c, z), l),
    }
    got = {"x": rational_dx(x, v, c, l), "v": rational_dv(x, v, c, l),
           "c": rational_dc(x, v, c, l), "l": rational_dl(x, v, c, l)}
    for k in fd:
        # Richardson error O(h^4) (h = 1e-4 relative) plus roundoff ~ U |sigma| / h ~ 1e-12 |x|
        assert_close(got[k], fd[k], rtol=1e-8, atol=1e-10 * np.maximum(1.0, np.abs(x)),
                     name=f"d/d{k}")


def test_stable_basis_matches_naive_formula():
    """The overflow-free evaluation equals the textbook formula where the latter is safe."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-50, 50, 200), [-1.0, 1.0, 0.0, 1 - 1e-12, 1 + 1e-12]])
    v, c, l = 0.7, -1.3, 0.4
    n = np.sqrt(v * v + c * c + l * l + EPS)
    q = 1 + x * x
    assert_close(rational_value(x, v, c, l), ((2 * v * x + c) / q + l * x) / n, rtol=8 * U, atol=8 * U)
    naive_dx = (2 * v * (1 - x * x) / q**2 - 2 * c * x / q**2 + l) / n
    assert_close(rational_dx(x, v, c, l), naive_dx, rtol=16 * U, atol=16 * U, name="dsigma/dx")


def test_public_functions_equal_layer_passes():
    rng = np.random.default_rng(4)
    layer = make_layer(3, "random", (2, 2))
    X = rng.standard_normal((2, 3, 2, 2))
    Y = layer.forward(X)
    b = [layer.params[k][None, :, None, None] for k in "vcl"]
    assert np.array_equal(Y, rational_value(X, *b))
    dY = rng.standard_normal(Y.shape)
    dX, g = layer.backward(dY)
    assert np.array_equal(dX, dY * rational_dx(X, *b))
    for k, f in zip("vcl", (rational_dv, rational_dc, rational_dl)):
        assert_close(g[k], (dY * f(X, *b)).sum(axis=(0, 2, 3)), rtol=1e-14, name=k)


def test_random_init_draws_standard_normals_in_order_v_c_l():
    layer = Rational(4, init="random", rng=np.random.default_rng(12), spatial=(2, 3))
    draws = np.random.default_rng(12).standard_normal((3, 4))
    for i, k in enumerate("vcl"):
        assert np.array_equal(layer.params[k], draws[i]), k
    assert layer.in_shape == (4, 2, 3) and layer.num_params() == 12
    ident = Rational(4, init="identity")
    assert ident.in_shape == (4,)
    assert [ident.params[k].tolist() for k in "vcl"] == [[0.0] * 4, [0.0] * 4, [1.0] * 4]


# ---- 2. the identity point (0, 0, 1) --------------------------------------------------
def test_identity_point_value_and_all_partials():
    x = np.concatenate([np.linspace(-5, 5, 41), [1e-300, -3e5, 7e150]])
    k = 1.0 / np.sqrt(1.0 + EPS)
    assert identity_scale() == pytest.approx(k, rel=1e-16, abs=0)
    layer = Rational(x.size, init="identity")
    assert_close(layer.forward(x[None, :])[0], x * k, rtol=1e-15, name="value")
    sigma, d_x, d_v, d_c, d_l = rational_partials(x, 0.0, 0.0, 1.0)
    q = 1.0 + x * x  # finite for every x used here
    assert_close(sigma, x / np.sqrt(1 + EPS), rtol=1e-15, name="sigma")
    assert_close(d_x, np.full_like(x, k), rtol=1e-15, name="d/dx")
    assert_close(d_v, 2 * x / q / np.sqrt(1 + EPS), rtol=1e-15, name="d/dv")
    assert_close(d_c, 1 / q / np.sqrt(1 + EPS), rtol=1e-15, name="d/dc")
    # d/dl = x/n - l sigma/n^2 = eps x/(1+eps)^{3/2}: tiny but to full relative accuracy
    assert_close(d_l, EPS * x / (1 + EPS) ** 1.5, rtol=1e-15, name="d/dl")
    for got, want in zip(identity_param_partials(x), (d_v, d_c, d_l)):
        assert_close(got, want, rtol=1e-15, name="identity_param_partials")


def test_identity_insertion_needs_the_sqrt_eps_fold():
    """At the identity point the layer is x -> x/sqrt(1+eps): off by 5e-9 relative unless the
    consumer folds sqrt(1+eps) in, after which it is exact to rounding."""
    x = np.random.default_rng(5).standard_normal((7, 4))
    y = Rational(4, init="identity").forward(x)
    unfolded = np.abs(y - x).max() / np.abs(x).max()
    assert 0.45 * EPS < unfolded < 0.55 * EPS
    assert_close(y * np.sqrt(1.0 + EPS), x, rtol=4 * U, name="folded")


# ---- 3. scale invariance and the Euler relation ---------------------------------------
@pytest.mark.parametrize("theta_scale", [1.0, 1e-3])
@pytest.mark.parametrize("k", [3.0, 0.25, -2.0])
def test_scale_invariance_quantified(theta_scale, k):
    """sigma(k theta) = sign(k) sqrt((|theta|^2 + eps)/(|theta|^2 + eps/k^2)) sigma(theta)."""
    rng = np.random.default_rng(6)
    x = 3 * rng.standard_normal(50)
    v, c, l = theta_scale * rng.standard_normal(3)
    s0 = v * v + c * c + l * l
    ratio = np.sign(k) * np.sqrt((s0 + EPS) / (s0 + EPS / k**2))
    s1, s2 = rational_value(x, v, c, l), rational_value(x, k * v, k * c, k * l)
    assert_close(s2, ratio * s1, rtol=1e-14, atol=1e-15 * np.abs(s1).max(), name="scaled")
    # the eps effect: |ratio| - 1 ~ eps (1 - 1/k^2) / (2 |theta|^2); eps = 0 is exact invariance
    effect = abs(ratio) - 1.0
    if theta_scale == 1.0:   # |theta|^2 >> eps: first order in eps/|theta|^2 (next term ~1e-8 rel)
        assert effect == pytest.approx(EPS * (1 - 1 / k**2) / (2 * s0), rel=1e-6)
    else:                    # |theta|^2 ~ 1e-6: the eps effect is percent-level
        assert abs(effect) > 1e-3
    assert_close(rational_value(x, k * v, k * c, k * l, eps=0.0),
                 np.sign(k) * rational_value(x, v, c, l, eps=0.0), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("theta_scale", [1.0, 1e-3, 30.0])
def test_euler_relation(theta_scale):
    """v dsigma/dv + c dsigma/dc + l dsigma/dl = eps sigma / (v^2 + c^2 + l^2 + eps)."""
    rng = np.random.default_rng(7)
    x = 3 * rng.standard_normal(400)
    v, c, l = theta_scale * rng.standard_normal(3)
    sigma, _, d_v, d_c, d_l = rational_partials(x, v, c, l)
    lhs = v * d_v + c * d_c + l * d_l
    rhs = EPS * sigma / (v * v + c * c + l * l + EPS)
    # rounding: each product carries ~2U relative; bound the sum of magnitudes
    mags = np.abs(v * d_v) + np.abs(c * d_c) + np.abs(l * d_l)
    assert_close(lhs, rhs, rtol=0.0, atol=8 * U * mags.max(), name="Euler")
    # non-trivial: the relation resolves the eps term, it is not just "lhs ~ 0"
    if theta_scale <= 1.0:
        assert_rel_error(lhs, rhs, 1e-6 if theta_scale == 1.0 else 1e-10, name="Euler relative")


def test_param_gradient_nearly_orthogonal_to_theta():
    """grads . theta = eps/n^2 * sum dY sigma per unit; cosine with theta ~ 1e-8."""
    rng = np.random.default_rng(8)
    layer = make_layer(6, "random", (3, 3), seed=8)
    X = 2 * rng.standard_normal((5, 6, 3, 3))
    Y = layer.forward(X)
    dY = rng.standard_normal(Y.shape)
    _, g = layer.backward(dY)
    G = np.stack([g[k] for k in "vcl"], axis=1)
    T = np.stack([layer.params[k] for k in "vcl"], axis=1)
    s = (T**2).sum(axis=1) + EPS
    dot = (G * T).sum(axis=1)
    assert_close(dot, EPS / s * (dY * Y).sum(axis=(0, 2, 3)), rtol=0.0,
                 atol=64 * U * (np.abs(G) * np.abs(T)).sum(axis=1).max() * X.size, name="g.theta")
    cos = np.abs(dot) / (np.linalg.norm(G, axis=1) * np.linalg.norm(T, axis=1))
    assert cos.max() < 1e-7


# ---- 4. layouts and passes --------------------------------------------------------------
def test_conv_layout_sums_param_grads_over_space():
    """The conv layer equals the dense layer applied to every (n, h, w) position."""
    rng = np.random.default_rng(9)
    conv = make_layer(4, "random", (3, 5), seed=9)
    dense = Rational(4, init="identity")
    dense.params = {k: p.copy() for k, p in conv.params.items()}
    X = rng.standard_normal((2, 4, 3, 5))
    dY = rng.standard_normal(X.shape)
    flat = lambda a: np.moveaxis(a, 1, -1).reshape(-1, 4)  # noqa: E731
    assert np.array_equal(flat(conv.forward(X)), dense.forward(flat(X)))
    dXc, gc = conv.backward(dY)
    dXd, gd = dense.backward(flat(dY))
    assert np.array_equal(flat(dXc), dXd)
    for k in "vcl":
        assert_close(gc[k], gd[k], rtol=1e-13, name=k)
    # and the conv grads are a sum over 2*3*5 = 30 positions, not a mean
    assert_close(gc["c"], (dY * rational_dc(X, *[conv.params[k][None, :, None, None] for k in "vcl"]))
                 .sum(axis=(0, 2, 3)), rtol=1e-13, name="sum")


def test_jvp_pieces_and_zero_tangent():
    rng = np.random.default_rng(10)
    layer = make_layer(3, "random", ())
    X = rng.standard_normal((4, 3))
    layer.forward(X)
    assert np.array_equal(layer.jvp(None, None), np.zeros((4, 3)))
    dv = rng.standard_normal(3)
    b = [layer.params[k][None, :] for k in "vcl"]
    assert_close(layer.jvp(None, {"v": dv}), rational_dv(X, *b) * dv, rtol=1e-15, name="v only")


def test_huge_inputs_finite_without_warnings():
    x = np.array([[-1e300, -1000.0, 1000.0, 1e300]])
    layer = make_layer(4, "random", (), seed=11)
    with np.errstate(all="raise"):
        y = layer.forward(x)
        dX, g = layer.backward(np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dX).all()
    assert all(np.isfinite(a).all() for a in g.values())
    # far out sigma -> l x / n and dsigma/dx -> l / n
    v, c, l = (layer.params[k] for k in "vcl")
    n = np.sqrt(v * v + c * c + l * l + EPS)
    assert_close(y[0, [0, 3]], (l * x[0] / n)[[0, 3]], rtol=1e-15, name="asymptote")
    assert_close(dX[0, [0, 3]], (l / n)[[0, 3]], rtol=1e-15, name="slope asymptote")


# ---- 5. errors ------------------------------------------------------------------------
def test_errors():
    layer = Rational(3, init="identity")
    with pytest.raises(ValueError, match="expected shape"):
        layer.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dimensions"):
        Rational(3, init="identity", spatial=(2, 2)).forward(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="floating"):
        layer.forward(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        layer.forward(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="unknown Rational init"):
        Rational(3, init="zeros")
    with pytest.raises(ValueError, match="needs rng"):
        Rational(3, init="random")
    with pytest.raises(TypeError, match="Generator"):
        Rational(3, init="random", rng=np.random.RandomState(0))
    with pytest.raises(TypeError, match="Rational rng: expected numpy.random.Generator"):
        Rational(3, init="identity", rng=0)
    with pytest.raises(ValueError, match="spatial"):
        Rational(3, init="identity", spatial=(4,))
    with pytest.raises(ValueError, match=">= 1"):
        Rational(0, init="identity")
    with pytest.raises(RuntimeError, match="forward"):
        Rational(3, init="identity").backward(np.zeros((1, 3)))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected shape"):
        layer.backward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown parameter"):
        layer.jvp(None, {"W": np.zeros(3)})
    with pytest.raises(ValueError, match="expected shape"):
        layer.jvp(None, {"v": np.zeros(4)})
    with pytest.raises(ValueError, match="do not broadcast"):
        rational_value(np.zeros(3), np.zeros(2), 0.0, 1.0)
    with pytest.raises(ValueError, match="no normalisation"):
        rational_value(np.zeros(3), 0.0, 0.0, 0.0, eps=0.0)
