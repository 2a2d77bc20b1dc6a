"""Pruning: remove hidden units (dense) or channels (conv) from a hidden layer, in place.

For the hidden layer produced by ``net.layers[layer]`` (:func:`~.structure.hidden_path`)
and a set ``R`` of its units, with ``K`` the kept units in increasing order:

* producer ``W[K]`` and ``b[K]`` (Dense rows / Conv2D output channels);
* every per-unit activation parameter on the path (``Rational`` ``v, c, l``) ``[K]``;
* every parameter-free layer on the path gets ``in_shape = (|K|,) + spatial``;
* consumer: a Dense keeps the columns ``consumer_columns(K)`` (``S`` per unit through a
  Flatten), a Conv2D keeps the input channels ``W[:, K]``; its bias is untouched.

Optional ``compensation`` ``d`` (P_before,), in the flat order *before* pruning: first
``theta <- theta + d`` on every surviving parameter, then the removal; entries of ``d`` on
removed parameters are ignored (the parameters they would change disappear).  With
``d = obs_compensation(...)`` (``pruning.py``), which sets ``d_b = -w_b`` on the removed
units' outgoing weights, the pruned network computes exactly what the unpruned one
computes at ``theta + d``.

Optimiser state (``optimizer``: None, one optimiser or a list) is shrunk the same way through
:mod:`~.carry_state` (per-key :class:`AxisMap` with -1 on removed positions):
:meth:`Optimizer.shrink_state` for SGD/Adam/NaturalGradientCG slots,
:meth:`KFAC.shrink_state` for K-FAC factors (producer G rows, consumer A rows: one
per column, ``kh*kw`` patch coordinates per channel) and Rational blocks.
Everything is validated before anything changes.
``derivations/18-pruning.md`` sections 1 and 6; tests in ``tests/test_pruning.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_shape, refuse_huge_indices
from ..layers.conv2d import Conv2D
from .carry_state import AxisMap, StateChange, carry_state, check_carry, check_optimizers
from .record import Growth, build_record, layout
from .structure import HiddenPath, hidden_path, shape_layers, unit_layers


def check_units(units, n_units: int, name: str = "units", leave_one: bool = True) -> np.ndarray:
    """Validated unit indices to remove: 1-d distinct integers in ``0..n_units-1``, at least one,
    and (``leave_one``) at least one unit left.  Returns them sorted (int64).
    18-pruning.md section 1."""
    if isinstance(units, (bool, np.bool_)):
        raise TypeError(f"{name}: expected integer unit indices, got a bool")
    arr = np.asarray(units)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:               # before the dtype: np.asarray([]) is float64
        raise ValueError(f"{name}: empty; name at least one unit to remove")
    refuse_huge_indices(arr, name)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{name}: expected a 1-d array of integer unit indices, got {units!r}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= n_units:
        raise ValueError(f"{name}: indices {arr.tolist()} out of range 0..{n_units - 1}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{name}: repeated unit indices {arr.tolist()}")
    if leave_one and arr.size >= n_units:
        raise ValueError(f"{name}: removing {arr.size} of {n_units} units would leave none; "
                         f"at least one unit must remain")
    return np.sort(arr)


def _patch_coordinates(consumer, channels: np.ndarray) -> np.ndarray:
    """Unfolded patch coordinates ``c*kh*kw + j`` (j < kh*kw) of input channels ``channels`` of a
    Conv2D, channel by channel (the order of ``W.reshape(O, -1)``; 18-pruning.md section 5)."""
    kk = int(np.prod(consumer.kernel_size))
    return (channels[:, None] * kk + np.arange(kk)[None, :]).reshape(-1)


def consumer_input_coordinates(net, path: HiddenPath, units) -> np.ndarray:
    """The consumer's K-FAC input coordinates (rows of ``A`` without the bias) owned by
    ``units``: Dense columns ``u S + j``, Conv2D patch coordinates ``u kh kw + j``; unit by unit.
    18-pruning.md section 5."""
    cols = path.consumer_columns(units)
    consumer = net.layers[path.consumer]
    return _patch_coordinates(consumer, cols) if isinstance(consumer, Conv2D) else cols


def _shrink_map(shape, axis: int, kept: np.ndarray) -> AxisMap:
    """:class:`AxisMap` keeping the positions ``kept`` (sorted) of ``axis``; others -1."""
    pos = [np.arange(n) for n in shape]
    pos[axis] = np.full(shape[axis], -1, dtype=np.int64)
    pos[axis][kept] = np.arange(kept.size)
    new_shape = tuple(kept.size if a == axis else n for a, n in enumerate(shape))
    return AxisMap(new_shape, tuple(pos))


def prune_neurons(net, layer, units, compensation=None, optimizer=None) -> Growth:
    """Remove hidden units ``units`` of the layer produced by ``net.layers[layer]`` (in place).

    Parameters
    ----------
    net : Network;  layer : index of the producer (Dense or Conv2D with a consumer)
    units : distinct ints (k,) in ``0..U-1``, k < U (U = the layer's units / channels)
    compensation : None or a flat update ``d`` (P_before,) in ``net.get_flat()`` order before
        pruning; survivors get ``theta + d``, entries on removed parameters are ignored
    optimizer : None, one optimiser or a list (SGD, Adam, NaturalGradientCG, KFAC); their
        state is shrunk alongside (kept entries bit for bit; 18-pruning.md section 6)

    Removes producer rows ``W[u], b[u]`` (Dense (out, in) / Conv2D (O, C, kh, kw)), per-unit
    activation parameters ``v, c, l [u]`` (units,), the consumer's columns ``u S .. u S + S - 1``
    (Dense (out, in); S = 1 without a Flatten) or input channel ``W[:, u]`` (Conv2D), and
    narrows the parameter-free layers in between.  Returns a :class:`Growth` of kind
    ``"prune_neurons"``: ``old_to_new`` (P_before,) with -1 on removed parameters, empty
    ``new_index``, ``details = {"units": [...], "compensated": bool}``.
    ``derivations/18-pruning.md`` section 1; ``tests/test_pruning.py``.
    """
    path = hidden_path(net, layer)
    removed = check_units(units, path.units)
    keep = np.setdiff1d(np.arange(path.units), removed)
    P = net.num_params()
    d = None
    if compensation is not None:
        d = as_float_array(compensation, "compensation", ndim=1)
        check_shape(d, (P,), "compensation")
    opts = check_optimizers(optimizer)
    producer, consumer = net.layers[path.producer], net.layers[path.consumer]
    per_unit = unit_layers(net, path)
    for la in per_unit:
        if any(la.params[k].shape != (path.units,) for k in la.param_names):
            raise ValueError(f"layer: {la._label()} on the path does not hold (units,) parameters")
    kept_in = keep if isinstance(consumer, Conv2D) else path.consumer_columns(keep)
    axes = {f"{la.name}.{k}": _shrink_map(la.params[k].shape, 0, keep)
            for la in (producer, *per_unit) for k in la.param_names}
    axes[f"{consumer.name}.W"] = _shrink_map(consumer.params["W"].shape, 1, kept_in)
    change = StateChange(axes, details={"producer": producer.name, "consumer": consumer.name,
                                        "removed": removed.tolist()})
    check_carry(opts, change)
    before = layout(net)

    # ---- every check passed: prune ----
    if d is not None:
        net.set_flat(net.get_flat() + d)
    params = {f"{la.name}.{k}": (la, k) for la in (producer, *per_unit, consumer) for k in la.param_names}
    for key, am in axes.items():
        la, k = params[key]
        la.params[k] = np.ascontiguousarray(la.params[k][np.ix_(*am.kept())])
    for la in shape_layers(net, path):
        la.set_in_shape((keep.size,) + tuple(la.in_shape[1:]))
    for la in (producer, *per_unit, consumer):
        la._cache = None
    net.check_structure()
    carry_state(opts, change)
    rewritten = ()
    if d is not None:
        rewritten = tuple(k for k, (start, shape) in before.items()
                          if np.any(d[start:start + int(np.prod(shape, dtype=np.int64))]))
    names = [net.layers[i].name for i in (path.producer,) + path.between + (path.consumer,)]
    return build_record("prune_neurons", before, net, {key: am.entry_map() for key, am in axes.items()},
                        names, rewritten=rewritten,
                        details={"units": removed.tolist(), "compensated": d is not None})
