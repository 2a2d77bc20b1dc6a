"""Whole-network gradient checks over random architectures (hypothesis).

Random MLPs (depth, widths, activation) and random conv nets (kernel sizes, strides,
paddings, pooling, activation, both kernel backends) must pass the Richardson
finite-difference check of the forward-mode pass (relative error < 1e-6) and the
dot-product test of the backward pass against it (< 1e-10).
"""
import numpy as np
from hypothesis import assume, given, settings, strategies as st

from senn_ref import mlp
from senn_ref.gradcheck import check_network
from senn_ref.layers import AvgPool2D, Conv2D, Dense, Flatten, GlobalAvgPool, MaxPool2D, Rational, SiLU, Tanh
from senn_ref.network import Network


def _smallest_maxpool_gap(net, X) -> float:
    """Smallest gap between the largest and second-largest entry of any max-pooling window
    at input X (inf without max pooling).  Max pooling is not differentiable at a tie, and
    a finite-difference step that crosses one measures a kink, not the derivative."""
    gap, Z = np.inf, X
    for layer in net.layers:
        if isinstance(layer, MaxPool2D):
            (kh, kw), (sh, sw), (Ho, Wo) = layer.size, layer.stride, layer.out_hw
            for oh in range(Ho):
                for ow in range(Wo):
                    win = Z[:, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw].reshape(Z.shape[0], Z.shape[1], -1)
                    top = np.sort(win, axis=2)
                    gap = min(gap, float((top[:, :, -1] - top[:, :, -2]).min()))
        Z = layer.forward(Z)
    return gap


def _activation(name, shape, rng):
    if name == "rational":
        return Rational(shape[0], init="random", rng=rng, spatial=tuple(shape[1:]))
    return Tanh(tuple(shape)) if name == "tanh" else SiLU(tuple(shape))


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
       activation=st.sampled_from(["rational", "tanh", "silu"]),
       n=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_random_mlp_gradcheck(sizes, activation, n, seed):
    rng = np.random.default_rng(seed)
    net = mlp(sizes, activation=activation, seed=seed)
    res = check_network(net, rng.standard_normal((n, sizes[0])), rng)
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


conv_spec = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2),
                      st.integers(0, 2), st.integers(0, 1))   # channels, kh, kw, stride, padding h, padding w


@settings(max_examples=20, deadline=None)
@given(specs=st.lists(conv_spec, min_size=1, max_size=2), hw=st.integers(5, 9),
       activation=st.sampled_from(["rational", "tanh", "silu"]), pool=st.sampled_from(["avg", "max", "none"]),
       head=st.sampled_from(["flatten", "gap"]), backend=st.sampled_from(["numba", "numpy"]),
       n=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_random_convnet_gradcheck(specs, hw, activation, pool, head, backend, n, seed):
    rng = np.random.default_rng(seed)
    layers, shape = [], (2, hw, hw)
    for out_c, kh, kw, stride, ph, pw in specs:
        if shape[1] + 2 * ph < kh or shape[2] + 2 * pw < kw:
            break
        conv = Conv2D(shape[0], out_c, (kh, kw), stride=stride, padding=(ph, pw), rng=rng, bias_std=0.5,
                      backend=backend, in_hw=shape[1:])
        layers.append(conv)
        shape = conv.output_shape(shape)
        layers.append(_activation(activation, shape, rng))
        if pool != "none" and min(shape[1:]) >= 2:
            cls = AvgPool2D if pool == "avg" else MaxPool2D
            layers.append(cls(2, in_shape=shape, backend=backend))
            shape = layers[-1].output_shape(shape)
    if not layers:
        return
    layers.append(Flatten(in_shape=shape) if head == "flatten" else GlobalAvgPool(in_shape=shape))
    width = int(np.prod(shape)) if head == "flatten" else shape[0]
    layers.append(Dense(width, 3, rng, bias_std=0.5))
    net = Network(layers)
    X = rng.standard_normal((n, 2, hw, hw))
    # keep away from max-pooling ties: the steps (1e-4 relative) move window entries by far
    # less than 1e-2 here, so a smaller gap could put a kink inside the difference stencil
    assume(_smallest_maxpool_gap(net, X) > 1e-2)
    res = check_network(net, X, rng)
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res
