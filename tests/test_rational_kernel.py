"""The fused Rational kernels: Numba equals the NumPy twin, and the layer is correct on
both backends (derivations/05-rational.md "Kernel")."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref import backend as backend_mod
from senn_ref.gradcheck import check_layer
from senn_ref.kernels import rational_kernels
from senn_ref.kernels import rational_numpy
from senn_ref.layers.rational import EPS, Rational
from senn_ref.testing import assert_close

NB, NP = rational_kernels("numba"), rational_kernels("numpy")
NAMES = ("sigma", "d/dx", "d/dv", "d/dc", "d/dl")
# Entries below 1e-300 arise only where w = 1/(1+x^2) and p underflow (|x| > ~1e150):
# there the float64 result is subnormal or zero and carries no relative accuracy, so the
# comparison is relative (1e-12) above that floor and absolute (1e-300) below it.
FLOOR = 1e-300
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.nextafter(1.0, 2.0), np.nextafter(-1.0, -2.0),
                    np.nextafter(1.0, 0.0), 1e-300, -5e-324, 1e200, -1e200, 3e5, -7e150])


def inputs(rng, shape):
    """Random entries on both branches (|x| <= 1 and |x| > 1, up to 1e200) plus SPECIAL values."""
    X = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
    big = rng.random(shape) < 0.05
    X[big] = rng.choice([-1.0, 1.0], big.sum()) * 10.0 ** rng.uniform(10, 200, big.sum())
    flat = X.reshape(-1)
    k = min(flat.size, SPECIAL.size)
    flat[rng.choice(flat.size, k, replace=False)] = SPECIAL[:k]
    return X


def params(rng, U, kind):
    """``(v, c, l)`` of shape (U,): N(0,1), the identity point, tiny (|theta|^2 ~ eps) or mixed."""
    v, c, l = rng.standard_normal((3, U))
    if kind == "identity":
        v, c, l = np.zeros(U), np.zeros(U), np.ones(U)
    elif kind == "tiny":
        v, c, l = 1e-4 * v, 1e-4 * c, 1e-4 * l
    elif kind == "mixed":       # unit 0 at the identity point, unit 1 (if any) with c = l = 0
        v[0], c[0], l[0] = 0.0, 0.0, 1.0
        if U > 1:
            c[1] = l[1] = 0.0
    return v, c, l


def compare_forward(X, v, c, l, eps=EPS):
    out_nb = NB["rational_forward"](X, v, c, l, eps)
    out_np = NP["rational_forward"](X, v, c, l, eps)
    for a, b, name in zip(out_nb, out_np, NAMES):
        assert a.shape == X.shape
        assert_close(a, b, rtol=1e-12, atol=FLOOR, name=f"numba vs numpy {name}")
    return out_nb, out_np


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), units=st.integers(1, 7), S=st.sampled_from([1, 2, 5, 16, 33]),
       kind=st.sampled_from(["random", "identity", "tiny", "mixed"]), seed=st.integers(0, 2**31 - 1))
def test_forward_numba_equals_twin(n, units, S, kind, seed):
    rng = np.random.default_rng(seed)
    X = inputs(rng, (n, units, S))
    compare_forward(X, *params(rng, units, kind))


def test_forward_bitwise_equal_on_special_values():
    """Both backends execute the same IEEE operations in the same order (no fastmath, no FMA),
    so the results are not just close but identical, including at x = 0, +-1, 1e200."""
    rng = np.random.default_rng(3)
    for U, S in ((4, 1), (3, 20)):
        X = inputs(rng, (6, U, S))
        for kind in ("random", "identity", "tiny", "mixed"):
            out_nb, out_np = compare_forward(X, *params(rng, U, kind))
            for a, b, name in zip(out_nb, out_np, NAMES):
                assert np.array_equal(a, b), f"{kind} {name}: max diff {np.abs(a - b).max():.3e}"


def test_forward_eps_zero_and_identity_values():
    rng = np.random.default_rng(4)
    X = inputs(rng, (3, 2, 8))
    compare_forward(X, *params(rng, 2, "random"), eps=0.0)
    # at the identity point sigma = x/sqrt(1+eps) and d/dl = eps x/(1+eps)^1.5 on both branches
    sigma, d_x, _, _, d_l = NB["rational_forward"](X, *params(rng, 2, "identity"), EPS)
    assert_close(sigma, X / np.sqrt(1 + EPS), rtol=1e-15, name="identity sigma")
    assert_close(d_x, np.full(X.shape, 1 / np.sqrt(1 + EPS)), rtol=1e-15, name="identity d/dx")
    assert_close(d_l, EPS * X / (1 + EPS) ** 1.5, rtol=1e-15, atol=FLOOR, name="identity d/dl")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), units=st.integers(1, 6), S=st.sampled_from([1, 3, 16]),
       need=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_backward_numba_equals_twin(n, units, S, need, seed):
    rng = np.random.default_rng(seed)
    X = inputs(rng, (n, units, S))
    partials = NP["rational_forward"](X, *params(rng, units, "random"), EPS)[1:]
    dS = rng.standard_normal(X.shape)
    dX_nb, *g_nb = NB["rational_backward"](dS, *partials, need)
    dX_np, *g_np = NP["rational_backward"](dS, *partials, need)
    if need:   # one product per entry: identical
        assert_close(dX_nb, dX_np, rtol=0.0, atol=0.0, name="dX")
    else:
        assert dX_np is None
    # the sums differ only in order (serial vs pairwise): bounded by (#terms) u sum|terms|,
    # with #terms <= 96 that is < 2.2e-14 sum|terms|; allow 1e-12 of that scale
    for a, b, d, name in zip(g_nb, g_np, partials[1:], "vcl"):
        scale = np.abs(dS * d).sum(axis=(0, 2))
        assert np.all(np.abs(a - b) <= 1e-12 * scale + FLOOR), (name, a, b, scale)


# ---- the layer on both backends ---------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("spatial", [(), (3, 4)])
@pytest.mark.parametrize("init", ["random", "identity"])
def test_gradcheck_both_backends(backend, spatial, init):
    rng = np.random.default_rng(5)
    layer = Rational(5, init=init, rng=rng, spatial=spatial, backend=backend)
    X = 2.0 * rng.standard_normal((4, 5) + spatial)
    X.reshape(-1)[:3] = [0.0, 1.0, -1.0]
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), units=st.integers(1, 5), conv=st.booleans(),
       hw=st.tuples(st.integers(1, 4), st.integers(1, 4)), backend=st.sampled_from(["numba", "numpy"]),
       seed=st.integers(0, 2**31 - 1))
def test_gradcheck_hypothesis_both_backends(n, units, conv, hw, backend, seed):
    rng = np.random.default_rng(seed)
    spatial = hw if conv else ()
    layer = Rational(units, init="random", rng=rng, spatial=spatial, backend=backend)
    res = check_layer(layer, 3.0 * rng.standard_normal((n, units) + spatial), rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


def test_layer_backends_agree_and_accept_noncontiguous_input():
    rng = np.random.default_rng(6)
    a = Rational(4, init="random", rng=np.random.default_rng(0), spatial=(5, 3), backend="numba")
    b = Rational(4, init="random", rng=np.random.default_rng(0), spatial=(5, 3), backend="numpy")
    X = inputs(rng, (2, 4, 3, 5)).transpose(0, 1, 3, 2)          # non-contiguous (2, 4, 5, 3)
    assert_close(a.forward(X), b.forward(X), rtol=1e-12, atol=FLOOR, name="forward")
    dY = rng.standard_normal(X.shape)[..., ::-1]                   # non-contiguous cotangent
    (dXa, ga), (dXb, gb) = a.backward(dY), b.backward(dY)
    assert_close(dXa, dXb, rtol=0.0, atol=0.0, name="dX")
    for k in "vcl":
        scale = np.abs(dY * a._cache[k]).sum(axis=(0, 2, 3))
        assert np.all(np.abs(ga[k] - gb[k]) <= 1e-12 * scale), k
    assert a.backward(dY, need_input_grad=False)[0] is None
    assert b.backward(dY, need_input_grad=False)[0] is None
    tangent = {"v": rng.standard_normal(4)}
    assert_close(a.jvp(X, tangent), b.jvp(X, tangent), rtol=1e-12, atol=FLOOR, name="jvp")


def test_default_backend_follows_switch_at_call_time(monkeypatch):
    calls = []
    real = rational_numpy.rational_forward_numpy

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(rational_numpy, "rational_forward_numpy", spy)
    layer = Rational(3, init="identity")            # backend=None
    X = np.ones((2, 3))
    with backend_mod.using("numpy"):
        layer.forward(X)
    assert len(calls) == 1
    with backend_mod.using("numba"):
        layer.forward(X)
    assert len(calls) == 1                           # numba path did not call the twin
    Rational(3, init="identity", backend="numpy").forward(X)
    assert len(calls) == 2


def test_unknown_backend_rejected():
    with pytest.raises(ValueError, match="unknown backend"):
        Rational(3, init="identity", backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        rational_kernels("gpu")
