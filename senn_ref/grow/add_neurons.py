"""Width growth: append ``k`` units (dense) or channels (conv) to a hidden layer, function preserved.

For the hidden layer produced by ``net.layers[layer]`` (:func:`~senn_ref.grow.structure.hidden_path`):

* producer (Dense ``W`` (units, in) / Conv2D ``W`` (units, C, kh, kw), ``b`` (units,)): the new
  incoming weights ``W_new`` (k, ...) and biases ``b_new`` (k,) become rows ``units..units+k-1``;
* every per-unit layer on the path (Rational: ``v, c, l`` (units,)) gets the new units'
  parameters appended (spatial sizes unchanged); every parameter-free layer on the path
  (pooling, Flatten, Tanh/SiLU) gets ``set_in_shape((units + k,) + rest)``;
* consumer: zero outgoing weights.  Dense: the new units' slot columns
  ``u S + j`` (``S = H W`` through a Flatten, else 1), which for appended units are the last
  ``k S`` columns (row-major flatten of ``(units + k, H, W)``); Conv2D: zero input channels
  ``W[:, units:units+k]``.

Since the consumer reads the new units only through zero weights, the output, the loss,
every ``e_n`` and every old parameter's gradient are unchanged; the new incoming
parameters get zero gradient, the new outgoing weights the gradient ``sum_n d_n h_n^T``.
``derivations/14-growth-operations.md`` section 3; tests in ``tests/test_grow_ops.py``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._validate import as_float_array, check_batch, check_rng, check_shape
from ..layers.conv2d import Conv2D
from .carry_state import (AxisMap, StateChange, append_map, carry_state, check_carry, check_optimizers,
                          refresh_new_inputs)
from .record import Growth, build_record, layout
from .structure import hidden_path, shape_layers, unit_layers


def _check_act(act, per_unit: list, k: int, rng) -> dict:
    """Validated per-unit parameters of the new units: layer name -> {param: (k,) array}.

    With one per-unit layer on the path ``act`` keys are its parameter names (Rational:
    v, c, l); with several they are ``"<layer name>.<param>"``.  ``act=None`` draws every
    parameter ~ N(0, 1) from ``rng`` (layer by layer, in parameter order)."""
    expected = {}
    for la in per_unit:
        for p in la.param_names:
            expected[p if len(per_unit) == 1 else f"{la.name}.{p}"] = (la.name, p)
    if act is None:
        if not expected:
            return {}
        if rng is None:
            raise ValueError(f"act: None means fresh units drawn from rng (senn-math section 5), but rng "
                             f"is None; pass act={{{', '.join(map(repr, expected))}}} or an rng")
        return {la.name: {p: rng.standard_normal(k) for p in la.param_names} for la in per_unit}
    if not isinstance(act, Mapping):
        raise TypeError(f"act: expected a dict of per-unit parameters or None, got {type(act).__name__}")
    if set(act) != set(expected):
        raise ValueError(f"act: keys must be exactly {sorted(expected)} (the per-unit parameters on the "
                         f"path), got {sorted(map(str, act))}")
    out = {la.name: {} for la in per_unit}
    for key, (name, p) in expected.items():
        arr = as_float_array(act[key], f"act[{key!r}]", ndim=1)
        check_shape(arr, (k,), f"act[{key!r}]")
        out[name][p] = arr.copy()
    return out


def _consumer_map(path, cons, k: int) -> AxisMap:
    """Map of the consumer's ``W``: Dense columns of the old units keep their order, the new
    units' slot columns are ``path.consumer_columns(units..units+k-1)``; Conv2D appends channels."""
    if isinstance(cons, Conv2D):
        return append_map(cons.params["W"].shape, 1, k)
    out, n_in = cons.params["W"].shape
    new_cols = path.consumer_columns(np.arange(path.units, path.units + k))
    free = np.ones(n_in + new_cols.size, dtype=bool)
    free[new_cols] = False
    return AxisMap((out, n_in + new_cols.size), (np.arange(out), np.flatnonzero(free)))


