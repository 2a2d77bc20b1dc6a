"""The compiled whole-network pass (senn_ref.network_plan, kernels/sequential_numba) against its
twin, the layer-wise path (kernels/sequential_numpy): derivations/24-sequential-fast-path.md.

Tolerance 1e-12 relative (2-norm): both compute the same sums in a different order (loops or
BLAS versus NumPy's pairwise sums), so they agree to a few ulps of the largest term.
"""
import warnings

import numpy as np
import pytest

from senn_ref import backend, network_plan
from senn_ref.architectures import convnet, mlp
from senn_ref.fisher import FisherOperator
from senn_ref.grow.add_neurons import add_neurons
from senn_ref.grow.insert_layer import insert_layer
from senn_ref.kernels.sequential_numpy import sequential_ggn_numpy, sequential_loss_grad_numpy
from senn_ref.layers.activations import SiLU, Tanh
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.natural_gradient import natural_gradient
from senn_ref.network import Network
from senn_ref.testing import assert_rel_error

TOL = 1e-12
ACTS = ("rational", "tanh", "silu")


def random_net(rng, sizes, acts, lead=None):
    """Dense layers of ``sizes`` with the activations ``acts`` between them (optionally an
    activation ``lead`` in front of the first Dense)."""
    layers = [] if lead is None else [_act(lead, sizes[0], rng)]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, rng, bias_std=0.5))
        if i < len(sizes) - 2:
            layers.append(_act(acts[i % len(acts)], b, rng))
    return Network(layers)


def _act(name, width, rng):
    return {"rational": lambda: Rational(width, rng=rng), "tanh": lambda: Tanh((width,)),
            "silu": lambda: SiLU((width,))}[name]()


def targets(rng, kind, N, K):
    if kind == "mse":
        return mse(), rng.standard_normal((N, K))
    if kind == "labels":
        return softmax_cross_entropy(), rng.integers(0, K, N)
    P = rng.random((N, K))
    return softmax_cross_entropy(), P / P.sum(axis=1, keepdims=True)


CASES = [([1, 16, 1], ("rational",), "mse", None), ([3, 8, 7, 2], ("tanh", "rational"), "labels", None),
         ([4, 9, 5, 3], ("silu",), "probs", None), ([2, 5, 3], ("rational",), "mse", "tanh"),
         ([6, 40, 30, 20, 4], ("rational", "silu", "tanh"), "labels", None),
         ([20, 64, 10], ("tanh",), "probs", None)]


def check_loss_and_grad(net, X, Y, loss):
    """The compiled loss_and_grad equals the twin (value, gradient, output cotangents) and
    leaves caches from which the layer-wise backward and JVP give the twin's numbers."""
    fast = network_plan.loss_and_grad(net, X, Y, loss)
    assert fast is not None, "the compiled path did not apply"
    value, grads = fast
    v = np.random.default_rng(1).standard_normal(net.num_params())
    dY = np.random.default_rng(2).standard_normal(grads.output_grads[-1].shape)
    after_fast = (net.backward(dY).flat_grad(), net.jvp_flat(v))
    t_value, t_grad, t_outgrads = sequential_loss_grad_numpy(net, X, Y, loss)
    assert abs(value - t_value) <= TOL * abs(t_value), (value, t_value)
    assert_rel_error(grads.flat_grad(), t_grad, TOL, "gradient")
    assert list(grads.grads) == list(net.named_params())
    assert len(grads.output_grads) == len(t_outgrads)
    for i, (a, b) in enumerate(zip(grads.output_grads, t_outgrads)):
        assert_rel_error(a, b, TOL, f"output cotangent of layer {i}")
    assert_rel_error(after_fast[0], net.backward(dY).flat_grad(), TOL, "backward from the caches")
    assert_rel_error(after_fast[1], net.jvp_flat(v), TOL, "jvp from the caches")
    assert_rel_error(net.loss_and_grad(X, Y, loss)[1].flat_grad(), t_grad, TOL, "Network.loss_and_grad")


