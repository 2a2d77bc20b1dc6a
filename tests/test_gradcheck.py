"""The gradient-check utility itself: it must pass correct passes and catch wrong ones."""
import numpy as np

from senn_ref.gradcheck import central_difference, check_function, check_layer, dot_product_error
from senn_ref.layers.dense import Dense


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
