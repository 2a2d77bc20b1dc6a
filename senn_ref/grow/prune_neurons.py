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

Optimiser state (``optimizer``: None, one optimiser or a list) is shrunk the same way:
:meth:`Optimizer.shrink_state` for SGD/Adam/NaturalGradientCG slots,
:meth:`KFAC.shrink_state` for K-FAC factors (producer G rows, consumer A rows: one
per column, ``kh*kw`` patch coordinates per channel) and Rational blocks.
Everything is validated before anything changes.
``derivations/18-pruning.md`` sections 1 and 6; tests in ``tests/test_pruning.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_shape
from ..layers.conv2d import Conv2D
from ..optim.kfac import KFAC
from ..optim.state import Optimizer
from .record import Growth, build_record, layout, shrink_map
from .structure import HiddenPath, hidden_path, shape_layers, unit_layers


def check_units(units, n_units: int, name: str = "units") -> np.ndarray:
    """Validated unit indices to remove: 1-d distinct integers in ``0..n_units-1``, at least one,
    and at least one unit left.  Returns them sorted (int64).  18-pruning.md section 1."""
    if isinstance(units, (bool, np.bool_)):
        raise TypeError(f"{name}: expected integer unit indices, got a bool")
    arr = np.asarray(units)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{name}: expected a 1-d array of integer unit indices, got {units!r}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty; name at least one unit to remove")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= n_units:
        raise ValueError(f"{name}: indices {arr.tolist()} out of range 0..{n_units - 1}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{name}: repeated unit indices {arr.tolist()}")
    if arr.size >= n_units:
        raise ValueError(f"{name}: removing {arr.size} of {n_units} units would leave none; "
                         f"at least one unit must remain")
    return np.sort(arr)


def optimizer_list(optimizer, name: str = "optimizer") -> list:
    """None -> [], one optimiser -> [it], a list/tuple -> its items; each must be an
    :class:`Optimizer` (SGD, Adam, NaturalGradientCG) or a :class:`KFAC`."""
    if optimizer is None:
        return []
    items = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    for i, opt in enumerate(items):
        if not isinstance(opt, (Optimizer, KFAC)):
            raise TypeError(f"{name}: item {i} is a {type(opt).__name__}, not a senn_ref optimiser "
                            f"(Optimizer subclass or KFAC)")
    return items


def _patch_coordinates(consumer, channels: np.ndarray) -> np.ndarray:
    """Unfolded patch coordinates ``c*kh*kw + j`` (j < kh*kw) of input channels ``channels`` of a
    Conv2D, channel by channel (the order of ``W.reshape(O, -1)``; 18-pruning.md section 6)."""
    kk = int(np.prod(consumer.kernel_size))
    return (channels[:, None] * kk + np.arange(kk)[None, :]).reshape(-1)


def consumer_input_coordinates(net, path: HiddenPath, units) -> np.ndarray:
    """The consumer's K-FAC input coordinates (rows of ``A`` without the bias) owned by
    ``units``: Dense columns ``u S + j``, Conv2D patch coordinates ``u kh kw + j``; unit by unit.
    18-pruning.md section 6."""
    cols = path.consumer_columns(units)
    consumer = net.layers[path.consumer]
    return _patch_coordinates(consumer, cols) if isinstance(consumer, Conv2D) else cols


def _check_state(opts, net, path: HiddenPath, plans) -> None:
    """Refuse (before any change) optimiser state that does not match the current parameters."""
    for opt in opts:
        if isinstance(opt, KFAC):
            prod, cons = net.layers[path.producer], net.layers[path.consumer]
            f, g = opt.factors.get(prod.name), opt.factors.get(cons.name)
            if f is not None and f.G.shape[0] != path.units:
                raise ValueError(f"optimizer: K-FAC G of {prod.name!r} has {f.G.shape[0]} rows but the layer "
                                 f"has {path.units} units (pad_state missing?)")
            n_in = cons.params["W"].size // cons.params["W"].shape[0]
            if g is not None and g.A.shape[0] - int(g.with_bias) != n_in:
                raise ValueError(f"optimizer: K-FAC A of {cons.name!r} has {g.A.shape[0]} rows, the layer "
                                 f"has {n_in} inputs (pad_state missing?)")
            for la in unit_layers(net, path):
                B = opt.blocks.get(la.name)
                if B is not None and B.shape[0] != path.units:
                    raise ValueError(f"optimizer: K-FAC blocks of {la.name!r} have {B.shape[0]} units, "
                                     f"the layer has {path.units}")
            continue
        for la, k, _, _ in plans:
            key = f"{la.name}.{k}"
            shape = opt.state_shape(key)
            if shape is not None and shape != la.params[k].shape:
                raise ValueError(f"optimizer: state of {key!r} has shape {shape}, the parameter "
                                 f"{la.params[k].shape} (pad_state missing?)")


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
    opts = optimizer_list(optimizer)
    producer, consumer = net.layers[path.producer], net.layers[path.consumer]
    conv_consumer = isinstance(consumer, Conv2D)
    keep_cols = path.consumer_columns(keep)
    keep_in = consumer_input_coordinates(net, path, keep)

    # every shrink plan is built (and its index checked) before anything changes
    maps, plans = {}, []            # plans: (layer, param name, axis, kept positions)
    for k in producer.param_names:
        plans.append((producer, k, 0, keep))
    for la in unit_layers(net, path):
        for k in la.param_names:
            plans.append((la, k, 0, keep))
    plans.append((consumer, "W", 1, keep if conv_consumer else keep_cols))
    for la, k, axis, idx in plans:
        shape = la.params[k].shape
        index = (slice(None),) * axis + (idx,)
        maps[f"{la.name}.{k}"] = shrink_map(shape, index)

    _check_state(opts, net, path, plans)

    before = layout(net)
    if d is not None:
        theta = net.get_flat() + d
        net.set_flat(theta)
    for la, k, axis, idx in plans:
        la.params[k] = np.ascontiguousarray(np.take(la.params[k], idx, axis=axis))
    for la in shape_layers(net, path):
        la.set_in_shape((keep.size,) + tuple(la.in_shape[1:]))
    for la in (producer, consumer, *unit_layers(net, path)):
        la._cache = None
    net.check_structure()

    for opt in opts:
        if isinstance(opt, KFAC):
            opt.shrink_state(producer.name, out_keep=keep)
            for la in unit_layers(net, path):
                opt.shrink_state(la.name, out_keep=keep)
            opt.shrink_state(consumer.name, in_keep=keep_in)
        else:
            for la, k, axis, idx in plans:
                opt.shrink_state(f"{la.name}.{k}", (None,) * axis + (idx,))
    rewritten = ()
    if d is not None:
        rewritten = tuple(k for k, (start, shape) in before.items()
                          if np.any(d[start:start + int(np.prod(shape, dtype=np.int64))]))
    return build_record("prune_neurons", before, net, maps,
                        layers=(producer.name, *[la.name for la in unit_layers(net, path)], consumer.name),
                        rewritten=rewritten,
                        details={"units": removed.tolist(), "compensated": d is not None})
