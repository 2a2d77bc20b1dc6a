"""The gradient-check utility itself: it must pass correct passes and catch wrong ones."""
import numpy as np
import pytest

from senn_ref.gradcheck import central_difference, check_function, check_layer, dot_product_error
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational


def test_central_difference_is_fourth_order():
    f = lambda x: np.array([np.sin(x[0]) * np.exp(x[1])])  # noqa: E731
    x, u = np.array([0.3, -0.2]), np.array([1.0, 0.5])
    exact = np.cos(0.3) * np.exp(-0.2) * 1.0 + np.sin(0.3) * np.exp(-0.2) * 0.5
    err = abs(central_difference(f, x, u, h=1e-3)[0] - exact)
    assert err < 1e-12, err


def test_check_function_accepts_linear_map(rng):
    A = rng.standard_normal((4, 3))
    res = check_function(lambda x: A @ x, lambda u: A @ u, lambda v: A.T @ v, rng.standard_normal(3), rng)
    assert res.fd_error < 1e-10 and res.dot_error < 1e-14


def test_check_function_catches_wrong_vjp_and_jvp(rng):
    A = rng.standard_normal((4, 3))
    B = A.copy()
    B[1, 2] += 0.1
    wrong_vjp = check_function(lambda x: A @ x, lambda u: A @ u, lambda v: B.T @ v, rng.standard_normal(3), rng)
    assert wrong_vjp.fd_error < 1e-10 and wrong_vjp.dot_error > 1e-4
    wrong_jvp = check_function(lambda x: A @ x, lambda u: B @ u, lambda v: B.T @ v, rng.standard_normal(3), rng)
    assert wrong_jvp.fd_error > 1e-4


def test_check_layer_catches_broken_layer(rng):
    class BrokenDense(Dense):
        def backward(self, dY, need_input_grad=True):
            dX, grads = super().backward(dY, need_input_grad)
            grads["b"] = 1.01 * grads["b"]  # a 1 % error in the bias gradient
            return dX, grads

    layer = BrokenDense(3, 2, rng, bias_std=1.0)
    res = check_layer(layer, rng.standard_normal((4, 3)), rng)
    assert res.fd_error < 1e-8 and res.dot_error > 1e-5, res


def test_dot_product_error_scale_free():
    assert dot_product_error(np.ones(3), np.ones(3), np.ones(2), np.array([1.5, 1.5])) == 0.0


class _ZeroedDl:
    """Mixin: the cached d sigma/d l replaced by 0 in both passes (consistent, so only FD sees it)."""

    def forward(self, X):
        Y = super().forward(X)
        self._cache["l"] = np.zeros_like(self._cache["l"])
        return Y


@pytest.mark.parametrize("init", ["identity", "random"])
def test_check_layer_catches_a_zeroed_tiny_block(init):
    # At the identity point d sigma/d l = eps x / (1+eps)^1.5 ~ 1e-8 |x|: a joint relative
    # norm over (X, v, c, l) cannot see it dropped; the per-block check flags block "l"
    # (error ~1e-4 against the 1e-4 floor, measured 4e-5..1e-4) and passes the others.
    class Broken(_ZeroedDl, Rational):
        pass

    rng = np.random.default_rng(3)
    layer = Broken(4, init=init, rng=np.random.default_rng(1))
    res = check_layer(layer, np.random.default_rng(2).standard_normal((5, 4)), rng)
    assert not res.ok(1e-6, 1e-10) and res.block_errors["l"] > 1e-5, res
    assert max(res.block_errors[k] for k in ("input", "v", "c")) < 1e-8, res
    assert res.dot_error < 1e-10                   # consistent passes: only FD can tell


def test_correct_tiny_block_passes_with_margin():
    # The honest side of the floor: the correct layer at the identity point, where FD
    # rounding (~1e-16 |f| / h) is ~1e-4 of block "l" itself, passes the 1e-6 tolerance
    # with ~100x margin (measured fd_error 4e-9 .. 1.2e-8, all from block "l").
    for seed in range(3):
        layer = Rational(4, init="identity")
        res = check_layer(layer, np.random.default_rng(seed).standard_normal((5, 4)), np.random.default_rng(seed))
        assert res.fd_error < 1e-7 and res.dot_error < 1e-14, res
        assert set(res.block_errors) == {"input", "v", "c", "l"} == set(res.block_dot_errors)


def test_check_layer_and_network_keep_parameter_arrays(rng):
    # Parameters are perturbed and restored in place: optimiser state or views holding the
    # arrays stay attached, and the values are bit-for-bit what they were.
    from senn_ref.gradcheck import check_network
    from senn_ref.network import Network
    layer = Dense(3, 2, rng, bias_std=1.0)
    arrays = dict(layer.params)
    values = {k: v.copy() for k, v in arrays.items()}
    check_layer(layer, rng.standard_normal((2, 3)), rng)
    assert all(layer.params[k] is arrays[k] and np.array_equal(arrays[k], values[k]) for k in arrays)
    net = Network([layer, Dense(2, 2, rng)])
    named = net.named_params()
    theta = net.get_flat()
    res = check_network(net, rng.standard_normal((2, 3)), rng)
    assert set(res.block_errors) == set(named) and res.ok()
    assert all(net.named_params()[k] is a for k, a in named.items()) and np.array_equal(net.get_flat(), theta)
