"""The record every growth operation returns, and the flat-index bookkeeping behind it.

A growth operation changes a network ``before -> after`` in place.  Its record says
where every scalar parameter went, in the networks' ``get_flat()`` orders:

* ``old_to_new`` (P_before,) int64: the position in ``after`` of each old parameter,
  ``-1`` if it was removed;
* ``new_index`` (k,) int64: sorted positions in ``after`` that hold no old parameter
  (the parameters the operation added);
* ``layers``: names of the layers whose parameter arrays or shapes changed, and
  ``added_layers`` / ``removed_layers``.

So ``theta_after[old_to_new[keep]] == theta_before[keep]`` for every surviving old
parameter that the operation did not rewrite (``rewritten`` lists the keys whose
values an operation recomputed, e.g. the consumer of an inserted layer), and a
vector of old per-parameter quantities is carried over with :meth:`Growth.carry`.
``derivations/14-growth-operations.md`` section 2; tests in ``tests/test_grow_ops.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validate import as_float_array, check_shape


@dataclass
class Growth:
    """What a growth operation did (see the module docstring)."""
    kind: str
    layers: tuple
    new_index: np.ndarray
    old_to_new: np.ndarray
    num_params_before: int
    num_params_after: int
    added_layers: tuple = ()
    removed_layers: tuple = ()
    rewritten: tuple = ()
    details: dict = field(default_factory=dict)

    @property
    def removed_index(self) -> np.ndarray:
        """Old flat positions that no longer exist (int64, sorted)."""
        return np.flatnonzero(self.old_to_new < 0)

    def carry(self, old, fill: float = 0.0) -> np.ndarray:
        """Map an old flat vector (P_before,) to the new order (P_after,): surviving entries are
        copied, added entries get ``fill``, removed entries are dropped."""
        old = as_float_array(old, "old", ndim=1, allow_empty=True)
        check_shape(old, (self.num_params_before,), "old")
        new = np.full(self.num_params_after, float(fill))
        keep = self.old_to_new >= 0
        new[self.old_to_new[keep]] = old[keep]
        return new

    def to_dict(self) -> dict:
        """JSON-friendly summary (indices as lists)."""
        return {"kind": self.kind, "layers": list(self.layers), "added_layers": list(self.added_layers),
                "removed_layers": list(self.removed_layers), "rewritten": list(self.rewritten),
                "num_params_before": self.num_params_before, "num_params_after": self.num_params_after,
                "num_added": int(self.new_index.size), "num_removed": int(self.removed_index.size),
                "details": {k: v for k, v in self.details.items() if isinstance(v, (int, float, str, list))}}


def layout(net) -> dict:
    """Key -> ``(start, shape)`` of every parameter in ``net.get_flat()`` order (a snapshot).
    ``derivations/14-growth-operations.md`` section 2."""
    out, start = {}, 0
    for key, p in net.named_params().items():
        out[key] = (start, tuple(p.shape))
        start += p.size
    return out


def local_map(new_shape, old_index) -> np.ndarray:
    """For a parameter grown so that ``new[old_index]`` holds the old array: an int array shaped
    like the old array whose entries are the new *local* (row-major) positions of the old ones.
    ``derivations/14-growth-operations.md`` section 2."""
    return np.arange(int(np.prod(new_shape, dtype=np.int64)), dtype=np.int64).reshape(new_shape)[old_index]


def shrink_map(old_shape, keep_index) -> np.ndarray:
    """For a parameter shrunk to ``new = old[keep_index]``: int array shaped like the old array,
    the new local position of each kept entry and -1 for removed ones.
    ``derivations/14-growth-operations.md`` section 2."""
    m = -np.ones(old_shape, dtype=np.int64)
    kept = m[keep_index]
    m[keep_index] = np.arange(kept.size, dtype=np.int64).reshape(kept.shape)
    return m


def build_record(kind: str, before: dict, net, maps: dict, layers, added_layers=(), removed_layers=(),
                 rewritten=(), details=None) -> Growth:
    """Assemble a :class:`Growth` from the ``before`` layout (:func:`layout`), the grown ``net``
    and ``maps``: key -> int array shaped like the old parameter with new local positions
    (-1 removed).  Keys missing from ``maps`` keep their shape and map entry for entry; old
    keys absent from ``net`` are removed whole.  ``derivations/14-growth-operations.md`` section 2."""
    after = layout(net)
    P_before = sum(int(np.prod(s, dtype=np.int64)) for _, s in before.values())
    P_after = sum(int(np.prod(s, dtype=np.int64)) for _, s in after.values())
    old_to_new = np.full(P_before, -1, dtype=np.int64)
    hit = np.zeros(P_after, dtype=bool)
    for key, (start, shape) in before.items():
        size = int(np.prod(shape, dtype=np.int64))
        if key not in after:
            continue
        new_start, new_shape = after[key]
        if key in maps:
            m = np.asarray(maps[key], dtype=np.int64)
            if m.shape != shape:
                raise AssertionError(f"map of {key} has shape {m.shape}, parameter had {shape}")
        else:
            if new_shape != shape:
                raise AssertionError(f"{key} changed shape {shape} -> {new_shape} without a map")
            m = np.arange(size, dtype=np.int64).reshape(shape)
        flat = m.reshape(-1)
        pos = np.where(flat >= 0, flat + new_start, -1)
        old_to_new[start:start + size] = pos
        hit[pos[pos >= 0]] = True
    return Growth(kind, tuple(layers), np.flatnonzero(~hit).astype(np.int64), old_to_new,
                  int(P_before), int(P_after), tuple(added_layers), tuple(removed_layers),
                  tuple(rewritten), dict(details or {}))
