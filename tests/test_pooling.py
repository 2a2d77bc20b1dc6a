"""Pooling layers and Flatten: gradient checks, brute-force forward values,
deterministic max-pool ties, and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.gradcheck import check_layer
from senn_ref.layers.flatten import Flatten
from senn_ref.layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from senn_ref.testing import assert_close


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    H, W = draw(st.integers(kh, 7)), draw(st.integers(kw, 7))
    return draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W, (kh, kw), stride


def distinct_input(rng, shape, gap=0.1):
    """Distinct values spaced ``gap`` apart (shuffled), shifted to mixed signs.

    gradcheck perturbs each entry by at most 1e-4 * max|x| (its relative step, see
    senn_ref.gradcheck.central_difference); with at most 3*3*7*7 = 441 entries that is
    <= 1e-4 * 441 * gap < gap / 2, so no two entries swap order and no argmax changes:
    the finite differences never cross a kink of the max.
    """
    m = int(np.prod(shape))
    return (rng.permutation(m) - m / 2.0).reshape(shape) * gap


def brute_pool(X, size, stride, reduce):
    N, C, H, W = X.shape
    (kh, kw), (sh, sw) = size, stride
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    Y = np.zeros((N, C, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    Y[n, c, oh, ow] = reduce(X[n, c, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw])
    return Y


@settings(max_examples=50, deadline=None)
@given(case=pool_cases(), seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["avg", "max"]),
       backend=st.sampled_from(["numba", "numpy"]))
def test_pool_gradcheck_and_values(case, seed, kind, backend):
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(seed)
    cls, reduce = (AvgPool2D, np.mean) if kind == "avg" else (MaxPool2D, np.max)
    layer = cls(size, stride, in_shape=(C, H, W), backend=backend)
    X = distinct_input(rng, (N, C, H, W))
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res
    assert_close(layer.forward(X), brute_pool(X, size, stride or size, reduce), rtol=1e-13, atol=1e-15,
                 name=f"{kind} pool vs brute force")


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3), shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
       seed=st.integers(0, 2**31 - 1))
def test_global_avg_and_flatten_gradcheck(n, shape, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n,) + shape)
    for layer in (GlobalAvgPool(in_shape=shape), Flatten(in_shape=shape)):
        res = check_layer(layer, X, rng)
        assert res.fd_error < 1e-6 and res.dot_error < 1e-10, (layer, res)
    assert_close(GlobalAvgPool(in_shape=shape).forward(X), X.mean(axis=(2, 3)), rtol=1e-14, name="gap")
    assert Flatten(in_shape=shape).forward(X).shape == (n, int(np.prod(shape)))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_maxpool_ties_go_to_first_maximum(backend):
    # One 2x2 window of equal values: the gradient goes to offset (0, 0) only; in the second
    # window the max 5 appears at offsets (0, 1) and (1, 0): the first in row-major order wins.
    X = np.array([[[[1.0, 1.0, 0.0, 5.0],
                    [1.0, 1.0, 5.0, 2.0]]]])
    layer = MaxPool2D(2, in_shape=(1, 2, 4), backend=backend)
    assert_close(layer.forward(X), np.array([[[[1.0, 5.0]]]]), rtol=0, name="max")
    dX, grads = layer.backward(np.array([[[[10.0, 20.0]]]]))
    expected = np.array([[[[10.0, 0.0, 0.0, 20.0],
                           [0.0, 0.0, 0.0, 0.0]]]])
    assert grads == {}
    assert_close(dX, expected, rtol=0, name="tie routing")
    # the JVP reads the tangent at the same cached argmax
    T = np.arange(8.0).reshape(1, 1, 2, 4)
    assert_close(layer.jvp(T), np.array([[[[T[0, 0, 0, 0], T[0, 0, 0, 3]]]]]), rtol=0, name="jvp routing")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_overlapping_avgpool_backward_counts(backend, rng):
    # stride 1, window 2 on a 3x3 input: the centre pixel is in 4 windows, edges in 2, corners in 1.
    layer = AvgPool2D(2, 1, in_shape=(1, 3, 3), backend=backend)
    layer.forward(rng.standard_normal((1, 1, 3, 3)))
    dX, _ = layer.backward(np.ones((1, 1, 2, 2)))
    assert_close(dX[0, 0] * 4, np.array([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]), rtol=1e-15, name="counts")


@pytest.mark.parametrize("make", [lambda: AvgPool2D(2, in_shape=(2, 4, 4)),
                                  lambda: MaxPool2D(2, in_shape=(2, 4, 4)),
                                  lambda: GlobalAvgPool(in_shape=(2, 4, 4)),
                                  lambda: Flatten(in_shape=(2, 4, 4))])
def test_pool_errors(make, rng):
    layer = make()
    with pytest.raises(ValueError, match=r"expected shape \(N, 2, 4, 4\)"):
        layer.forward(rng.standard_normal((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"expected shape \(N, 2, 4, 4\)"):
        layer.forward(rng.standard_normal((1, 2, 5, 4)))
    with pytest.raises(TypeError, match="floating-point"):
        layer.forward(np.ones((1, 2, 4, 4), dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(np.full((1, 2, 4, 4), np.inf))
    with pytest.raises(ValueError, match="empty"):
        layer.forward(np.zeros((0, 2, 4, 4)))
    with pytest.raises(RuntimeError, match="call forward"):
        layer.backward(np.zeros((1, 2)))
    Y = layer.forward(rng.standard_normal((3, 2, 4, 4)))
    with pytest.raises(ValueError, match="output cotangent"):
        layer.backward(np.zeros((2,) + Y.shape[1:]))
    with pytest.raises(ValueError, match="unknown parameter"):
        layer.jvp(None, {"W": np.zeros(1)})


def test_pool_construction_errors():
    with pytest.raises(ValueError, match="larger than the padded input"):
        MaxPool2D(5, in_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="stride: must be >= 1"):
        AvgPool2D(2, 0, in_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="in_shape must be"):
        AvgPool2D(2, in_shape=(4, 4))
    with pytest.raises(ValueError, match="size: must be >= 1"):
        MaxPool2D(0, in_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="unknown backend"):
        MaxPool2D(2, in_shape=(1, 4, 4), backend="fortran")


def test_flatten_returns_new_arrays(rng):
    # Forward, backward and jvp results must not be views of their arguments: writing into
    # a result may not change the caller's input, cotangent or tangent.
    layer = Flatten(in_shape=(2, 3))
    X = rng.standard_normal((2, 2, 3))
    keep = X.copy()
    layer.forward(X)[0, 0] = 99.0
    dY = rng.standard_normal((2, 6))
    keep_dY = dY.copy()
    layer.backward(dY)[0][0, 0, 0] = 99.0
    layer.jvp(X)[0, 0] = 99.0
    assert np.array_equal(X, keep) and np.array_equal(dY, keep_dY)
    with pytest.raises(TypeError, match="in_shape must be a tuple"):
        Flatten(in_shape=5)
