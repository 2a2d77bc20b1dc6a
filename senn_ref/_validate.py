"""Input checks shared by every public entry point.

Every check raises before any state is touched, and its message names the
argument and the problem (shape, dtype, NaN/inf, empty batch, unknown option).
"""
from __future__ import annotations

import numpy as np


def as_float_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None,
                   allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 array after checking it.

    Accepts real floating dtypes (float16/32/64) and casts them to float64.
    Integer, boolean, complex and object arrays raise ``TypeError``: silently
    treating labels or masks as features is a common bug.

    Raises
    ------
    TypeError   if ``x`` is not array-like of a real floating dtype;
    ValueError  on a wrong number of dimensions, an empty batch or NaN/inf.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array") from exc
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a real floating-point array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(f"{name}: expected {' or '.join(map(str, allowed))} dimensions, "
                             f"got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: empty array (shape {arr.shape}); a batch needs at least one example")
    # not ascontiguousarray: it turns a 0-d array into shape (1,), which then passes a (1,) shape check
    arr = np.asarray(arr, dtype=np.float64, order="C")
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} NaN or infinite value(s)")
    return arr


def checked_or_none(x, shape: tuple):
    """Internal fast path of :func:`as_float_array` + :func:`check_shape` for the arrays that
    layers pass each other: ``x`` itself when it is already a C-contiguous, non-empty float64
    ``ndarray`` of ``shape`` (``None`` entries match anything) with only finite entries,
    else ``None``, and the caller then runs the full check, which converts or raises the
    usual error.  No message is built here (names cost string formatting on every call).
    The accepted set is exactly what the full check returns unchanged."""
    if (type(x) is not np.ndarray or x.dtype != np.float64 or x.ndim != len(shape)
            or not x.flags.c_contiguous or x.size == 0):
        return None
    for e, s in zip(shape, x.shape):
        if e is not None and e != s:
            return None
    return x if np.logical_and.reduce(np.isfinite(x), axis=None) else None


def check_shape(arr: np.ndarray, expected: tuple, name: str) -> None:
    """Raise ValueError unless ``arr.shape == expected`` (``None`` entries match anything)."""
    if arr.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, arr.shape)):
        shown = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{name}: expected shape {shown}, got {arr.shape}")


def check_batch(X, in_shape: tuple[int, ...], name: str = "X") -> np.ndarray:
    """Validate a batch whose per-example shape must equal ``in_shape``."""
    arr = as_float_array(X, name, ndim=len(in_shape) + 1)
    check_shape(arr, (None,) + tuple(in_shape), name)
    return arr


def check_target_rows(Y, n: int, name: str = "Y", x_name: str = "X") -> np.ndarray:
    """``np.asarray(Y)`` after checking it has ``n`` rows (one target per row of the batch
    ``x_name``); ValueError naming ``name`` for a 0-d, ragged or wrong-length ``Y``.  Only the
    rows: the values are the loss's to check (``loss.check``)."""
    try:
        arr = np.asarray(Y)
    except ValueError as exc:                      # a ragged nested list
        raise ValueError(f"{name}: cannot be made an array ({exc})") from exc
    if arr.ndim == 0 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected one target per row of {x_name} ({n}), got shape {arr.shape}")
    return arr


def check_option(value, allowed, name: str):
    """Raise ValueError naming the allowed values when ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(allowed)}")
    return value


INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


def check_str_option(value, allowed, name: str, *, label: str | None = None) -> str:
    """A string naming one of ``allowed``: TypeError ``"<name>: expected a string, one of
    [...], got <type>"`` for anything but a ``str`` (a number, None, bytes, a list), then
    :func:`check_option` (ValueError ``"unknown <label or name> ..."``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, one of {sorted(allowed)}, got {type(value).__name__}")
    return check_option(value, allowed, name if label is None else label)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """An integer (not a bool) ``>= minimum`` that fits a 64-bit integer, as a Python int.

    TypeError naming ``name`` for anything but an integer; ValueError below ``minimum`` or
    beyond int64 (numpy would later fail on such a size, step or seed with an unclear
    OverflowError or 'Maximum allowed dimension exceeded')."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name}: {value} does not fit a 64-bit integer (|value| < 2**63)")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def refuse_huge_indices(arr: np.ndarray, name: str) -> None:
    """ValueError naming ``name`` when ``arr`` (``np.asarray`` of index values) holds integers
    beyond int64: numpy keeps those in an object array (|i| >= 2**64 or i < -2**63) or a uint64
    array (2**63 <= i < 2**64), which an int64 cast would reject or silently wrap.  Anything
    else passes unchanged (the caller then checks dtype and range as usual)."""
    if arr.dtype.kind == "u" and arr.size and arr.max() > INT64_MAX:
        big = int(arr.max())
    elif arr.dtype.kind == "O":
        ints = [int(v) for v in arr.reshape(-1)
                if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))]
        huge = [v for v in ints if not INT64_MIN <= v <= INT64_MAX]
        if not huge:
            return
        big = huge[0]
    else:
        return
    raise ValueError(f"{name}: index {big} out of range (beyond 64-bit integers)")


def check_scalar(value, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """A finite real scalar, optionally bounded below (``strict`` excludes the bound).

    Refuses bool, str and bytes (``float("3")`` would accept a numeric string) and complex
    numbers with a TypeError naming the argument; NaN/inf and a value below the bound with a
    ValueError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a real number, got bool")
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        # float("3") would succeed: a number in quotes is a caller's mistake, not a number
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, (complex, np.complexfloating)) or (isinstance(value, np.ndarray) and
                                                            (value.ndim or value.dtype.kind == "c")):
        # float(np.complex128(1j)) drops the imaginary part; float(np.array([x])) unwraps an array
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}"
                        + (f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""))
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}") from exc
    if not np.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        raise ValueError(f"{name}: must be {'>' if strict else '>='} {minimum}, got {v}")
    return v


def check_rng(rng, name: str, *, allow_none: bool = True):
    """``rng`` must be a ``numpy.random.Generator`` (or ``None`` when allowed); TypeError otherwise."""
    if rng is None and allow_none:
        return None
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: expected numpy.random.Generator{' or None' if allow_none else ''}, "
                        f"got {type(rng).__name__} (use np.random.default_rng(seed))")
    return rng


def check_network(net, name: str = "net"):
    """``net`` must be a :class:`senn_ref.network.Network`; TypeError naming ``name`` otherwise."""
    from .network import Network          # here: network.py itself imports this module
    if not isinstance(net, Network):
        raise TypeError(f"{name}: expected a senn_ref.Network, got {type(net).__name__}")
    return net


def check_flag(value, name: str) -> bool:
    """``value`` must be True or False (a numpy bool too); TypeError naming ``name`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)
