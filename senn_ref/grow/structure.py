"""Where a hidden layer's units live: the producer, the consumer and the path between them.

A *hidden layer* of a sequential network is identified by its **producer**, the
Dense or Conv2D at ``net.layers[producer]`` whose output units (dense) or
channels (conv) are the pre-activations of the hidden units.  Its **consumer** is
the next Dense or Conv2D.  Between them sit only unit-wise layers, which act on
every unit (channel) separately and keep axis 1 as the unit axis:

* per-unit activations with parameters of shape ``(units,)`` (:class:`Rational`);
* parameter-free elementwise activations (:class:`Tanh`, :class:`SiLU`);
* pooling (:class:`AvgPool2D`, :class:`MaxPool2D`, :class:`GlobalAvgPool`);
* at most one :class:`Flatten`, after which unit ``u`` of a ``(C, H, W)`` map owns the
  ``S = H W`` consecutive flat positions ``u S, ..., u S + S - 1`` (row-major).

So unit ``u`` of the producer feeds the consumer's input "slot" ``u``: column block
``u S .. u S + S - 1`` of a Dense consumer's ``W`` (``S = 1`` without a flatten), or
input channel ``u`` of a Conv2D consumer's ``W[:, u]``.  Growth adds, removes and
permutes whole slots.  ``derivations/14-growth-operations.md`` section 1; tests in
``tests/test_grow_ops.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_network
from ..layers.activations import Elementwise
from ..layers.base import ParameterFree
from ..layers.conv2d import Conv2D
from ..layers.dense import Dense
from ..layers.flatten import Flatten
from ..layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from ..layers.rational import Rational

#: layers that may sit between a producer and its consumer (unit-wise maps)
UNITWISE = (Rational, Elementwise, AvgPool2D, MaxPool2D, GlobalAvgPool, Flatten)


def is_linear_map(layer) -> bool:
    """True for the layers that produce or consume hidden units (Dense, Conv2D).
    ``derivations/14-growth-operations.md`` section 1."""
    return isinstance(layer, (Dense, Conv2D))


@dataclass(frozen=True)
class HiddenPath:
    """A hidden layer located in ``net.layers``.

    producer : index of the Dense/Conv2D whose outputs are the units' pre-activations
    consumer : index of the next Dense/Conv2D (reads the units' activations)
    between  : indices strictly between the two (unit-wise layers, in order)
    units    : number of hidden units (producer output units / channels)
    slot     : consumer input entries per unit: ``S = H W`` through a Flatten, else 1
    flatten  : index of the Flatten in ``between``'s range, or None
    """
    producer: int
    consumer: int
    between: tuple
    units: int
    slot: int
    flatten: int | None

    def consumer_columns(self, units) -> np.ndarray:
        """Consumer input coordinates owned by ``units`` (int array (k,)): for a Dense consumer
        the columns ``u S + j`` (``j < S``), ordered unit by unit, shape (k S,); for a Conv2D
        consumer the input channels themselves, shape (k,)."""
        units = np.asarray(units, dtype=np.int64).reshape(-1)
        if self.slot == 1:
            return units.copy()
        return (units[:, None] * self.slot + np.arange(self.slot)[None, :]).reshape(-1)


def _check_index(net, layer, name: str = "layer") -> int:
    check_network(net)
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer index into net.layers, got {type(layer).__name__}")
    n = len(net.layers)
    if not 0 <= layer < n:
        raise ValueError(f"{name}: index {layer} out of range 0..{n - 1}")
    return int(layer)


def hidden_path(net, layer) -> HiddenPath:
    """The :class:`HiddenPath` of the hidden layer produced by ``net.layers[layer]``.

    Raises ValueError (naming ``layer``) unless ``net.layers[layer]`` is a Dense or Conv2D
    followed, through unit-wise layers only, by another Dense or Conv2D.
    ``derivations/14-growth-operations.md`` section 1.
    """
    i = _check_index(net, layer)
    prod = net.layers[i]
    if not is_linear_map(prod):
        raise ValueError(f"layer: net.layers[{i}] is {prod._label()}, not a Dense or Conv2D "
                         f"producing hidden units")
    units = int(prod.params["W"].shape[0])
    between, flatten = [], None
    for j in range(i + 1, len(net.layers)):
        la = net.layers[j]
        if is_linear_map(la):
            slot = 1
            if flatten is not None:
                shape = net.layers[flatten].in_shape
                slot = int(np.prod(shape[1:], dtype=np.int64))
            if isinstance(la, Conv2D) and flatten is not None:
                raise ValueError(f"layer: a Conv2D consumer after a Flatten is not supported ({la._label()})")
            return HiddenPath(i, j, tuple(between), units, slot, flatten)
        if not isinstance(la, UNITWISE):
            raise ValueError(f"layer: {la._label()} between {prod._label()} and its consumer is not a "
                             f"unit-wise layer; growth cannot pass through it")
        if isinstance(la, Flatten):
            if flatten is not None:
                raise ValueError("layer: two Flatten layers between a producer and its consumer")
            flatten = j
        between.append(j)
    raise ValueError(f"layer: {prod._label()} at index {i} is the output layer (no Dense/Conv2D "
                     f"consumes its outputs), so it has no hidden units to grow")


def check_path(net, path, name: str = "path") -> HiddenPath:
    """``path`` must be the current :class:`HiddenPath` of its producer in ``net`` (TypeError for
    anything else, ValueError for a stale path, e.g. one taken before a growth step).
    ``derivations/14-growth-operations.md`` section 1."""
    if not isinstance(path, HiddenPath):
        raise TypeError(f"{name}: expected a HiddenPath (grow.hidden_path(net, layer)), got "
                        f"{type(path).__name__}")
    try:
        current = hidden_path(net, path.producer)
    except ValueError as exc:
        raise ValueError(f"{name}: does not describe a hidden layer of this network ({exc})") from None
    if current != path:
        raise ValueError(f"{name}: {path} is stale; the network's hidden layer at {path.producer} is "
                         f"now {current} (call hidden_path again after growing or pruning)")
    return path


def growable_layers(net) -> list[int]:
    """Indices of every producer that has a consumer (the hidden layers of ``net``), in order.
    ``derivations/14-growth-operations.md`` section 1."""
    check_network(net)
    out = []
    for i, la in enumerate(net.layers):
        if is_linear_map(la):
            try:
                hidden_path(net, i)
            except ValueError:
                continue
            out.append(i)
    return out


def unit_layers(net, path: HiddenPath) -> list:
    """The layers on the path that carry per-unit parameters ((units,)-shaped arrays), e.g.
    Rational; the layers whose arrays width growth must extend besides producer and consumer.
    ``derivations/14-growth-operations.md`` section 1."""
    return [net.layers[j] for j in path.between if net.layers[j].param_names]


def shape_layers(net, path: HiddenPath) -> list:
    """The parameter-free layers on the path (their ``in_shape`` first entry is the unit count).
    ``derivations/14-growth-operations.md`` section 1."""
    return [net.layers[j] for j in path.between
            if isinstance(net.layers[j], ParameterFree)]