def check_ggn(net, X, Y, loss, metrics=("euclidean", "true", "empirical")):
    v = np.random.default_rng(3).standard_normal(net.num_params())
    for metric in metrics:
        op = FisherOperator(net, X, loss, metric=metric, Y=Y, damping=0.25)
        out = op.matvec(v)
        assert op._point is not None and op._fast_ggn(v) is not None, metric
        twin = sequential_ggn_numpy(net, X, loss, v, metric, Y) + 0.25 * v
        assert_rel_error(out, twin, TOL, f"GGN product, {metric} metric")


@pytest.mark.parametrize("sizes, acts, kind, lead", CASES)
def test_compiled_pass_equals_layerwise(sizes, acts, kind, lead):
    rng = np.random.default_rng(sum(sizes))
    net = random_net(rng, sizes, acts, lead)
    X = 1.5 * rng.standard_normal((37, sizes[0]))
    loss, Y = targets(rng, kind, 37, sizes[-1])
    check_loss_and_grad(net, X, Y, loss)
    check_ggn(net, X, Y, loss)


def test_plan_rebuilt_after_growth():
    """add_neurons (wider Dense, Rational, Tanh) and insert_layer (two more layers) change the
    structure; the next call rebuilds the plan and still equals the twin."""
    rng = np.random.default_rng(7)
    net = random_net(rng, [2, 6, 5, 3], ("rational", "tanh"))
    X = rng.standard_normal((25, 2))
    loss, Y = targets(rng, "labels", 25, 3)
    check_loss_and_grad(net, X, Y, loss)
    first = net._sequential_plan
    add_neurons(net, 0, rng.standard_normal((3, 2)), rng=rng)
    add_neurons(net, 2, rng.standard_normal((2, 9)))
    check_loss_and_grad(net, X, Y, loss)
    assert net._sequential_plan is not first and net._sequential_plan.P == net.num_params()
    insert_layer(net, 2, np.eye(9) + 0.1 * rng.standard_normal((9, 9)), rng.standard_normal(9))
    assert len(net.layers) == 7
    check_loss_and_grad(net, X, Y, loss)
    check_ggn(net, X, Y, loss, ("true",))
    net.layers[0].params["W"][...] += 0.5                 # in-place updates are seen
    check_loss_and_grad(net, X, Y, loss)


@pytest.mark.parametrize("acts", [("tanh",), ("tanh", "silu")])
def test_parameter_free_networks(acts):
    """A network of Tanh/SiLU layers only (P = 0) takes the compiled path and equals the twin (the
    plan's flat parameter vector is empty; np.concatenate of no arrays raised before)."""
    rng = np.random.default_rng(4)
    net = Network([_act(a, 3, rng) for a in acts])
    X = rng.standard_normal((6, 3))
    for kind in ("mse", "labels"):
        loss, Y = targets(rng, kind, 6, 3)
        check_loss_and_grad(net, X, Y, loss)
        assert net.loss_and_grad(X, Y, loss)[1].flat_grad().shape == (0,)
        for metric in ("euclidean", "true", "empirical"):
            op = FisherOperator(net, X, loss, metric=metric, Y=Y)
            assert op._point is not None and op.matvec(np.zeros(0)).shape == (0,)


def test_natural_gradient_uses_the_same_gradient():
    rng = np.random.default_rng(11)
    net = mlp([1, 16, 1], seed=3)
    X = rng.standard_normal((50, 1))
    Y = np.sin(3 * X)
    u, g, value, info = natural_gradient(net, X, Y, mse(), damping=0.1, tol=1e-12)
    with backend.using("numpy"):
        u2, g2, value2, info2 = natural_gradient(net, X, Y, mse(), damping=0.1, tol=1e-12)
    assert_rel_error(g, g2, TOL, "gradient")
    assert abs(value - value2) <= TOL * value2
    assert info.converged and info2.converged
    assert_rel_error(u, u2, 1e-10, "natural gradient (CG amplifies rounding by its condition number)")


