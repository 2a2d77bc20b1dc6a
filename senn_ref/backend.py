"""One switch between the Numba kernels and their plain NumPy twins.

Resolution order for every kernel call:

1. the ``backend=`` argument of the call (``"numba"`` or ``"numpy"``), if given;
2. otherwise the value set by :func:`set_backend` in this process;
3. otherwise the environment variable ``SENN_REF_BACKEND`` (read once at import);
4. otherwise ``"numba"``.

Both paths compute the same numbers (tests compare them to 1e-12); the NumPy
path exists so that every hot loop can be read and checked as plain array code.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

BACKENDS = ("numba", "numpy")

_env = os.environ.get("SENN_REF_BACKEND", "numba").strip().lower() or "numba"
if _env not in BACKENDS:
    raise ValueError(f"SENN_REF_BACKEND={_env!r} is not one of {BACKENDS}")
_current = _env


def get_backend() -> str:
    """The process-wide default backend."""
    return _current


def set_backend(name: str) -> None:
    """Set the process-wide default backend (``"numba"`` or ``"numpy"``)."""
    global _current
    _current = resolve(name)


def resolve(name: str | None = None) -> str:
    """Return the backend a call should use: ``name`` if given, else the default."""
    if name is None:
        return _current
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    return key


@contextmanager
def using(name: str):
    """Context manager: temporarily switch the default backend."""
    global _current
    previous = _current
    _current = resolve(name)
    try:
        yield
    finally:
        _current = previous
