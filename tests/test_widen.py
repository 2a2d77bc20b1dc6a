"""Structure can change in place: widen a hidden layer by hand, function preserved.

This is the mechanism the growth operations build on (derivations/01-conventions.md 1.6):
new incoming weights are free, new outgoing weights are zero, so the network function is
unchanged, and every pass still checks out.
"""
import numpy as np
import pytest

from senn_ref import convnet, mlp
from senn_ref.gradcheck import check_network
from senn_ref.layers.conv2d import Conv2D
from senn_ref.layers.dense import Dense
from senn_ref.layers.pooling import AvgPool2D
from senn_ref.layers.rational import Rational


def _append_rows(a, rows):
    return np.concatenate([a, rows], axis=0)


def test_widen_mlp_hidden_layer_preserves_function(rng):
    net = mlp([2, 3, 1], seed=1)
    X = rng.standard_normal((9, 2))
    before = net.forward(X).copy()
    dense0, act, dense1 = net.layers
    dense0.params["W"] = _append_rows(dense0.params["W"], rng.standard_normal((2, 2)))
    dense0.params["b"] = _append_rows(dense0.params["b"], rng.standard_normal(2))
    for k in ("v", "c", "l"):
        act.params[k] = _append_rows(act.params[k], rng.standard_normal(2))
    dense1.params["W"] = np.concatenate([dense1.params["W"], np.zeros((1, 2))], axis=1)
    net.check_structure()
    after = net.forward(X)
    assert np.abs(after - before).max() < 1e-12
    assert net.num_params() == (5 * 2 + 5) + 5 * 3 + (1 * 5 + 1) and act.in_shape == (5,)
    res = check_network(net, X, rng)
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


def test_widen_conv_channel_preserves_function(rng):
    net = convnet(channels=(3, 4), seed=2)
    X = rng.standard_normal((5, 1, 8, 8))
    before = net.forward(X).copy()
    conv0, act0, pool0, conv1 = net.layers[:4]
    conv0.params["W"] = _append_rows(conv0.params["W"], rng.standard_normal((1, 1, 3, 3)))
    conv0.params["b"] = _append_rows(conv0.params["b"], rng.standard_normal(1))
    for k in ("v", "c", "l"):
        act0.params[k] = _append_rows(act0.params[k], rng.standard_normal(1))
    pool0.set_in_shape((4, 8, 8))
    conv1.params["W"] = np.concatenate([conv1.params["W"], np.zeros((4, 1, 3, 3))], axis=1)
    net.check_structure()
    assert conv1.in_shape == (4, 4, 4)
    assert np.abs(net.forward(X) - before).max() < 1e-12
    res = check_network(net, X, rng)
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


def test_set_in_shape_rules():
    pool = AvgPool2D(2, in_shape=(3, 6, 6))
    with pytest.raises(ValueError, match="only the first entry"):
        pool.set_in_shape((3, 8, 8))
    with pytest.raises(TypeError, match="derives its input shape"):
        mlp([2, 3, 1]).layers[0].set_in_shape((4,))
    pool.set_in_shape((5, 6, 6))
    assert pool.output_shape(pool.in_shape) == (5, 3, 3)


@pytest.mark.parametrize("make, X_shape, grow", [
    (lambda rng: Dense(3, 2, rng), (4, 3),
     lambda L, rng: L.params.update(W=np.concatenate([L.params["W"], np.zeros((2, 1))], axis=1))),
    (lambda rng: Conv2D(1, 2, 3, padding=1, rng=rng, in_hw=(5, 5)), (2, 1, 5, 5),
     lambda L, rng: L.params.update(W=np.concatenate([L.params["W"], rng.standard_normal((2, 1, 3, 3))], axis=1))),
    (lambda rng: Rational(3, "random", rng), (4, 3),
     lambda L, rng: L.params.update({k: np.append(v, 0.5) for k, v in L.params.items()})),
])
def test_stale_cache_after_widening_is_refused(make, X_shape, grow, rng):
    # Replacing a parameter array by a larger one without a new forward leaves a cache built
    # for the old shapes; backward/jvp/curvature hooks must refuse it instead of returning
    # wrong-shaped gradients or values read from uninitialised workspace rows.
    layer = make(rng)
    Y = layer.forward(rng.standard_normal(X_shape))
    grow(layer, rng)
    msg = r"changed shape since forward\(\); call forward\(\) again"
    with pytest.raises(RuntimeError, match=msg):
        layer.backward(np.ones_like(Y))
    with pytest.raises(RuntimeError, match=msg):
        layer.jvp(None, {k: np.zeros_like(v) for k, v in layer.params.items()})
    if layer.has_kfac_block:
        with pytest.raises(RuntimeError, match=msg):
            layer.curvature_inputs()
    X = rng.standard_normal((X_shape[0],) + layer.in_shape)
    Y = layer.forward(X)                             # a new forward makes the layer usable again
    dX, grads = layer.backward(np.ones_like(Y))
    assert dX.shape == X.shape and all(grads[k].shape == v.shape for k, v in layer.params.items())