def test_deterministic():
    """Two calls give the same bits (required for bit-identical resumed runs)."""
    rng = np.random.default_rng(5)
    net = random_net(rng, [3, 20, 10, 4], ("rational", "silu"))
    X = rng.standard_normal((40, 3))
    loss, Y = targets(rng, "labels", 40, 4)
    a, b = net.loss_and_grad(X, Y, loss), net.loss_and_grad(X, Y, loss)
    assert a[0] == b[0] and np.array_equal(a[1].flat_grad(), b[1].flat_grad())
    v = rng.standard_normal(net.num_params())
    op = FisherOperator(net, X, loss, metric="true")
    assert np.array_equal(op.matvec(v), op.matvec(v))


def test_unsupported_networks_fall_back():
    rng = np.random.default_rng(0)
    conv = convnet(image_size=4, channels=(2,), seed=0)
    assert network_plan.plan_for(conv) is None
    numpy_rational = Network([Dense(2, 3, rng), Rational(3, rng=rng, backend="numpy"), Dense(3, 1, rng)])
    assert network_plan.plan_for(numpy_rational) is None
    net = mlp([2, 4, 1], seed=0)
    assert network_plan.plan_for(net) is not None
    with backend.using("numpy"):
        assert network_plan.plan_for(net) is None
        X = rng.standard_normal((5, 2))
        assert network_plan.loss_and_grad(net, X, rng.standard_normal((5, 1)), mse()) is None
        assert FisherOperator(net, X, mse())._point is None


def test_large_passes_take_the_layerwise_path():
    """Above the work limits (SequentialPlan.fast_for) the layer-wise path runs: the digits
    MLP 64-64-10 on 1797 examples; the same net on 16 examples is compiled."""
    rng = np.random.default_rng(0)
    net = mlp([64, 64, 10], activation="tanh", seed=0)
    plan = network_plan.plan_for(net)
    assert plan.fast_for(16) and not plan.fast_for(1797)
    X = rng.standard_normal((1797, 64))
    assert network_plan.forward_point(net, X) is None
    assert network_plan.forward_point(net, X[:16]) is not None
    Y = rng.integers(0, 10, 1797)
    value, grads = net.loss_and_grad(X, Y, softmax_cross_entropy())
    t_value, t_grad, _ = sequential_loss_grad_numpy(net, X, Y, softmax_cross_entropy())
    assert value == t_value and np.array_equal(grads.flat_grad(), t_grad)


def test_errors_as_layerwise():
    """A non-finite activation (overflow inside the kernel) and bad targets raise the
    layer-wise path's errors, and the caches end as the layer-wise forward leaves them."""
    rng = np.random.default_rng(0)
    net = random_net(rng, [2, 4, 3], ("tanh",))
    X = rng.standard_normal((6, 2))
    Y = rng.standard_normal((6, 3))
    net.layers[0].params["W"][0, 0] = 1e308
    X[0, 0] = 10.0
    messages = []
    for name in ("numba", "numpy"):
        with backend.using(name), np.errstate(over="ignore"), pytest.raises(ValueError) as err:
            net.loss_and_grad(X, Y, mse())
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "NaN or infinite" in messages[0]
    assert all(layer._cache is None for layer in net.layers)
    net.layers[0].params["W"][0, 0] = 0.5
    for bad, kind in ((np.zeros((6, 2)), ValueError), (np.zeros((6, 3), dtype=int), TypeError)):
        messages = []
        for name in ("numba", "numpy"):
            with backend.using(name), pytest.raises(kind) as err:
                net.loss_and_grad(X, bad, mse())
            messages.append(str(err.value))
        assert messages[0] == messages[1]
    with pytest.raises(ValueError, match="X"):
        net.loss_and_grad(X[:, :1], Y, mse())


def _overflow_case(which):
    """A Dense-only network whose outputs stay finite while the loss or a parameter gradient
    (or a GGN product) overflows: no activation or cotangent the kernels check is non-finite."""
    net = Network([Dense(1, 2), Dense(2, 1)])
    net.layers[0].params["W"][:] = [[1e160], [0.0]]
    net.layers[0].params["b"][:] = 0.0
    net.layers[1].params["W"][:] = [[1e-10, 0.0]]
    net.layers[1].params["b"][:] = 0.0
    X, Y = np.ones((3, 1)), np.zeros((3, 1))
    if which == "loss":                 # F = 1e150 * 1e10: |F|^2 overflows
        net.layers[1].params["W"][:] = [[1.0, 0.0]]
    return net, X, Y                    # else F = 1e150, L = 5e299, dL/dW2 = F h / N ~ 3e309


