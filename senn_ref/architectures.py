"""Ready-made networks: ``mlp`` and ``convnet``.

Both return a :class:`senn_ref.network.Network` built from the hand-written
layers, deterministically from ``seed``.  Initialisation: Dense and Conv2D
weights LeCun-normal ``N(0, 1/fan_in)``, biases zero; rational units
``v, c, l ~ N(0, 1)`` (``rational_init="random"``, as fresh units in the
paper's released code) or the identity point ``(0, 0, 1)``.
"""
from __future__ import annotations

import numpy as np

from ._validate import check_option, check_positive_int
from .layers.activations import SiLU, Tanh
from .layers.conv2d import Conv2D
from .layers.dense import Dense
from .layers.flatten import Flatten
from .layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from .layers.rational import Rational
from .network import Network

ACTIVATIONS = ("rational", "tanh", "silu")
RATIONAL_INITS = ("random", "identity")


def activation_layer(name: str, shape: tuple[int, ...], rng: np.random.Generator,
                     rational_init: str = "random", backend: str | None = None):
    """An activation layer for per-example shape ``shape`` = (units,) or (C, H, W).

    ``backend`` (``"numba"`` | ``"numpy"`` | ``None``) is passed to the rational layer's
    kernels; tanh and SiLU are plain NumPy."""
    check_option(name, ACTIVATIONS, "activation")
    if name == "rational":
        check_option(rational_init, RATIONAL_INITS, "rational_init")
        return Rational(shape[0], init=rational_init, rng=rng, spatial=tuple(shape[1:]), backend=backend)
    return Tanh(tuple(shape)) if name == "tanh" else SiLU(tuple(shape))


def mlp(sizes, activation: str = "rational", seed: int = 0, rational_init: str = "random") -> Network:
    """Multi-layer perceptron ``Dense -> act -> ... -> Dense`` (no activation after the last layer).

    sizes : [n_in, hidden_1, ..., n_out], at least two entries, e.g. ``[2, 16, 1]``.
    activation : "rational" (per-unit rational, senn-math section 5), "tanh" or "silu".
    """
    sizes = [check_positive_int(s, "mlp size") for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"mlp sizes need at least [n_in, n_out], got {sizes}")
    check_option(activation, ACTIVATIONS, "activation")
    check_option(rational_init, RATIONAL_INITS, "rational_init")
    seed = check_positive_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, rng))
        if i < len(sizes) - 2:
            layers.append(activation_layer(activation, (b,), rng, rational_init))
    return Network(layers)


def convnet(image_size: int = 8, in_channels: int = 1, channels=(16, 32), n_classes: int = 10,
            kernel_size: int = 3, activation: str = "rational", pool: str = "avg",
            head: str = "flatten", seed: int = 0, rational_init: str = "random",
            backend: str | None = None) -> Network:
    """A small conv net for square images (8x8 digits, 28x28 MNIST).

    For each entry ``c`` of ``channels``: Conv2D(kernel_size, stride 1, 'same' zero
    padding) -> activation -> 2x2 pooling (``pool`` = "avg" or "max"; skipped once the
    image is 1x1 or smaller than 2).  Then ``head`` = "flatten" (Flatten -> Dense) or
    "gap" (global average pooling -> Dense) to ``n_classes`` logits.

    ``backend`` = "numba" | "numpy" | None selects the kernels of every layer that has
    them (Conv2D, Rational, AvgPool2D/MaxPool2D); None follows :mod:`senn_ref.backend`
    at call time.

    Default for 8x8 inputs: 1x8x8 -> conv 16 -> 16x4x4 -> conv 32 -> 32x2x2 -> 128 -> 10.
    Odd kernel sizes keep the spatial size ('same' padding = kernel_size // 2).
    """
    image_size = check_positive_int(image_size, "image_size")
    in_channels = check_positive_int(in_channels, "in_channels")
    n_classes = check_positive_int(n_classes, "n_classes")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
    channels = [check_positive_int(c, "channels entry") for c in channels]
    check_option(activation, ACTIVATIONS, "activation")
    check_option(pool, ("avg", "max"), "pool")
    check_option(head, ("flatten", "gap"), "head")
    seed = check_positive_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    layers, c, hw = [], in_channels, image_size
    for out_c in channels:
        layers.append(Conv2D(c, out_c, kernel_size, stride=1, padding=kernel_size // 2, rng=rng,
                             backend=backend, in_hw=(hw, hw)))
        layers.append(activation_layer(activation, (out_c, hw, hw), rng, rational_init, backend))
        c = out_c
        if hw >= 2:
            pool_cls = AvgPool2D if pool == "avg" else MaxPool2D
            layers.append(pool_cls(2, in_shape=(c, hw, hw), backend=backend))
            hw //= 2
    if head == "flatten":
        layers.append(Flatten(in_shape=(c, hw, hw)))
        layers.append(Dense(c * hw * hw, n_classes, rng))
    else:
        layers.append(GlobalAvgPool(in_shape=(c, hw, hw)))
        layers.append(Dense(c, n_classes, rng))
    return Network(layers)
