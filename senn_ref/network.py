"""A sequential network of hand-written layers.

The network composes its layers' passes and owns the *flat parameter order*:
layers in sequence, within a layer its ``param_names`` order, every array
flattened row-major (C order).  Parameter keys are ``"<layer name>.<param>"``
(for example ``"dense0.W"``); layer names are unique and never reused within a
network, so optimiser and curvature state keyed by them survives growth.

Structure can change in place (``insert``, ``replace``, or a growth operation
that resizes a layer's arrays followed by ``check_structure``): nothing is
cached across structural changes except the layers' own forward caches, which
the next ``forward`` refreshes.  See ``derivations/01-conventions.md``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import backend as _backend
from . import buffered_pass, network_plan
from ._validate import as_float_array, check_batch, check_shape
from .layers.base import Layer
from .losses.base import check_loss


@dataclass
class Gradients:
    """Result of :meth:`Network.backward`.

    grads        : dict key -> array shaped like the parameter (batch sums, see Layer.backward)
    input_grad   : cotangent of the network input (N,) + in_shape, or None if not requested
    output_grads : list, entry i is the cotangent of layer i's output (what layer i's backward
                   received); for Dense/Conv2D this is the pre-activation gradient that K-FAC uses
    """
    grads: dict
    input_grad: np.ndarray | None = None
    output_grads: list = field(default_factory=list)

    def flat_grad(self) -> np.ndarray:
        """Gradients concatenated in the network's flat parameter order, shape (P,)."""
        if not self.grads:
            return np.zeros(0)
        return np.concatenate([g.ravel() for g in self.grads.values()])


