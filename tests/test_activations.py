"""Tests of the tanh and SiLU layers (derivations/06-activations.md)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.gradcheck import central_difference, check_layer
from senn_ref.layers.activations import (
    SiLU, Tanh, _tanh_and_slope, silu, silu_derivative, stable_sigmoid, tanh_derivative,
)
from senn_ref.testing import assert_close

U = np.finfo(float).eps
LAYERS = {"tanh": Tanh, "silu": SiLU}


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("in_shape", [(16,), (3, 4, 5)])
def test_gradcheck_layouts(kind, in_shape):
    rng = np.random.default_rng(0)
    layer = LAYERS[kind](in_shape)
    X = 2.0 * rng.standard_normal((3,) + in_shape)
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(sorted(LAYERS)), n=st.integers(1, 4),
       in_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
       scale=st.floats(0.05, 10.0), seed=st.integers(0, 2**31 - 1))
def test_gradcheck_hypothesis(kind, n, in_shape, scale, seed):
    rng = np.random.default_rng(seed)
    layer = LAYERS[kind](in_shape)
    # |x| <= 6 keeps |phi'| >= 2.5e-5, so the finite-difference roundoff U |phi| / h ~ 4e-13 stays
    # far below 1e-6 relative (in the flat tails FD cannot resolve phi'; those are tested exactly)
    X = np.clip(scale * rng.standard_normal((n,) + in_shape), -6.0, 6.0)
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


def test_values_against_textbook_formulas():
    x = np.linspace(-30, 30, 241)
    # moderate range: the naive formulas are accurate here (exp(30) ~ 1e13, no overflow)
    assert_close(silu(x), x / (1 + np.exp(-x)), rtol=4 * U, atol=1e-300, name="silu")
    sig = 1 / (1 + np.exp(-x))
    assert_close(silu_derivative(x), sig + x * sig * (1 - sig), rtol=1e-12, atol=1e-15, name="silu'")
    # relative accuracy in the tails too (1 - tanh^2 would give 0 beyond |x| ~ 19)
    assert_close(tanh_derivative(x), 1 / np.cosh(x) ** 2, rtol=16 * U, atol=1e-300, name="tanh'")
    layer = Tanh((x.size,))
    assert np.array_equal(layer.forward(x[None]), np.tanh(x)[None])


def _tanh_grid():
    """|x| from 5e-324 to the largest float, both signs: denormal/tiny (tanh x = x), the
    cancellation zone near 0, the bend, the tails where tanh rounds to +-1 but the slope
    does not, the subnormal slopes (|x| > 354) and beyond."""
    rng = np.random.default_rng(7)
    a = np.concatenate([[5e-324, 1e-310], np.logspace(-300, -9, 60), np.logspace(-9, np.log10(0.35), 300),
                        rng.uniform(0.35, 5, 400), rng.uniform(5, 20, 300), rng.uniform(20, 354, 200),
                        rng.uniform(354, 380, 100), np.logspace(np.log10(380), 308, 40),
                        [np.finfo(float).max]])
    return np.concatenate([a, -a])


def _max_ulps(got, ref, x, name):
    """Largest |got - ref| in units of the last place of ref rounded to float64 (ref in
    long double: 11 more bits than float64 on x86, so its own error is ~1/2000 ulp)."""
    with np.errstate(under="ignore"):
        err = np.abs(got.astype(np.longdouble) - ref) / np.spacing(np.abs(ref.astype(np.float64)))
    worst = np.argsort(err)[-3:][::-1]
    print(f"{name}: worst ulps " + ", ".join(f"{err[i]:.2f} at x={x[i]!r}" for i in worst))
    return float(err.max())


def _tanh_references(x):
    xl = x.astype(np.longdouble)
    with np.errstate(over="ignore", under="ignore"):
        return np.tanh(xl), 1 / np.cosh(xl) ** 2          # cosh overflows to inf -> slope 0


def test_tanh_and_slope_to_a_few_ulps_everywhere():
    """tanh (np.tanh) within 2 ulp and the slope 4e/(1+e)^2 within 5 ulp, relative, from
    5e-324 to the largest float (derivations/06-activations.md section 1 has the measured
    table, also for the one-expm1 alternative)."""
    x = _tanh_grid()
    ref_y, ref_s = _tanh_references(x)
    with np.errstate(all="raise", under="ignore"):
        y, s = _tanh_and_slope(x)
    assert _max_ulps(y, ref_y, x, "tanh") <= 2.0
    assert _max_ulps(s, ref_s, x, "slope") <= 5.0
    layer = Tanh((x.size,))
    assert np.array_equal(layer.forward(x[None])[0], y)
    assert np.array_equal(tanh_derivative(x), s)


def test_tanh_accuracy_test_rejects_naive_formulas():
    """The bounds above have teeth: (1 - e)/(1 + e) with e = exp(-2|x|) cancels near 0 and
    1 - tanh^2 cancels in the tails, each by many ulps on the same grid."""
    x = _tanh_grid()
    ref_y, ref_s = _tanh_references(x)
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(-2 * np.abs(x))
        naive_y = np.sign(x) * (1 - e) / (1 + e)
    assert _max_ulps(naive_y, ref_y, x, "naive tanh") > 1e6
    assert _max_ulps(1 - np.tanh(x) ** 2, ref_s, x, "naive slope") > 1e6


def test_tanh_special_values():
    """-0.0 keeps its sign, NaN propagates (the internal evaluation; the layer refuses NaN),
    the smallest subnormal maps to itself with slope 1, and the buffers are reused safely."""
    x = np.array([0.0, -0.0, np.nan, 5e-324, -5e-324, 360.0, -360.0])
    y, s = _tanh_and_slope(x)
    assert np.array_equal(y, [0.0, -0.0, np.nan, 5e-324, -5e-324, 1.0, -1.0], equal_nan=True)
    assert np.array_equal(np.signbit(y), [False, True, False, False, True, False, True])
    assert np.array_equal(s[[0, 1, 3, 4]], np.ones(4)) and np.isnan(s[2])
    assert s[5] == s[6] and 0 < s[5] < np.finfo(float).tiny   # 4 exp(-720) = 9e-313: subnormal, not 0
    layer = Tanh((2,))
    X1, X2 = np.array([[0.5, -3.0]]), np.array([[2.0, 0.1]])
    Y1 = layer.forward(X1)
    d1 = layer.backward(np.ones((1, 2)))[0]
    layer.forward(X2)
    d2 = layer.backward(np.ones((1, 2)))[0]
    assert np.array_equal(Y1, _tanh_and_slope(X1)[0])          # Y1 is not overwritten
    assert np.array_equal(d1, _tanh_and_slope(X1)[1]) and np.array_equal(d2, _tanh_and_slope(X2)[1])
    import copy
    twin = copy.deepcopy(layer)
    assert "_buffers" not in twin.__dict__ and np.array_equal(twin.backward(np.ones((1, 2)))[0], d2)


def test_derivatives_match_finite_differences():
    x = np.random.default_rng(1).uniform(-6, 6, 50)
    u = np.ones_like(x)
    assert_close(silu_derivative(x), central_difference(silu, x, u), rtol=1e-9, atol=1e-10, name="silu'")
    assert_close(tanh_derivative(x), central_difference(np.tanh, x, u), rtol=1e-9, atol=1e-10, name="tanh'")


def test_sigmoid_tails_keep_relative_accuracy():
    """sigmoid(-40) = exp(-40)/(1+exp(-40)) to full relative accuracy (1 - sigmoid(40) would give 0)."""
    x = np.array([-40.0, -300.0, -700.0])
    assert_close(stable_sigmoid(x), np.exp(x) / (1 + np.exp(x)), rtol=4 * U, name="tail")
    z = np.linspace(-20, 20, 81)
    assert_close(stable_sigmoid(z) + stable_sigmoid(-z), np.ones_like(z), rtol=2 * U, name="symmetry")


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_extreme_inputs_finite_without_warnings(kind):
    # up to the largest float: 2|x| overflows beyond 9e307, so exp(-2|x|) may not be formed
    big = np.finfo(np.float64).max
    x = np.array([[-1e300, -1000.0, -745.5, 0.0, 745.5, 1000.0, 1e300, -big, big]])
    layer = LAYERS[kind]((x.shape[1],))
    with np.errstate(all="raise"):
        y = layer.forward(x)
        dX, g = layer.backward(np.ones_like(y))
        j = layer.jvp(np.ones_like(x))
    assert g == {}
    assert np.isfinite(y).all() and np.isfinite(dX).all()
    assert np.array_equal(dX, j)
    if kind == "silu":
        # x sigmoid(x): exactly x for x >= 1000 (sigmoid rounds to 1) and 0 at -1000
        assert_close(y[0, [0, 1, 3, 5, 6, 7, 8]], np.array([0.0, 0.0, 0.0, 1000.0, 1e300, 0.0, big]),
                     rtol=0, atol=0)
        assert_close(dX[0, [0, 1, 5, 6, 7, 8]], np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0]), rtol=0, atol=0)
    else:
        assert_close(y[0], np.sign(x[0]), rtol=0, atol=0)
        assert_close(dX[0, [0, 1, 5, 6, 7, 8]], np.zeros(6), rtol=0, atol=0)
        with np.errstate(all="raise"):
            assert np.array_equal(tanh_derivative(x), dX)


def test_jvp_without_tangent_is_zero_and_input_grad_optional():
    layer = SiLU((2, 3))
    X = np.random.default_rng(2).standard_normal((4, 2, 3))
    layer.forward(X)
    assert np.array_equal(layer.jvp(None), np.zeros(X.shape))
    dX, g = layer.backward(np.ones(X.shape), need_input_grad=False)
    assert dX is None and g == {}
    assert layer.num_params() == 0 and layer.output_shape((2, 3)) == (2, 3)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_errors(kind):
    cls = LAYERS[kind]
    layer = cls((3,))
    with pytest.raises(ValueError, match="expected shape"):
        layer.forward(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="floating"):
        layer.forward(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(np.array([[0.0, np.inf, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        layer.forward(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="in_shape"):
        cls(16)
    with pytest.raises(ValueError, match="in_shape"):
        cls(())
    with pytest.raises(ValueError, match=">= 1"):
        cls((3, 0))
    with pytest.raises(RuntimeError, match="forward"):
        cls((3,)).jvp(np.zeros((1, 3)))
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected shape"):
        layer.backward(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown parameter"):
        layer.jvp(None, {"v": np.zeros(3)})
    with pytest.raises(TypeError, match="floating"):
        silu(np.arange(3))


def test_compiled_kernel_tanh_to_a_few_ulps_everywhere():
    """The compiled whole-network kernel's tanh (one expm1(2|x|) per element,
    derivations/06-activations.md section 1) on the same grid: tanh <= 3 ulp, slope <= 5 ulp,
    -0.0 and NaN kept (measured 2.05 and 3.6 against mpmath)."""
    pytest.importorskip("numba")
    from senn_ref.kernels.sequential_numba import TANH, _elementwise
    x = np.concatenate([_tanh_grid(), [0.0, -0.0, np.nan]])[None]
    y, s = np.empty_like(x), np.empty_like(x)
    _elementwise(TANH, x, y, s)
    ref_y, ref_s = _tanh_references(x[0, :-3])
    assert _max_ulps(y[0, :-3], ref_y, x[0, :-3], "kernel tanh") <= 3.0
    assert _max_ulps(s[0, :-3], ref_s, x[0, :-3], "kernel slope") <= 5.0
    assert np.array_equal(np.signbit(y[0, -3:-1]), [False, True]) and np.array_equal(s[0, -3:-1], [1.0, 1.0])
    assert np.isnan(y[0, -1]) and np.isnan(s[0, -1])
