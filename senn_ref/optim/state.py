"""Per-parameter optimiser state that survives network growth.

:class:`Optimizer` is the base of :class:`~senn_ref.optim.SGD` and
:class:`~senn_ref.optim.Adam`.  It owns, for every parameter key such as
``"dense0.W"``, a dict of state arrays ("slots": momentum buffers, moments,
step counts) with the parameter's shape, and implements everything that does
not depend on the update rule:

``step(params, grads)``
    Validates first, then updates in place.  ``params`` maps keys to the
    network's own float64 arrays; ``grads`` must have exactly the same keys and
    shapes, finite values.  A state array whose shape differs from its
    parameter (the parameter was grown but ``pad_state`` was not called) is an
    error.  Nothing (parameters or state) changes unless every check passes.
    State is created lazily as zeros on a key's first step.  Keys that have
    state but are absent from ``params`` are left alone (a subset of the
    parameters may be stepped).
``pad_state(key, new_shape, old_index)``
    Growth: every slot becomes ``new = zeros(new_shape)`` with
    ``new[old_index] = old``.  Old entries are copied bit for bit, new entries
    are zero (except the slots of ``grown_fill``: Adam marks them ``grown = 1``).
``add_grown_state(key, shape)``
    An inserted layer's key: state as the new entries of ``pad_state`` get.
``shrink_state(key, keep_index)``
    Pruning: every slot becomes ``old[keep_index]`` (kept entries bit for bit).
``drop_state(key)``, ``rename_state(old, new)``, ``rename_states(mapping)``
    Removal and re-keying (layer removal / insertion shifting layer indices).
``state_dict()`` / ``load_state_dict(d)``
    Deep copies in both directions.

Derivations: ``derivations/08-optimisers.md`` section 3.  Tests: ``tests/test_optim.py``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._validate import as_float_array, check_scalar


def _normalise_index(old_index) -> tuple:
    return old_index if isinstance(old_index, tuple) else (old_index,)


def check_keep_index(keep_index, shape: tuple, name: str) -> list:
    """Validated per-axis kept positions for shrinking an array of ``shape``: a list with one
    entry per axis, ``None`` (axis kept whole) or an int64 array of distinct positions in range.
    ``keep_index``: a tuple (or one entry for axis 0) of ``None``, ``slice(None)`` or 1-d integer
    arrays.  18-pruning.md section 6."""
    entries = keep_index if isinstance(keep_index, tuple) else (keep_index,)
    if len(entries) > len(shape):
        raise ValueError(f"{name}: {len(entries)} axes given for an array of shape {shape}")
    out = []
    for axis, n in enumerate(shape):
        e = entries[axis] if axis < len(entries) else None
        if e is None or (isinstance(e, slice) and e == slice(None)):
            out.append(None)
            continue
        if isinstance(e, slice) or isinstance(e, (bool, np.bool_)):
            raise TypeError(f"{name}: axis {axis} must be None, slice(None) or integer positions, got {e!r}")
        idx = np.asarray(e)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise TypeError(f"{name}: axis {axis} must be a 1-d integer array, got {e!r}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name}: axis {axis} positions must lie in 0..{n - 1}, got {idx.tolist()}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"{name}: axis {axis} repeats positions {idx.tolist()}")
        out.append(idx.astype(np.int64))
    return out


class LearningRate:
    """Mixin: a learning rate ``lr`` checked on every assignment (finite, > 0), so that a
    schedule may change it between steps without ever letting a NaN reach the parameters.
    lr = 0 is refused too: every step would be a silent no-op (the cosine schedule of
    trainer/lr_schedule.py never reaches 0)."""

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = check_scalar(value, f"{type(self).__name__} lr", minimum=0.0, strict=True)


class Optimizer(LearningRate):
    """Base class: state bookkeeping, validation and growth; subclasses define ``_update``.

    Subclasses set ``slots`` (slot name -> numpy dtype) and implement
    ``_update(p, g, state)`` which modifies the parameter ``p`` and the slot
    arrays in ``state`` in place.
    """

    #: slot name -> dtype of that state array (zeros of this dtype on creation)
    slots: dict[str, type] = {}
    #: slot name -> the value that entries created by growth (:meth:`pad_state`,
    #: :meth:`add_grown_state`) get in that slot instead of 0 (Adam's ``grown`` flag)
    grown_fill: dict[str, int] = {}

    def __init__(self) -> None:
        self._state: dict[str, dict[str, np.ndarray]] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ step
    def step(self, params: Mapping, grads: Mapping) -> None:
        """Update every array in ``params`` in place from ``grads`` (same keys, shapes)."""
        checked = self._validate_step(params, grads)
        for key, p, g in checked:
            if key not in self._shapes:
                self._shapes[key] = p.shape
                self._state[key] = {name: np.zeros(p.shape, dtype=dt) for name, dt in self.slots.items()}
            self._update(p, g, self._state[key])

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    def _validate_step(self, params, grads) -> list:
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads: expected a dict of arrays, got {type(grads).__name__}")
        missing = [k for k in params if k not in grads]
        extra = [k for k in grads if k not in params]
        if missing:
            raise ValueError(f"grads: missing gradient(s) for parameter(s) {missing}")
        if extra:
            raise ValueError(f"grads: gradient(s) for unknown parameter(s) {extra}")
        checked, seen = [], []
        for key, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype != np.float64:
                raise TypeError(f"params[{key!r}]: expected a float64 numpy array (updated in place), "
                                f"got {type(p).__name__}" + (f" of dtype {p.dtype}" if hasattr(p, "dtype") else ""))
            if not p.flags.writeable:
                raise ValueError(f"params[{key!r}]: array is read-only; the optimiser updates in place")
            if not np.isfinite(p).all():
                raise ValueError(f"params[{key!r}]: contains NaN or infinite values")
            if any(np.shares_memory(p, q) for q in seen):
                raise ValueError(f"params[{key!r}]: shares memory with another parameter")
            seen.append(p)
            g = as_float_array(grads[key], f"grads[{key!r}]", allow_empty=True)
            if g.shape != p.shape:
                raise ValueError(f"grads[{key!r}]: shape {g.shape} does not match parameter shape {p.shape}")
            if key in self._shapes and self._shapes[key] != p.shape:
                raise ValueError(f"optimiser state for {key!r} has shape {self._shapes[key]} but the parameter "
                                 f"has shape {p.shape}; call pad_state (or drop_state) after growing it")
            checked.append((key, p, g))
        return checked

    # ---------------------------------------------------------------- growth
    def has_state(self, key: str) -> bool:
        """True once ``key`` has taken a step (or was loaded / padded / renamed into)."""
        return key in self._shapes

    def pad_state(self, key: str, new_shape, old_index) -> bool:
        """Grow the state of ``key`` to ``new_shape``: ``new[old_index] = old``, new entries 0
        (``grown_fill[slot]`` in the slots it names).

        ``old_index`` is a tuple of slices / integer index arrays (or a single
        one) selecting, in a ``new_shape`` array, a block of exactly the old
        shape, each old entry going to a distinct new position; e.g. widening a
        dense ``W`` (out, in) -> (out + 1, in) uses ``(slice(0, out), slice(None))``
        and inserting a row at position j uses ``(np.r_[0:j, j + 1:out + 1], slice(None))``.
        Returns False (and does nothing) when ``key`` has no state yet: it will
        be created with the right shape on its first step.
        """
        try:
            new_shape = tuple(int(s) for s in np.atleast_1d(np.asarray(new_shape)))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"pad_state: new_shape must be a tuple of ints, got {new_shape!r}") from exc
        if any(s < 0 for s in new_shape):
            raise ValueError(f"pad_state: negative size in new_shape {new_shape}")
        if key not in self._shapes:
            return False
        old_shape = self._shapes[key]
        index = _normalise_index(old_index)
        counts = np.zeros(new_shape, dtype=np.int64)
        try:
            selected = counts[index].shape
            np.add.at(counts, index, 1)
        except (IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"pad_state({key!r}): old_index {old_index!r} is not a valid index "
                             f"into shape {new_shape}: {exc}") from exc
        if selected != old_shape:
            raise ValueError(f"pad_state({key!r}): old_index selects a block of shape {selected} in "
                             f"{new_shape}, but the old state has shape {old_shape}")
        if counts.size and counts.max() > 1:
            raise ValueError(f"pad_state({key!r}): old_index maps several old entries to one new position")
        for name, old in self._state[key].items():
            new = np.full(new_shape, self.grown_fill.get(name, 0), dtype=old.dtype)
            new[index] = old
            self._state[key][name] = new
        self._shapes[key] = new_shape
        return True

    def add_grown_state(self, key: str, shape) -> bool:
        """State for a parameter ``key`` of ``shape`` created by growth (an inserted layer):
        every slot zero except :attr:`grown_fill` (Adam: ``grown = 1``), exactly the state of
        the new entries of :meth:`pad_state`.  Does nothing and returns False while the
        optimiser has no state at all (nothing trained yet: the key starts like every other
        one) or when ``key`` already has state.  ``derivations/08-optimisers.md`` section 4.1.
        """
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"add_grown_state: negative size in shape {shape}")
        if not self._shapes or key in self._shapes:
            return False
        self._shapes[key] = shape
        self._state[key] = {name: np.full(shape, self.grown_fill.get(name, 0), dtype=dt)
                            for name, dt in self.slots.items()}
        return True

    def shrink_state(self, key: str, keep_index) -> bool:
        """Pruning: every slot of ``key`` becomes ``old[keep_index]`` (kept entries bit for bit).

        ``keep_index`` is a tuple with one entry per axis of the state (or a single entry for
        axis 0, further axes kept whole): ``None`` / ``slice(None)`` keeps the axis, a 1-d integer
        array lists the kept positions (distinct, in range, in the order they take).  E.g.
        removing hidden unit ``j`` of a dense producer ``W`` (out, in) uses
        ``(np.delete(np.arange(out), j), None)`` and of its consumer ``(None, np.delete(...))``.
        Everything is checked before any slot changes.  Returns False (and does nothing) when
        ``key`` has no state yet.  ``derivations/18-pruning.md`` section 6;
        ``tests/test_pruning.py::test_shrink_state_bit_identical``.
        """
        if key not in self._shapes:
            return False
        old_shape = self._shapes[key]
        axes = check_keep_index(keep_index, old_shape, f"shrink_state({key!r}) keep_index")
        for name, old in self._state[key].items():
            new = old
            for axis, idx in enumerate(axes):
                if idx is not None:
                    new = np.take(new, idx, axis=axis)
            self._state[key][name] = new.copy() if new is old else np.ascontiguousarray(new)
        self._shapes[key] = tuple(s if idx is None else int(idx.size) for s, idx in zip(old_shape, axes))
        return True

    def drop_state(self, key: str) -> bool:
        """Forget the state of ``key``; returns whether there was any."""
        self._shapes.pop(key, None)
        return self._state.pop(key, None) is not None

    def rename_state(self, old: str, new: str) -> bool:
        """Move the state of ``old`` to ``new`` (which must have none); False if ``old`` has none."""
        return self.rename_states({old: new}) > 0

    def rename_states(self, mapping: Mapping) -> int:
        """Rename several keys at once (so ``{"d1.W": "d2.W", "d2.W": "d3.W"}`` works).

        Keys without state are ignored; a target that already has state and is not
        itself renamed away, or two keys renamed to one target, is a ValueError.
        Returns the number of keys moved.
        """
        targets = list(mapping.values())
        if len(set(targets)) != len(targets):
            raise ValueError(f"rename_states: several keys renamed to the same target in {dict(mapping)}")
        moving = {o: n for o, n in mapping.items() if o in self._shapes and o != n}
        for o, n in moving.items():
            if n in self._shapes and n not in moving:
                raise ValueError(f"rename_states: target {n!r} (from {o!r}) already has optimiser state")
        state = {o: self._state.pop(o) for o in moving}
        shapes = {o: self._shapes.pop(o) for o in moving}
        for o, n in moving.items():
            self._state[n] = state[o]
            self._shapes[n] = shapes[o]
        return len(moving)

    # ----------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """``{"optimizer": class name, "shapes": {key: shape}, "state": {key: {slot: array}}}`` (copies)."""
        return {"optimizer": type(self).__name__,
                "shapes": dict(self._shapes),
                "state": {k: {name: a.copy() for name, a in slots.items()} for k, slots in self._state.items()}}

    def load_state_dict(self, d: Mapping) -> None:
        """Replace all state by copies of ``d`` (as produced by :meth:`state_dict`), after checking it.

        Hyperparameters (learning rate, ...) are not part of the state and are kept.
        """
        if not isinstance(d, Mapping) or set(d) != {"optimizer", "shapes", "state"}:
            raise ValueError("load_state_dict: expected a dict with keys 'optimizer', 'shapes', 'state'")
        if d["optimizer"] != type(self).__name__:
            raise ValueError(f"load_state_dict: state of a {d['optimizer']} optimiser, this is {type(self).__name__}")
        shapes, state = d["shapes"], d["state"]
        if set(shapes) != set(state):
            raise ValueError("load_state_dict: 'shapes' and 'state' have different keys")
        new_state, new_shapes = {}, {}
        for key, slots in state.items():
            shape = tuple(int(s) for s in shapes[key])
            if set(slots) != set(self.slots):
                raise ValueError(f"load_state_dict: {key!r} has slots {sorted(slots)}, expected {sorted(self.slots)}")
            new_state[key] = {}
            for name, dt in self.slots.items():
                a = np.asarray(slots[name])
                if a.shape != shape:
                    raise ValueError(f"load_state_dict: {key!r}/{name} has shape {a.shape}, expected {shape}")
                if np.dtype(dt).kind == "f":
                    a = as_float_array(a, f"load_state_dict: {key!r}/{name}", allow_empty=True)
                elif a.dtype.kind not in "iu" or (a.size and a.min() < 0):
                    raise TypeError(f"load_state_dict: {key!r}/{name} must be non-negative integers")
                new_state[key][name] = np.array(a, dtype=dt, copy=True)
            new_shapes[key] = shape
        self._state, self._shapes = new_state, new_shapes