class Network:
    """Sequential container.  ``Network(layers)``; see the module docstring."""

    def __init__(self, layers: list[Layer]) -> None:
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError("Network needs at least one layer (a non-empty list)")
        self.layers: list[Layer] = []
        self._name_counts: dict[str, int] = {}
        self._check_new(layers)
        self.layers = list(layers)
        self.check_structure()              # before naming: a refused list leaves its layers free
        for layer in self.layers:
            self._adopt(layer)

    @classmethod
    def restore(cls, layers: list[Layer], names: list[str], name_counts: dict[str, int]) -> "Network":
        """Rebuild a saved network with its original layer names and name counters
        (so keys like ``"dense0.W"`` and future names stay what they were).  Used by
        :func:`senn_ref.checkpoint.load`."""
        if len(names) != len(layers) or len(set(names)) != len(names):
            raise ValueError(f"restore: need {len(layers)} distinct layer names, got {names}")
        net = cls(layers)
        for layer, name in zip(layers, names):
            layer.name = str(name)
        counts = {str(k): int(v) for k, v in name_counts.items()}
        for k, v in net._name_counts.items():
            counts[k] = max(counts.get(k, 0), v)
        net._name_counts = counts
        return net

    # ---- structure ----------------------------------------------------------
    def _check_new(self, new_layers) -> None:
        """Raise (before any change) unless ``new_layers`` are distinct, unowned Layers.

        A layer object may appear in at most one network, once: a layer shared by two
        positions or two networks would share one forward cache (wrong gradients) and
        be renamed under the other network's keys.  A layer whose ``name`` is set
        belongs to a network already; insert a fresh layer (or a ``copy.deepcopy``
        with ``name = None``) instead."""
        seen: list[Layer] = []
        for i, layer in enumerate(new_layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a senn_ref Layer")
            if any(layer is other for other in self.layers):
                raise ValueError(f"{layer._label()} is already part of this network")
            if any(layer is other for other in seen):
                raise ValueError(f"layer {i} ({type(layer).__name__}) appears more than once "
                                 f"in the new layers; each position needs its own layer object")
            if layer.name is not None:
                raise ValueError(f"{layer._label()} already belongs to a network (it has the "
                                 f"name {layer.name!r}); use a fresh layer")
            seen.append(layer)

    def _adopt(self, layer: Layer) -> None:
        """Name a checked new layer ``<class><counter>`` and advance the counter."""
        prefix = type(layer).__name__.lower()
        k = self._name_counts.get(prefix, 0)
        self._name_counts[prefix] = k + 1
        layer.name = f"{prefix}{k}"

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Per-example input shape."""
        return tuple(self.layers[0].in_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-example output shape."""
        shape = self.in_shape
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
        return shape

    def check_structure(self) -> None:
        """Raise ValueError unless every layer's input shape equals its predecessor's output."""
        shape = tuple(self.layers[0].in_shape)
        for i, layer in enumerate(self.layers[1:], start=1):
            out = tuple(self.layers[i - 1].output_shape(shape))
            if tuple(layer.in_shape) != out:
                raise ValueError(f"layer {i} {layer._label()} expects per-example input {tuple(layer.in_shape)} "
                                 f"but layer {i - 1} {self.layers[i - 1]._label()} produces {out}")
            shape = out

    def insert(self, index: int, new_layers: list[Layer]) -> list[str]:
        """Insert layers before position ``index``; returns their new names.

        Everything is checked before anything changes (index type and range, that the
        new layers are distinct Layers not owned by any network, and the shapes): on
        any error the network and the new layers are left exactly as they were,
        name counters included.
        """
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"insert index must be an integer, got {type(index).__name__}")
        if not 0 <= index <= len(self.layers):
            raise ValueError(f"insert index {index} out of range 0..{len(self.layers)}")
        if not isinstance(new_layers, (list, tuple)) or not new_layers:
            raise ValueError("insert needs a non-empty list of layers")
        self._check_new(new_layers)
        trial = Network.__new__(Network)
        trial.layers = self.layers[:index] + list(new_layers) + self.layers[index:]
        trial.check_structure()
        for layer in new_layers:
            self._adopt(layer)
        self.layers[index:index] = list(new_layers)
        return [layer.name for layer in new_layers]

    def index_of(self, name: str) -> int:
        for i, layer in enumerate(self.layers):
            if layer.name == name:
                return i
        raise KeyError(f"no layer named {name!r}; layers are {[la.name for la in self.layers]}")

    def copy(self) -> "Network":
        """A deep copy (parameters, names, counters; forward caches dropped)."""
        clone = copy.deepcopy(self)
        clone.__dict__.pop("_sequential_plan", None)        # rebuilt on first use (network_plan)
        clone.__dict__.pop("_buffered_pass", None)          # and its buffers (buffered_pass)
        for layer in clone.layers:
            layer._cache = None
        return clone

    # ---- parameters ------------------------------------------------------------
    def named_params(self) -> dict[str, np.ndarray]:
        """Key -> parameter array (the layers' own arrays, not copies), in flat order."""
        return {f"{layer.name}.{k}": layer.params[k] for layer in self.layers for k in layer.param_names}

    def param_slices(self) -> dict[str, slice]:
        """Key -> slice of the flat vector holding that parameter."""
        out, start = {}, 0
        for key, p in self.named_params().items():
            out[key] = slice(start, start + p.size)
            start += p.size
        return out

    def num_params(self) -> int:
        """Total number of scalar parameters P."""
        return int(sum(p.size for p in self.named_params().values()))

    def get_flat(self) -> np.ndarray:
        """All parameters as one new vector (P,), in the documented flat order."""
        params = self.named_params()
        if not params:
            return np.zeros(0)
        return np.concatenate([p.ravel() for p in params.values()])

    def set_flat(self, theta) -> None:
        """Write a flat vector (P,) into the parameters (validated first; arrays keep their identity)."""
        theta = as_float_array(theta, "theta", ndim=1, allow_empty=True)
        check_shape(theta, (self.num_params(),), "theta")
        start = 0
        for layer in self.layers:
            for k in layer.param_names:
                arr = layer.params[k]
                arr[...] = theta[start:start + arr.size].reshape(arr.shape)
                start += arr.size

    def unflatten(self, v) -> dict[str, np.ndarray]:
        """Split a flat vector (P,) into key -> array shaped like the parameters (views of v)."""
        v = as_float_array(v, "flat vector", ndim=1, allow_empty=True)
        check_shape(v, (self.num_params(),), "flat vector")
        params = self.named_params()
        return {k: v[sl].reshape(params[k].shape) for k, sl in self.param_slices().items()}

    # ---- passes -----------------------------------------------------------------
    def forward(self, X) -> np.ndarray:
        """Network output for a batch X of shape (N,) + in_shape -> (N,) + out_shape.

        If a layer raises (e.g. an overflow produces inf that the next layer refuses),
        every layer's cache is dropped before the error propagates, so a later
        backward/jvp raises instead of mixing caches from two different inputs."""
        checked = check_batch(X, self.in_shape, "X")
        # activations between layers are fresh arrays no caller can reach, so layers need
        # not copy them before caching (Layer.forward_private); the network input is private
        # too when validation had to convert it (float32, non-contiguous, a list)
        private = not (isinstance(X, np.ndarray) and np.may_share_memory(checked, X))
        X = checked
        try:
            for layer in self.layers:
                X = layer.forward_private(X) if private else layer.forward(X)
                private = True
        except BaseException:
            for layer in self.layers:
                layer._cache = None
            raise
        return X

    def backward(self, dY, need_input_grad: bool = False) -> Gradients:
        """Reverse pass from output cotangents dY (N,) + out_shape at the last forward point.

        ``grads[key]`` is ``sum_n J_n^T dY_n`` for that parameter (pass e/N for a mean loss).
        """
        grads: dict[str, np.ndarray] = {}
        outgrads: list = [None] * len(self.layers)
        g = dY
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            outgrads[i] = g
            g, lgrads = layer.backward(g, need_input_grad=need_input_grad or i > 0)
            for k in reversed(layer.param_names):
                grads[f"{layer.name}.{k}"] = lgrads[k]
        ordered = {k: grads[k] for k in reversed(list(grads))}
        return Gradients(ordered, g if need_input_grad else None, outgrads)

    def jvp(self, dparams: dict | None = None, dX=None) -> np.ndarray:
        """Forward-mode pass: ``sum_p J_p dparams[p] + J_X dX`` at the last forward point.

        dparams maps parameter keys to tangents shaped like the parameters
        (missing keys are zero tangents); dX is an input tangent or None.
        """
        if dparams:
            unknown = set(dparams) - set(self.named_params())
            if unknown:
                raise ValueError(f"unknown parameter key(s) {sorted(unknown)}")
        t = dX
        for layer in self.layers:
            local = None
            if dparams:
                local = {k: dparams[f"{layer.name}.{k}"] for k in layer.param_names
                         if f"{layer.name}.{k}" in dparams}
            t = layer.jvp(t, local)
        return t

    def jvp_flat(self, v) -> np.ndarray:
        """``J v`` for a flat parameter tangent v (P,), per example: (N,) + out_shape."""
        return self.jvp(self.unflatten(v))

    def loss_and_grad(self, X, Y, loss) -> tuple[float, Gradients]:
        """Mean loss ``L = (1/N) sum_n l_n`` and its gradient (backward with ``e / N``).

        The loss sees the output flattened per example, (N, K) with K = prod(out_shape).
        Under the ``"numba"`` backend a sequential Dense/Tanh/SiLU/Rational network runs the
        compiled whole-network passes of :mod:`senn_ref.network_plan` (the same numbers to
        rounding, the same caches and errors); otherwise a sequential Dense/Tanh/SiLU network
        runs the layer-wise passes in reused buffers of :mod:`senn_ref.buffered_pass` (the same
        numbers bit for bit, the same caches and errors); ``derivations/24-sequential-fast-path.md``
        sections 1 and 6.
        """
        check_loss(loss)
        checked = check_batch(X, self.in_shape, "X")
        if _backend.get_backend() == "numba":
            fast = network_plan.loss_and_grad(self, checked, Y, loss)
            if fast is not None:
                return fast
        fast = buffered_pass.loss_and_grad(self, checked, Y, loss)
        if fast is not None:
            return fast
        F = self.forward(X)
        N = F.shape[0]
        value, E = loss.value_and_grad(F.reshape(N, -1), Y)
        return value, self.backward(E.reshape(F.shape) / N)

    # ---- display --------------------------------------------------------------------
    def summary(self) -> str:
        """One line per layer: name, output shape, parameter count."""
        lines, shape = [], self.in_shape
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
            lines.append(f"{layer.name:<14} -> {str(shape):<16} {layer.num_params():>8d} params")
        lines.append(f"{'total':<31} {self.num_params():>8d} params")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Network({[layer.name for layer in self.layers]}, params={self.num_params()})"
