"""Hypothesis strategies of bad arguments and the "refused, and nothing changed" assertion, shared
by tests/test_bad_input_growth.py and tests/test_bad_input_scoring.py.

Every strategy draws ``(value, exception type)``: the value an entry point must refuse and the
exception it must raise, following ``senn_ref/_validate.py``: a wrong *kind* of value (int,
bool, complex, object or string dtype where floats are expected, None, a string where a number
is expected, a float or bool where an index is expected, a non-string option) is a TypeError;
a value of the right kind that is wrong (shape, NaN/inf, empty, out-of-range or repeated index,
negative damping, unknown option string) is a ValueError.  Out-of-range indices are ValueErrors
everywhere in the library (``index 9 out of range 0..2``), so they are here too; the one
KeyError is an unknown layer *name* (a lookup, as ``Network.index_of``).

Decision (documented here and in the test modules): array arguments are array-like, so a list
or nested list of floats where an ndarray is expected is accepted (``np.asarray`` semantics);
only its dtype, shape and values are judged.  None is refused wherever it is not a documented
default.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import strategies as st

import snapshots
from grow_cases import make_case
from senn_ref.fisher import METRICS
from senn_ref.grow import growable_layers
from senn_ref.layers import Conv2D, Dense
from senn_ref.losses import mse

#: dtypes that are not real floating point, and how they are made from a float array
NON_FLOAT = {
    "int64": lambda a: np.round(a).astype(np.int64),
    "int32": lambda a: np.round(a).astype(np.int32),
    "bool": lambda a: a > 0,
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
}


def _values(draw, shape):
    seed = draw(st.integers(0, 2 ** 16))
    return np.random.default_rng(seed).standard_normal(shape)


@st.composite
def bad_array(draw, shape, free=(), none_ok=False):
    """A bad value for an array argument whose good shape is ``shape``; axes in ``free`` may
    have any positive size (e.g. the number of new units), the others are fixed."""
    shape = tuple(shape)
    fixed = [a for a in range(len(shape)) if a not in free]
    kinds = ["ndim+", "dtype", "nonfinite", "text"] + (["ndim-"] if shape else [])
    kinds += ["size"] if fixed else []
    kinds += ["empty"] if free else []
    kinds += [] if none_ok else ["none"]
    kind = draw(st.sampled_from(kinds))
    if kind == "ndim+":
        return _values(draw, shape + (draw(st.integers(1, 2)),)), ValueError
    if kind == "ndim-":
        return _values(draw, shape[:-1]), ValueError
    if kind == "size":
        a = draw(st.sampled_from(fixed))
        n = draw(st.sampled_from([m for m in (shape[a] - 1, shape[a] + 1, shape[a] + 2) if m >= 1]))
        return _values(draw, shape[:a] + (n,) + shape[a + 1:]), ValueError
    if kind == "empty":
        a = draw(st.sampled_from(list(free)))
        return np.zeros(shape[:a] + (0,) + shape[a + 1:]), ValueError
    if kind == "dtype":
        return NON_FLOAT[draw(st.sampled_from(sorted(NON_FLOAT)))](_values(draw, shape)), TypeError
    if kind == "nonfinite":
        x = _values(draw, shape if shape else ())
        x = np.array(x, dtype=np.float64)
        flat = x.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return x, ValueError
    if kind == "text":
        return draw(st.sampled_from(["abc", "1.0", ""])), TypeError
    return None, TypeError


@st.composite
def bad_index(draw, n, invalid=()):
    """A bad index into a sequence of length ``n`` (``net.layers``): negative, too large, a
    float, bool, string or None, or one of the in-range indices in ``invalid`` (e.g. a layer
    that is not a hidden producer: a ValueError)."""
    options = [(st.integers(-n - 2, -1), ValueError), (st.integers(n, n + 3), ValueError),
               (st.sampled_from([0.0, 1.0, 1.5]), TypeError), (st.sampled_from([True, False]), TypeError),
               (st.sampled_from(["0", "dense0"]), TypeError), (st.none(), TypeError)]
    if invalid:
        options.append((st.sampled_from(list(invalid)), ValueError))
    strat, exc = draw(st.sampled_from(options))
    return draw(strat), exc


@st.composite
def bad_units(draw, n_units, leave_one=True):
    """Bad unit indices for a layer of ``n_units``: out of range (negative or >= n), repeated,
    empty, every unit (with ``leave_one``), floats, bools, 2-d, a string or None."""
    u = draw(st.integers(0, n_units - 1))
    options = [([u, -1 - draw(st.integers(0, 3))], ValueError), ([u, n_units + draw(st.integers(0, 3))], ValueError),
               ([u, u], ValueError), ([], ValueError), ([float(u)], TypeError), ([True], TypeError),
               (np.array([[u]]), TypeError), ("0", TypeError), (None, TypeError)]
    if leave_one:
        options.append((list(range(n_units)), ValueError))
    return draw(st.sampled_from(options))


@st.composite
def bad_flat_index(draw, P, allow_empty=False):
    """Bad flat parameter positions for a network of ``P`` parameters."""
    i = draw(st.integers(0, P - 1))
    options = [([i, -1 - draw(st.integers(0, 3))], ValueError), ([i, P + draw(st.integers(0, 3))], ValueError),
               ([i, i], ValueError), ([float(i)], TypeError), (True, TypeError),
               (np.array([[i, i]]), ValueError), (None if not allow_empty else "x", TypeError)]
    if not allow_empty:
        options.append(([], ValueError))
    return draw(st.sampled_from(options))


@st.composite
def bad_scalar(draw, minimum=0.0, strict=False):
    """A bad non-negative (``strict``: positive) real scalar such as a damping."""
    below = [-draw(st.floats(1e-6, 1e3))] + ([minimum] if strict else [])
    options = [(draw(st.sampled_from(below)), ValueError), (draw(st.sampled_from([np.nan, np.inf, -np.inf])), ValueError),
               (draw(st.sampled_from(["0.1", "abc"])), TypeError), (None, TypeError), (True, TypeError), (1j, TypeError), ([0.1], TypeError)]
    return draw(st.sampled_from(options))


@st.composite
def bad_option(draw, allowed):
    """An unknown option string (ValueError) or a non-string option (TypeError)."""
    text = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
    if text in allowed:
        text = text + "_x"
    options = [(text, ValueError), (text.upper() if text.upper() not in allowed else text + "X", ValueError),
               (3, TypeError), (None, TypeError), ([sorted(allowed)[0]], TypeError)]
    return draw(st.sampled_from(options))


@st.composite
def bad_count(draw, minimum=1):
    """A bad integer count (>= ``minimum``): too small (ValueError) or not an int (TypeError)."""
    return draw(st.sampled_from([(minimum - 1, ValueError), (minimum - 3, ValueError), (1.5, TypeError),
                                 (float(minimum), TypeError), (True, TypeError), ("2", TypeError),
                                 (None, TypeError)]))


@st.composite
def bad_bool(draw):
    """A non-bool where a bool flag is expected (TypeError): strings, numbers, None."""
    return draw(st.sampled_from(["yes", "False", 1, 0.0, None])), TypeError


def named(arg: str) -> str:
    """Regex that finds the argument name in an error message: a word of its own, or for
    one-letter names (X, W, b, s, ...) the start of the message followed by ":", " (" or "["
    (the library's ``"<name>: ..."`` convention; a KeyError's message is quoted)."""
    if len(arg) == 1:
        return rf"^['\"]?{re.escape(arg)}(:| \(|\[)"
    return rf"(?<![\w.]){re.escape(arg)}(?!\w)"


def refused(call, exc, arg, net, optimizers=(), rng=None):
    """Assert that ``call()`` raises ``exc`` with a message naming ``arg`` (a name, or a regex
    given as ``re.Pattern``), and that ``net``, ``optimizers`` and ``rng`` are bit-for-bit
    unchanged (:mod:`snapshots`).  Returns the exception info."""
    before = snapshots.take(net, optimizers, rng)
    pattern = arg.pattern if isinstance(arg, re.Pattern) else named(arg)
    with pytest.raises(exc, match=pattern) as info:
        call()
    snapshots.assert_same(before, snapshots.take(net, optimizers, rng))
    return info


# ---- shared by the scoring tests: cases, the common arguments, layer index sets ----
NAMES = ("mlp_rational", "conv_flatten")
COMMON = ("net", "X", "Y", "loss", "damping", "metric")
_CASES = {}


def case_of(name):
    """A shared regression case (tests/grow_cases.py, seed 2); scoring never changes it."""
    if name not in _CASES:
        _CASES[name] = make_case(name, seed=2)
    return _CASES[name]


def draw_common(data, case, arg):
    """(bad value, exception) for the arguments every scoring entry point shares (``COMMON``)."""
    if arg == "net":
        return data.draw(st.sampled_from([(None, TypeError), ("net", TypeError), (case.net.layers, TypeError)]))
    if arg == "X":
        return data.draw(bad_array(case.X.shape, free=(0,)))
    if arg == "Y":
        return data.draw(bad_array(case.Y.shape))
    if arg == "loss":
        return data.draw(st.sampled_from([("mse", TypeError), (None, TypeError), (mse, TypeError)]))
    if arg == "damping":
        return data.draw(bad_scalar())
    if arg == "metric":
        return data.draw(bad_option(METRICS))
    raise AssertionError(arg)


def base(case, **more):
    """The good ``net, X, Y, loss`` of ``case`` plus ``more``."""
    return dict(net=case.net, X=case.X, Y=case.Y, loss=case.loss, **more)


def non_linear(net):
    """Indices of the layers that are not Dense/Conv2D (no insertion point)."""
    return [i for i, la in enumerate(net.layers) if not isinstance(la, (Dense, Conv2D))]


def non_producers(net):
    """Indices of the layers that produce no hidden units (not growable)."""
    hidden = set(growable_layers(net))
    return [i for i in range(len(net.layers)) if i not in hidden]
