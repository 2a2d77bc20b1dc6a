"""Dense layer: gradient checks, the curvature-hook identity, conventions, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.gradcheck import check_layer
from senn_ref.layers.dense import Dense
from senn_ref.testing import assert_close


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), n_in=st.integers(1, 7), n_out=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_dense_gradcheck(n, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    layer = Dense(n_in, n_out, rng, bias_std=1.0)
    res = check_layer(layer, rng.standard_normal((n, n_in)), rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


def test_dense_matches_explicit_sum(rng):
    # s_i = sum_j W_ij a_j + b_i, written out with loops: pins W (out, in) and row-major flattening.
    layer = Dense(3, 2, rng, bias_std=1.0)
    A = rng.standard_normal((4, 3))
    W, b = layer.params["W"], layer.params["b"]
    expected = np.array([[sum(W[i, j] * A[n, j] for j in range(3)) + b[i] for i in range(2)] for n in range(4)])
    assert_close(layer.forward(A), expected, rtol=1e-14, atol=1e-15, name="dense forward")


def test_dense_grad_is_sum_of_outer_products(rng):
    # grads["W"] = sum_n d_n a_n^T and grads["b"] = sum_n d_n, the identity K-FAC relies on.
    layer = Dense(5, 3, rng)
    A = rng.standard_normal((6, 5))
    layer.forward(A)
    dS = rng.standard_normal((6, 3))
    _, grads = layer.backward(dS)
    a = layer.curvature_inputs()
    d = layer.curvature_outgrads(dS)
    assert a.shape == (6, 1, 5) and d.shape == (6, 1, 3)
    assert_close(grads["W"], np.einsum("nto,nti->oi", d, a), rtol=1e-13, name="dW")
    assert_close(grads["b"], d.sum(axis=(0, 1)), rtol=1e-13, name="db")


def test_dense_backward_is_repeatable(rng):
    layer = Dense(4, 2, rng)
    layer.forward(rng.standard_normal((3, 4)))
    dS = rng.standard_normal((3, 2))
    first = layer.backward(dS)
    second = layer.backward(dS)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1]["W"], second[1]["W"])


def test_dense_bad_input(rng):
    layer = Dense(3, 2, rng)
    with pytest.raises(ValueError, match="shape"):
        layer.forward(np.zeros((4, 5)))
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="empty"):
        layer.forward(np.zeros((0, 3)))
    with pytest.raises(RuntimeError, match="forward"):
        Dense(3, 2, rng).backward(np.zeros((1, 2)))
    layer.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="cotangent"):
        layer.backward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="unknown parameter"):
        layer.jvp(None, {"V": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="n_in"):
        Dense(0, 2)
    for bad, exc, msg in ((np.nan, ValueError, "bias_std: must be finite"), (-1.0, ValueError, "bias_std: must be >= 0"),
                          ("a", TypeError, "bias_std: expected a real number")):
        with pytest.raises(exc, match=msg):
            Dense(3, 2, rng, bias_std=bad)
    with pytest.raises(TypeError, match="Dense rng: expected numpy.random.Generator"):
        Dense(3, 2, rng=0)
    with pytest.raises(ValueError, match="output cotangent"):
        layer.curvature_outgrads(np.zeros((4, 3)))


def test_dense_caches_a_private_copy_of_its_input(rng):
    # The caller may reuse its input buffer after forward: gradients must not change.
    layer = Dense(3, 2, rng, bias_std=1.0)
    X, dY = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(X)
    dW, J = layer.backward(dY)[1]["W"].copy(), layer.jvp(None, {"W": np.ones((2, 3))})
    X *= 2.0
    assert np.array_equal(layer.backward(dY)[1]["W"], dW)
    assert np.array_equal(layer.jvp(None, {"W": np.ones((2, 3))}), J)
