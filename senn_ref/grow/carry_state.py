"""Carrying optimiser and K-FAC state through a growth operation (add, prune, insert).

An operation that changes parameter arrays describes the change once, per parameter key,
as an :class:`AxisMap`: for every axis of the old array, the new position of each old
index along that axis (``-1``: removed), and the new shape.  Adding units, removing units
and permuting them are all such per-axis ("product") maps; so are the consumer's columns,
even through a Flatten (the unit axis of a Conv2D consumer's ``W`` is axis 1, and a Dense
consumer's columns are listed one by one).  A :class:`StateChange` collects the maps of
every changed key plus the keys that disappear.  Then, for a list of optimisers::

    opts = check_optimizers(optimizer)          # validation, before anything changes
    change = StateChange({key: AxisMap(...), ...}, dropped=(...))
    check_carry(opts, change)                   # state consistent with the old shapes?
    ... change the network ...
    carry_state(opts, change)                   # no refusal once check_carry passed

What each optimiser gets (``derivations/14-growth-operations.md`` section 4):

* SGD, Adam, NaturalGradientCG (:class:`~senn_ref.optim.state.Optimizer`): removed entries
  are dropped with ``shrink_state``; then ``pad_state(key, new_shape, np.ix_(*positions))``
  copies every surviving entry bit for bit and gives every new entry what a fresh slot
  gets (zeros: momentum, moments, Adam's per-element step count, CG warm start), except
  Adam's ``grown`` flag, 1 on new entries (no bias correction of their first moment:
  ``derivations/08-optimisers.md`` section 4.1).
* KFAC (:class:`~senn_ref.optim.KFAC`), per layer: the map of ``"<layer>.W"`` gives the
  output map (axis 0) and the input-coordinate map (axes 1.. combined row-major, so a
  Conv2D's new input channel owns the ``kh*kw`` patch coordinates ``c*kh*kw + i*kw + j``,
  and a Dense consumer after a Flatten owns its new unit's slot columns); a Rational
  layer's per-unit map is that of its first per-unit key (``"<layer>.v"``).  Removals go through ``shrink_state``,
  additions through ``pad_state`` (zero off-diagonal, mean old diagonal on the new
  diagonal; section 4.3 derives what the exact new rows are).  Given a batch,
  :func:`refresh_new_inputs` replaces the padding of every layer that gained *input*
  coordinates (the consumer's ``A``) by the PSD regression rule :func:`regressed_rows`.
* Keys listed in ``dropped`` (parameters of removed layers) lose their state
  (``drop_state``; for KFAC, the layer of every dropped key).

Parameters whose shape did not change need no entry.  An optimiser that has no state
for a key yet is left alone (its state is created at the next step with the new shape).
Tests: ``tests/test_grow_state.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..optim.kfac import KFAC
from ..optim.state import Optimizer


def _kept(positions: np.ndarray) -> np.ndarray:
    """Old indices along one axis that survive (positions >= 0), ordered by new position."""
    keep = np.flatnonzero(positions >= 0)
    return keep[np.argsort(positions[keep], kind="stable")]


@dataclass(frozen=True)
class AxisMap:
    """Where the entries of one parameter array go: ``positions[a]`` (old_shape[a],) int64 is
    the new index along axis ``a`` of each old index (-1: removed); ``new_shape`` the new shape.
    The new array holds ``old[i0, i1, ...]`` at ``[positions[0][i0], positions[1][i1], ...]``.
    ``derivations/14-growth-operations.md`` section 4.1; ``tests/test_grow_state.py``."""
    new_shape: tuple
    positions: tuple

    def __post_init__(self):
        if not isinstance(self.new_shape, (tuple, list)) or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in self.new_shape):
            raise TypeError(f"AxisMap: new_shape must be a tuple of ints, got {self.new_shape!r}")
        if any(s < 0 for s in self.new_shape):
            raise ValueError(f"AxisMap: new_shape must be non-negative, got {tuple(self.new_shape)}")
        if not isinstance(self.positions, (tuple, list)):
            raise TypeError(f"AxisMap: positions must be a tuple of integer arrays, got {type(self.positions).__name__}")
        shape = tuple(int(s) for s in self.new_shape)
        raw = [np.asarray(p) for p in self.positions]
        for a, p in enumerate(raw):
            if p.size and p.dtype.kind not in "iu":     # floats would be truncated silently
                raise TypeError(f"AxisMap: positions[{a}] must hold integers, got dtype {p.dtype}")
        pos = tuple(p.astype(np.int64).reshape(-1) for p in raw)
        if len(pos) != len(shape):
            raise ValueError(f"AxisMap: positions has {len(pos)} arrays for the {len(shape)}-d new_shape {shape}")
        for a, (p, n) in enumerate(zip(pos, shape)):
            kept = p[p >= 0]
            if kept.size and (kept.max() >= n or np.unique(kept).size != kept.size) or np.any(p < -1):
                raise ValueError(f"AxisMap: axis {a} positions must be distinct in 0..{n - 1} or -1, "
                                 f"got {p.tolist()}")
        object.__setattr__(self, "new_shape", shape)
        object.__setattr__(self, "positions", pos)

    @property
    def old_shape(self) -> tuple:
        return tuple(p.size for p in self.positions)

    def kept(self) -> tuple:
        """Per axis, the old indices that survive, ordered by their new position (int64 arrays)."""
        return tuple(_kept(p) for p in self.positions)

    def removes(self) -> bool:
        return any(np.any(p < 0) for p in self.positions)

    def entry_map(self) -> np.ndarray:
        """Old-shaped int64 array of new local (row-major) positions, -1 for removed entries:
        the per-key map that :func:`senn_ref.grow.record.build_record` takes."""
        grids = np.ix_(*self.positions)
        flat = np.ravel_multi_index(tuple(np.maximum(g, 0) for g in grids), self.new_shape)
        dead = np.zeros(self.old_shape, dtype=bool)
        for g in grids:
            dead = dead | (g < 0)
        return np.where(dead, -1, flat).astype(np.int64)

    def combined_tail(self) -> tuple:
        """``(positions, new size)`` of the axes 1.. flattened row-major (a layer's input
        coordinates: Dense columns, or Conv2D ``c*kh*kw + i*kw + j``)."""
        tail = AxisMap(self.new_shape[1:], self.positions[1:])
        return tail.entry_map().reshape(-1), int(np.prod(self.new_shape[1:], dtype=np.int64))


def append_map(old_shape, axis: int, k: int) -> AxisMap:
    """The map of appending ``k`` entries at the end of ``axis`` of an array of ``old_shape``
    (every old entry keeps its index; the new shape has ``old_shape[axis] + k`` there).
    14-growth-operations.md section 4.1."""
    old_shape = tuple(int(s) for s in old_shape)
    new_shape = tuple(s + k if a == axis else s for a, s in enumerate(old_shape))
    return AxisMap(new_shape, tuple(np.arange(s) for s in old_shape))


@dataclass
class StateChange:
    """An operation's effect on parameter keys: ``axes`` key -> :class:`AxisMap` for every key
    whose array changed shape or order; ``dropped`` keys that no longer exist.
    14-growth-operations.md section 4.1."""
    axes: dict
    dropped: tuple = ()
    details: dict = field(default_factory=dict)


def check_optimizers(optimizer) -> list:
    """``optimizer`` (None, one optimiser, or a list/tuple of them) as a list, validated:
    each an SGD/Adam/NaturalGradientCG (:class:`Optimizer`) or :class:`KFAC`, none twice.
    TypeError/ValueError naming ``optimizer``.  14-growth-operations.md section 4."""
    if optimizer is None:
        return []
    opts = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    for i, o in enumerate(opts):
        if not isinstance(o, (Optimizer, KFAC)):
            raise TypeError(f"optimizer: entry {i} is a {type(o).__name__}, expected an SGD, Adam, "
                            f"NaturalGradientCG or KFAC optimiser (or None)")
    if len({id(o) for o in opts}) != len(opts):
        raise ValueError("optimizer: the same optimiser object is listed twice")
    return opts


def _layer(key: str) -> str:
    return key.rsplit(".", 1)[0]


def kfac_changes(change: StateChange) -> dict:
    """Layer name -> ``{"out": (positions (old out,), n_out), "in": (positions (old in,), n_in)
    or None}``: the K-FAC view of ``change``, from ``"<layer>.W"`` (axis 0 -> outputs, axes 1..
    row-major -> input coordinates, i.e. Conv2D patch coordinates ``c*kh*kw + i*kw + j``) or the
    first per-unit key (Rational, ``in`` None).  14-growth-operations.md section 4.3."""
    out = {}
    for key, am in change.axes.items():
        name, param = _layer(key), key.rsplit(".", 1)[1]
        if param == "W":
            out[name] = {"out": (am.positions[0], am.new_shape[0]), "in": am.combined_tail()}
        elif len(am.old_shape) == 1 and name not in out:
            out[name] = {"out": (am.positions[0], am.new_shape[0]), "in": None}
    return out


def _check_change(change) -> None:
    """TypeError/ValueError naming ``change`` unless it is a :class:`StateChange` whose ``axes``
    map parameter keys ``"<layer>.<param>"`` to :class:`AxisMap` and whose ``dropped`` is a
    tuple/list of such keys."""
    if not isinstance(change, StateChange):
        raise TypeError(f"change: expected a StateChange, got {type(change).__name__}")
    if not isinstance(change.axes, dict):
        raise TypeError(f"change: axes must be a dict key -> AxisMap, got {type(change.axes).__name__}")
    for key, am in change.axes.items():
        if not isinstance(key, str) or "." not in key:
            raise ValueError(f"change: axes key {key!r} is not a parameter key '<layer>.<param>'")
        if not isinstance(am, AxisMap):
            raise TypeError(f"change: axes[{key!r}] must be an AxisMap, got {type(am).__name__}")
    if not isinstance(change.dropped, (tuple, list)) or not all(
            isinstance(k, str) and "." in k for k in change.dropped):
        raise ValueError(f"change: dropped must be a tuple of parameter keys '<layer>.<param>', "
                         f"got {change.dropped!r}")


def check_carry(optimizers, change: StateChange) -> None:
    """Raise ValueError (naming ``optimizer``) unless every optimiser's state for the changed
    keys has the old shapes of ``change`` (call before the network changes); K-FAC state is
    compared as (out, in) sizes per layer.  ``optimizers`` as for :func:`check_optimizers`
    (None, one optimiser or a list); ``change`` a :class:`StateChange` (TypeError/ValueError
    naming ``change`` otherwise).  14-growth-operations.md section 4.1."""
    optimizers = check_optimizers(optimizers)
    _check_change(change)
    kchanges = kfac_changes(change)
    for opt in optimizers:
        if isinstance(opt, Optimizer):
            for key, am in change.axes.items():
                have = opt._shapes.get(key)
                if have is not None and tuple(have) != am.old_shape:
                    raise ValueError(f"optimizer: {type(opt).__name__} state of {key!r} has shape "
                                     f"{tuple(have)}, the parameter has {am.old_shape}; pad or drop it first")
            continue
        for name, c in kchanges.items():
            if name in opt.blocks:
                have = (opt.blocks[name].shape[0], None)
            elif name in opt.factors:
                f = opt.factors[name]
                have = (f.G.shape[0], f.A.shape[0] - int(f.with_bias))
            else:
                continue
            want = (c["out"][0].size, None if c["in"] is None else c["in"][0].size)
            if have != want:
                raise ValueError(f"optimizer: KFAC state of layer {name!r} has sizes (out, in) = {have}, "
                                 f"the layer has {want}; pad or drop it first")


def _pad_args(positions, n_new):
    """(kept old indices in new order, their new positions, n_new) of one axis map."""
    keep = _kept(positions)
    return keep, positions[keep], n_new


def carry_state(optimizers, change: StateChange) -> None:
    """Apply ``change`` to every optimiser's state (see the module docstring); call after
    the network changed.  It first re-runs :func:`check_carry` (cheap: shapes only), so a
    direct call with a bad ``optimizers`` or ``change`` raises before any optimiser's state is
    touched.  14-growth-operations.md section 4."""
    optimizers = check_optimizers(optimizers)
    check_carry(optimizers, change)
    for opt in optimizers:
        if isinstance(opt, Optimizer):
            for key, am in change.axes.items():
                if not opt.has_state(key):
                    continue
                kept = am.kept()
                if am.removes():
                    opt.shrink_state(key, tuple(kept))
                new_pos = tuple(p[k] for p, k in zip(am.positions, kept))
                opt.pad_state(key, am.new_shape, np.ix_(*new_pos))
            for key in change.dropped:
                opt.drop_state(key)
            continue
        for name, c in kfac_changes(change).items():
            if not opt.has_state(name):
                continue
            o_keep, o_pos, n_out = _pad_args(*c["out"])
            i_keep, i_pos, n_in = (None, None, None) if c["in"] is None else _pad_args(*c["in"])
            if np.any(c["out"][0] < 0) or (c["in"] is not None and np.any(c["in"][0] < 0)):
                opt.shrink_state(name, out_keep=o_keep, in_keep=i_keep)
            opt.pad_state(name, n_out=n_out, out_index=o_pos, n_in=n_in, in_index=i_pos)
        for name in {_layer(k) for k in change.dropped}:
            opt.drop_state(name)


def regressed_rows(A_run, B, new) -> np.ndarray:
    """``A_run`` (n, n) with its rows and columns ``new`` replaced by the *regression rule*
    (14-growth-operations.md section 4.3); the other entries are copied bit for bit.

    With ``o`` the other coordinates and the batch factor ``B`` (n, n):
    ``R = B_no B_oo^+`` (the new inputs regressed on the old ones over the batch) and
    ``S = B_nn - R B_on`` (the residual second moment, PSD), the result has
    ``A_no = R A_oo``, ``A_on = A_no^T``, ``A_nn = R A_oo R^T + S``, i.e.
    ``[[I, 0], [R, I]] diag(A_oo, S) [[I, R^T], [0, I]]``: PSD whenever ``A_oo`` is, and equal
    to ``B`` when ``A_oo = B_oo``.  ``new`` int array of coordinates; ``A_run``, ``B`` float."""
    new = np.asarray(new, dtype=np.int64)
    n = A_run.shape[0]
    old = np.setdiff1d(np.arange(n), new)
    B_oo, B_on, B_nn = B[np.ix_(old, old)], B[np.ix_(old, new)], B[np.ix_(new, new)]
    R = np.linalg.lstsq(B_oo, B_on, rcond=None)[0].T                   # (new, old) = B_no B_oo^+
    S = B_nn - R @ B_on
    A_oo = A_run[np.ix_(old, old)]
    A_no = R @ A_oo
    A_nn = A_no @ R.T + 0.5 * (S + S.T)
    out = A_run.copy()
    out[np.ix_(new, old)] = A_no
    out[np.ix_(old, new)] = A_no.T
    out[np.ix_(new, new)] = 0.5 * (A_nn + A_nn.T)
    return out


def refresh_new_inputs(optimizers: list, net, change: StateChange, X) -> list:
    """Regression rule for the K-FAC input factors of the layers that gained input coordinates:
    after :func:`carry_state`, one forward of the grown ``net`` on the batch ``X`` gives each such
    layer's batch factor ``B``; its running ``A`` gets the new rows of :func:`regressed_rows`
    and its stored inverses are dropped (recomputed at the next step).  Returns the names of
    the layers refreshed.  14-growth-operations.md section 4.3."""
    from ..kfac.factors import input_factor
    targets = []
    for name, c in kfac_changes(change).items():
        if c["in"] is None:
            continue
        pos, n_in = c["in"]
        new = np.setdiff1d(np.arange(n_in), pos[pos >= 0])
        if new.size and any(isinstance(o, KFAC) and name in o.factors for o in optimizers):
            targets.append((name, new))
    if not targets:
        return []
    net.forward(X)
    for name, new in targets:
        B = input_factor(net.layers[net.index_of(name)])
        for opt in optimizers:
            if isinstance(opt, KFAC) and name in opt.factors:
                opt.factors[name].A = regressed_rows(opt.factors[name].A, B, new)
                opt.inverses.pop(name, None)
    return [name for name, _ in targets]
