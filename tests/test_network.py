"""Network: flat order, gradient checks of whole networks, structural changes, bad input."""
import numpy as np
import pytest

from senn_ref.gradcheck import check_network
from senn_ref.layers.dense import Dense
from senn_ref.losses.base import Loss
from senn_ref.network import Network
from senn_ref.testing import assert_close


def small_net(rng):
    return Network([Dense(3, 4, rng, 1.0), Dense(4, 2, rng, 1.0)])


def test_flat_order_is_documented_order(rng):
    net = small_net(rng)
    theta = net.get_flat()
    W0, b0 = net.layers[0].params["W"], net.layers[0].params["b"]
    W1, b1 = net.layers[1].params["W"], net.layers[1].params["b"]
    assert list(net.named_params()) == ["dense0.W", "dense0.b", "dense1.W", "dense1.b"]
    assert np.array_equal(theta, np.concatenate([W0.ravel(), b0, W1.ravel(), b1]))
    assert net.num_params() == theta.size == 12 + 4 + 8 + 2
    # set_flat writes in the same order and keeps the arrays' identity
    net.set_flat(np.arange(theta.size, dtype=float))
    assert net.layers[0].params["W"] is W0
    assert W0[1, 2] == 1 * 3 + 2 and b0[0] == 12 and W1[0, 0] == 16


def test_network_gradcheck(rng):
    net = small_net(rng)
    res = check_network(net, rng.standard_normal((5, 3)), rng)
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


def test_backward_gives_mean_loss_gradient(rng):
    # loss_and_grad divides e by N: compare with finite differences of the mean loss.
    net = small_net(rng)
    X, Y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))

    class HalfSquare(Loss):  # a user-defined loss: subclass senn_ref.losses.base.Loss
        def value_and_grad(self, F, Y):
            return 0.5 * np.mean(np.sum((F - Y) ** 2, axis=1)), F - Y

    _, res = net.loss_and_grad(X, Y, HalfSquare())
    theta = net.get_flat()
    h = 1e-6

    def mean_loss(t):
        net.set_flat(t)
        return 0.5 * np.mean(np.sum((net.forward(X) - Y) ** 2, axis=1))

    fd = np.array([(mean_loss(theta + h * e) - mean_loss(theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)])
    net.set_flat(theta)
    assert_close(res.flat_grad(), fd, rtol=1e-6, atol=1e-9, name="mean-loss gradient")


def test_output_grads_recorded(rng):
    net = small_net(rng)
    net.forward(rng.standard_normal((2, 3)))
    dY = rng.standard_normal((2, 2))
    res = net.backward(dY)
    assert res.output_grads[1] is dY
    assert_close(res.output_grads[0], dY @ net.layers[1].params["W"], rtol=1e-14, name="dense0 outgrad")


def test_insert_checks_before_changing(rng):
    net = small_net(rng)
    before = net.get_flat().copy()
    with pytest.raises(ValueError, match="expects per-example input"):
        net.insert(1, [Dense(5, 4, rng)])
    assert len(net.layers) == 2 and np.array_equal(net.get_flat(), before)
    names = net.insert(1, [Dense(4, 4, rng)])
    assert names == ["dense2"] and [la.name for la in net.layers] == ["dense0", "dense2", "dense1"]
    assert net.num_params() == before.size + 20


def test_copy_is_independent(rng):
    net = small_net(rng)
    clone = net.copy()
    clone.layers[0].params["W"][0, 0] += 1.0
    assert net.layers[0].params["W"][0, 0] != clone.layers[0].params["W"][0, 0]


def test_bad_input(rng):
    net = small_net(rng)
    with pytest.raises(ValueError, match="shape"):
        net.set_flat(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        net.set_flat(np.full(net.num_params(), np.nan))
    with pytest.raises(ValueError, match=r"expected shape \(N, 3\)"):
        net.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown parameter key"):
        net.forward(np.zeros((2, 3)))
        net.jvp({"nope.W": np.zeros(1)})
    with pytest.raises(ValueError, match="at least one layer"):
        Network([])
    with pytest.raises(TypeError, match="not a senn_ref Layer"):
        Network([object()])
    first = Dense(3, 4, rng)
    with pytest.raises(ValueError, match="expects per-example input"):
        Network([first, Dense(5, 2, rng)])
    assert first.name is None                      # a refused list leaves its layers unowned
    assert Network([first]).layers[0].name == "dense0"


def test_insert_rejects_shared_layers_before_any_change(rng):
    # The same object twice, a layer already in this network, or a layer owned by another
    # network would share one forward cache and be renamed; all are refused up front, and
    # a refused insert changes nothing (layers, names, name counters, the new layers).
    from senn_ref.layers.activations import Tanh
    net = Network([Dense(4, 4, rng), Tanh((4,)), Dense(4, 2, rng)])
    other = Network([Dense(4, 4, rng)])
    state = lambda: ([la.name for la in net.layers], dict(net._name_counts))  # noqa: E731
    before = state()
    t = Tanh((4,))
    for bad, msg in (([t, t], "more than once"), ([Tanh((4,)), net.layers[1]], "already part of this network"),
                     ([other.layers[0]], "already belongs to a network")):
        with pytest.raises(ValueError, match=msg):
            net.insert(2, bad)
        assert state() == before and t.name is None
    assert list(other.named_params()) == ["dense0.W", "dense0.b"]
    with pytest.raises(TypeError, match="integer"):
        net.insert(0.5, [Dense(4, 4, rng)])
    with pytest.raises(ValueError, match="more than once"):
        Network([t, t])
    with pytest.raises(ValueError, match="already belongs"):
        Network([other.layers[0]])
    assert t.name is None and list(other.named_params()) == ["dense0.W", "dense0.b"]


def test_failed_forward_leaves_no_cache(rng):
    # A forward that raises part-way (dense0 overflows to inf, which tanh0 refuses) must not
    # leave dense0 caching the new input and later layers the old one: backward then raises.
    from senn_ref.layers.activations import Tanh
    net = Network([Dense(2, 3, rng), Tanh((3,)), Dense(3, 1, rng)])
    net.layers[0].params["W"][:] = 1.0
    net.forward(rng.standard_normal((2, 2)))
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="NaN or infinite"):
        net.forward(np.array([[1e308, 1e308], [3.0, -1.0]]))
    assert all(layer._cache is None for layer in net.layers)
    with pytest.raises(RuntimeError, match="call forward"):
        net.backward(np.ones((2, 1)))
    with pytest.raises(RuntimeError, match="call forward"):
        net.jvp_flat(np.zeros(net.num_params()))


def test_network_input_may_be_reused_after_forward(rng):
    # The first layer caches a private copy of the caller's X (inner activations are the
    # network's own and are not copied); mutating X after forward changes no gradient.
    net = small_net(rng)
    X, dY = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    net.forward(X)
    g = net.backward(dY).flat_grad()
    X *= 3.0
    assert np.array_equal(net.backward(dY).flat_grad(), g)
    net.forward(X.astype(np.float32))                # a converted input is private already
    assert not np.may_share_memory(net.layers[0]._cache["A"], X)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_convnet_backend_reaches_every_kernel_layer(backend):
    from senn_ref.architectures import convnet
    for pool in ("avg", "max"):
        net = convnet(channels=(2, 3), pool=pool, backend=backend)
        with_kernels = [la for la in net.layers if hasattr(la, "backend")]
        assert len(with_kernels) == 6                     # 2 conv, 2 rational, 2 pooling
        assert all(la.backend == backend for la in with_kernels), [(la.name, la.backend) for la in with_kernels]