def _run_recording(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, sorted({(w.category.__name__, str(w.message)) for w in caught})


@pytest.mark.parametrize("which", ["loss", "gradient", "ggn"])
def test_an_overflow_warns_as_on_the_layerwise_path(which):
    """NumPy's RuntimeWarning on an overflow is not lost on the compiled path: a non-finite
    loss, gradient or GGN product (with finite activations and cotangents, so the kernels' own
    status stays -1) sends the call to the layer-wise path, which warns as usual and gives
    the same values (derivations/24 section 3)."""
    net, X, Y = _overflow_case(which)
    assert network_plan.forward_point(net, X) is not None        # the compiled path applies
    results = {}
    for name in ("numba", "numpy"):
        with backend.using(name):
            if which == "ggn":
                op = FisherOperator(net, X, mse())
                v = np.zeros(net.num_params())
                v[net.param_slices()["dense0.W"].start] = 1e160
                results[name] = _run_recording(lambda: op.ggn_matvec(v))
            else:
                results[name] = _run_recording(lambda: net.loss_and_grad(X, Y, mse()))
    (fast, fast_warn), (slow, slow_warn) = results["numba"], results["numpy"]
    assert slow_warn and all(cat == "RuntimeWarning" and "overflow" in msg for cat, msg in slow_warn), slow_warn
    assert fast_warn == slow_warn, (fast_warn, slow_warn)
    if which == "ggn":
        assert not np.isfinite(slow).all()
        np.testing.assert_array_equal(fast, slow)
    else:
        assert not (np.isfinite(slow[0]) and np.isfinite(slow[1].flat_grad()).all())
        assert fast[0] == slow[0] or (np.isnan(fast[0]) and np.isnan(slow[0]))
        np.testing.assert_array_equal(fast[1].flat_grad(), slow[1].flat_grad())


@pytest.mark.parametrize("din,dout", [(1, 16), (2, 5), (3, 4), (16, 1), (16, 7), (16, 8), (5, 16)])
def test_dense_loops_add_in_the_stated_order(din, dout):
    """The Dense loops of the compiled pass, whatever their loop order (it depends on the widths,
    derivations/24-sequential-fast-path.md section 7), add the terms of every entry in one fixed
    order: y[n, j] = b[j] + x[n, 0] W[j, 0] + x[n, 1] W[j, 1] + ... and gW[j, k] = sum over
    n = 0, 1, ... of g[n, j] x[n, k] (gb likewise) - bit for bit against NumPy doing exactly that."""
    from senn_ref.kernels import sequential_numba as k
    rng = np.random.default_rng(din * 100 + dout)
    N = 9
    with backend.using("numba"):
        net = Network([Dense(din, dout, rng, bias_std=1.0)])
        plan = network_plan.plan_for(net)
        X = rng.standard_normal((N, din)) * 10.0 ** rng.integers(-6, 6, (N, din))
        ws, status = k.sequential_forward_numba(plan.meta, plan.eps, plan.theta(), X, plan.ws_width)
        W, b = net.layers[0].params["W"], net.layers[0].params["b"]
        y = np.tile(b, (N, 1))
        for i in range(din):
            y = y + np.outer(X[:, i], W[:, i])
        point = network_plan.Point(plan, plan.theta(), ws, N)
        assert status == -1 and np.array_equal(point.outputs, y)
        G = rng.standard_normal((N, dout))
        grad, _, status = k.sequential_backward_numba(plan.meta, plan.theta(), ws, G, False, plan.cot_width)
        gW, gb = np.zeros((dout, din)), np.zeros(dout)
        for n in range(N):
            gW = gW + np.outer(G[n], X[n])
            gb = gb + G[n]
        assert status == -1 and np.array_equal(grad, np.concatenate([gW.ravel(), gb]))
