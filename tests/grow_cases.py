"""Small random networks and data shared by the growth tests (tests/test_grow_*.py, width and
depth gains, pruning).  Every case is deterministic under its seed and small enough for the
exact GGN (P of a few hundred at most).

``CASES`` names every family; ``make_case(name, seed)`` returns a :class:`Case`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from senn_ref import convnet, mlp
from senn_ref.layers import AvgPool2D, Conv2D, Dense, Flatten, GlobalAvgPool, MaxPool2D, Rational, Tanh
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.network import Network
from senn_ref.testing import assert_close


@dataclass
class Case:
    """A network, a batch, targets and a loss.  ``hidden`` lists the indices of every producer
    (a Dense/Conv2D followed by a consumer), ``classification`` says whether Y are labels."""
    name: str
    net: Network
    X: np.ndarray
    Y: np.ndarray
    loss: object
    hidden: list
    classification: bool


def _producers(net) -> list:
    lin = [i for i, la in enumerate(net.layers) if isinstance(la, (Dense, Conv2D))]
    return lin[:-1]


def _regression(net, N, rng, K=None):
    X = rng.standard_normal((N,) + net.in_shape)
    K = net.out_shape[0] if K is None else K
    Y = rng.standard_normal((N, K))
    return X, Y, mse()


def _classification(net, N, rng):
    X = rng.standard_normal((N,) + net.in_shape)
    K = net.out_shape[0]
    Y = rng.integers(0, K, size=N)
    return X, Y, softmax_cross_entropy()


def _conv_strided(seed):
    """conv(stride 2, pad 1) -> rational -> maxpool -> conv(k=1) -> tanh -> flatten -> dense."""
    rng = np.random.default_rng(seed)
    layers = [Conv2D(2, 3, 3, stride=2, padding=1, rng=rng, in_hw=(6, 6)),
              Rational(3, rng=rng, spatial=(3, 3)),
              MaxPool2D(1, in_shape=(3, 3, 3)),
              Conv2D(3, 2, 1, rng=rng, in_hw=(3, 3)),
              Tanh((2, 3, 3)),
              Flatten(in_shape=(2, 3, 3)),
              Dense(18, 2, rng)]
    return Network(layers)


def _conv_gap(seed):
    """conv(pad 0) -> rational -> avgpool -> global average pool -> dense (a GAP head)."""
    rng = np.random.default_rng(seed)
    layers = [Conv2D(1, 3, 3, padding=0, rng=rng, in_hw=(6, 6)),
              Rational(3, rng=rng, spatial=(4, 4)),
              AvgPool2D(2, in_shape=(3, 4, 4)),
              GlobalAvgPool(in_shape=(3, 2, 2)),
              Dense(3, 2, rng)]
    return Network(layers)


CASES = ("mlp_rational", "mlp_tanh", "mlp_silu", "mlp_deep", "mlp_softmax", "conv_flatten",
         "conv_strided", "conv_gap")


def make_case(name: str, seed: int = 0, N: int = 12) -> Case:
    """One named case (see ``CASES``) drawn from ``seed``."""
    rng = np.random.default_rng(seed + 7919)
    cls = False
    if name == "mlp_rational":
        net = mlp([2, 3, 1], activation="rational", seed=seed)
    elif name == "mlp_tanh":
        net = mlp([2, 3, 2], activation="tanh", seed=seed)
    elif name == "mlp_silu":
        net = mlp([3, 2, 1], activation="silu", seed=seed)
    elif name == "mlp_deep":
        net = mlp([2, 3, 2, 1], activation="rational", seed=seed)
    elif name == "mlp_softmax":
        net = mlp([2, 3, 3], activation="rational", seed=seed)
        cls = True
    elif name == "conv_flatten":
        net = convnet(image_size=4, channels=(2, 2), n_classes=2, seed=seed)
    elif name == "conv_strided":
        net = _conv_strided(seed)
    elif name == "conv_gap":
        net = _conv_gap(seed)
    else:
        raise ValueError(f"unknown case {name!r}; cases are {CASES}")
    X, Y, loss = _classification(net, N, rng) if cls else _regression(net, N, rng)
    return Case(name, net, X, Y, loss, _producers(net), cls)


def fd_check(f, x, analytic, eps, name):
    """Central differences of the scalar-per-candidate ``f`` at every entry of ``x`` (C, ...),
    compared with ``analytic`` (same shape) at 1e-6 (the width-gain and Euclidean-gain tests)."""
    fd = np.zeros_like(x)
    flat, out = x.reshape(x.shape[0], -1), fd.reshape(x.shape[0], -1)
    for j in range(flat.shape[1]):
        xp, xm = flat.copy(), flat.copy()
        xp[:, j] += eps
        xm[:, j] -= eps
        out[:, j] = (f(xp.reshape(x.shape)) - f(xm.reshape(x.shape))) / (2 * eps)
    assert_close(analytic, fd, 1e-6, atol=1e-6 * np.abs(fd).max(), name=name)


def fd_check_candidates(value, W, b, act, sc, label):
    """:func:`fd_check` of a candidate score ``value(W, b, act)`` (C,) against its gradients
    ``sc.grad_W``, ``sc.grad_b`` and ``sc.grad_act`` (one entry per key of ``act``)."""
    fd_check(lambda w: value(w, b, act), W, sc.grad_W, 1e-6, f"{label}/dW")
    fd_check(lambda v: value(W, v, act), b, sc.grad_b, 1e-6, f"{label}/db")
    assert set(sc.grad_act) == set(act)
    for key in act:
        fd_check(lambda v: value(W, b, {**act, key: v}), act[key], sc.grad_act[key], 1e-6, f"{label}/d{key}")
