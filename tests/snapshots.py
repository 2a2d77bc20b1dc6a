"""Deep snapshots of a network, its optimisers and a random generator, for the "a refused call
changes nothing" tests (tests/test_bad_input_*.py).

``take(net, optimizers, rng)`` copies everything that a growth, scoring or training call could
change: the layer list (class, name, input shape), every parameter array, ``num_params()``, each
optimiser's ``state_dict()`` and the generator's bit-generator state.  ``assert_same(before,
after)`` compares two snapshots bit for bit (arrays by ``np.array_equal`` on the raw bytes, so
NaN entries and -0.0 count) and fails with the first differing entry.  The layers' forward
caches are not part of the state: scoring runs forward passes by design.
"""
from __future__ import annotations

import copy

import numpy as np


def _freeze(x):
    """A comparable deep copy: arrays become (dtype, shape, bytes); containers recurse."""
    if isinstance(x, np.ndarray):
        return ("ndarray", x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
    if isinstance(x, dict):
        return ("dict", tuple((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_freeze(v) for v in x))
    if isinstance(x, (np.generic,)):
        return ("scalar", x.dtype.str, x.tobytes())
    return copy.deepcopy(x)


def take(net, optimizers=(), rng=None) -> dict:
    """Snapshot of ``net`` (a Network), ``optimizers`` (one optimiser, a list, or ()) and
    ``rng`` (a numpy Generator or None): a dict of frozen entries, keyed by what they describe."""
    if optimizers is None:
        optimizers = ()
    if not isinstance(optimizers, (list, tuple)):
        optimizers = (optimizers,)
    snap = {"layers": tuple((type(la).__name__, la.name, tuple(la.in_shape)) for la in net.layers),
            "num_params": net.num_params()}
    for key, value in net.named_params().items():
        snap[f"param {key}"] = _freeze(value)
    for i, opt in enumerate(optimizers):
        snap[f"optimizer {i} ({type(opt).__name__})"] = _freeze(opt.state_dict())
    if rng is not None:
        snap["rng"] = _freeze(rng.bit_generator.state)
    return snap


def _first_difference(a, b, where: str) -> str | None:
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, tuple):
        if len(a) != len(b):
            return f"{where}: length {len(a)} != {len(b)}"
        if a and a[0] == "ndarray" and b[0] == "ndarray":
            if a[1:3] != b[1:3]:
                return f"{where}: array dtype/shape {a[1:3]} != {b[1:3]}"
            if a[3] != b[3]:
                x = np.frombuffer(a[3], dtype=a[1]).reshape(a[2])
                y = np.frombuffer(b[3], dtype=b[1]).reshape(b[2])
                diff = np.argwhere(~((x == y) | (x != x) & (y != y)))
                at = tuple(diff[0]) if diff.size else "(bytes only, e.g. -0.0)"
                return f"{where}: arrays differ, first at index {at}: {x[at] if diff.size else ''} " \
                       f"!= {y[at] if diff.size else ''}"
            return None
        for i, (u, v) in enumerate(zip(a, b)):
            found = _first_difference(u, v, f"{where}[{i}]")
            if found:
                return found
        return None
    if a != b:
        return f"{where}: {a!r} != {b!r}"
    return None


def assert_same(before: dict, after: dict) -> None:
    """Assert that two snapshots of :func:`take` are identical; the message names the first
    differing entry (parameter key, optimiser slot, layer list or rng) and the values there."""
    for key in ("layers", "num_params"):          # structure first: the most telling difference
        found = _first_difference(before[key], after[key], key)
        if found:
            raise AssertionError(f"state changed by a refused call: {found}")
    if set(before) != set(after):
        raise AssertionError(f"snapshot entries differ: only before {sorted(set(before) - set(after))}, "
                             f"only after {sorted(set(after) - set(before))}")
    for key in before:
        found = _first_difference(before[key], after[key], key)
        if found:
            raise AssertionError(f"state changed by a refused call: {found}")