def add_neurons(net, layer, W, b=None, act=None, optimizer=None, rng=None, *, kfac_batch=None) -> Growth:
    """Append ``k`` units to the hidden layer produced by ``net.layers[layer]`` (in place).

    Parameters
    ----------
    net : Network;  layer : index of the producer (a Dense/Conv2D with a consumer)
    W : new incoming weights, (k, in) for a Dense producer, (k, C, kh, kw) for a Conv2D
    b : new biases (k,), default zeros
    act : per-unit activation parameters of the new units, ``{"v": (k,), "c": (k,), "l": (k,)}``
        for a Rational on the path (``"<layer>.<param>"`` keys with several per-unit layers);
        None draws them ~ N(0, 1) from ``rng`` (then required); Tanh/SiLU paths: None or {}
    optimizer : None, one optimiser or a list/tuple (SGD, Adam, NaturalGradientCG, KFAC) whose
        state is carried (:mod:`senn_ref.grow.carry_state`)
    rng : numpy Generator, used only when ``act`` is None
    kfac_batch : None, or a batch X (N,) + in_shape: a KFAC optimiser's consumer input factor
        then gets its new rows by the regression rule from this batch
        (:func:`~senn_ref.grow.carry_state.refresh_new_inputs`) instead of the zero/mean-diagonal
        padding (``derivations/14-growth-operations.md`` section 4.3)

    New parameters: producer rows ``W[units+i] = W_new[i]``, ``b[units+i] = b_new[i]``, per-unit
    parameters at index ``units+i``, consumer weights of the new units' slots = 0; so
    ``f_grown(x) = f(x)`` and every old gradient is unchanged.  Every argument is checked
    before anything changes.  Returns the :class:`Growth` (kind "add_neurons"; ``new_index``
    = all added entries: k*(fan_in+1) producer entries, the per-unit parameters and the
    consumer's zero weights).  ``derivations/14-growth-operations.md`` section 3.
    """
    path = hidden_path(net, layer)
    prod, cons = net.layers[path.producer], net.layers[path.consumer]
    fan = tuple(prod.params["W"].shape[1:])
    W = as_float_array(W, "W", ndim=1 + len(fan))
    check_shape(W, (None,) + fan, "W")
    k = W.shape[0]
    b = np.zeros(k) if b is None else as_float_array(b, "b", ndim=1)
    check_shape(b, (k,), "b")
    rng = check_rng(rng, "rng")
    per_unit = unit_layers(net, path)
    for la in per_unit:
        if any(la.params[p].shape != (path.units,) for p in la.param_names):
            raise ValueError(f"layer: {la._label()} on the path does not hold (units,) parameters")
    opts = check_optimizers(optimizer)
    if kfac_batch is not None:
        kfac_batch = check_batch(kfac_batch, net.in_shape, "kfac_batch")

    axes = {f"{prod.name}.W": append_map(prod.params["W"].shape, 0, k),
            f"{prod.name}.b": append_map(prod.params["b"].shape, 0, k)}
    for la in per_unit:
        for p in la.param_names:
            axes[f"{la.name}.{p}"] = append_map(la.params[p].shape, 0, k)
    cmap = _consumer_map(path, cons, k)
    axes[f"{cons.name}.W"] = cmap
    change = StateChange(axes, details={"producer": prod.name, "consumer": cons.name, "k": k})
    check_carry(opts, change)
    new_act = _check_act(act, per_unit, k, rng)      # last check: act=None draws from rng
    before = layout(net)

    # ---- every check passed: grow ----
    prod.params["W"] = np.concatenate([prod.params["W"], W], axis=0)
    prod.params["b"] = np.concatenate([prod.params["b"], b])
    for la in per_unit:
        for p in la.param_names:
            la.params[p] = np.concatenate([la.params[p], new_act[la.name][p]])
    for la in shape_layers(net, path):
        la.set_in_shape((path.units + k,) + tuple(la.in_shape[1:]))
    Wc = np.zeros(cmap.new_shape)
    Wc[np.ix_(*cmap.positions)] = cons.params["W"]
    cons.params["W"] = Wc
    net.check_structure()
    carry_state(opts, change)
    if kfac_batch is not None:
        refresh_new_inputs(opts, net, change, kfac_batch)
    names = [net.layers[i].name for i in (path.producer,) + path.between + (path.consumer,)]
    return build_record("add_neurons", before, net, {key: am.entry_map() for key, am in axes.items()},
                        names, details={"units_before": path.units, "units_after": path.units + k,
                                        "k": k, "producer": prod.name, "consumer": cons.name})
