"""Comparison helpers that explain a failure with numbers.

``assert_close`` is what every numerical test in this project uses: on failure
it prints the worst entries, their values on both sides, their ratio and the
tolerance that was violated, instead of a bare "not allclose".
"""
from __future__ import annotations

import numpy as np


def relative_error(actual, expected, floor: float = 1e-300) -> float:
    """``||actual - expected|| / max(||expected||, ||actual||, floor)`` (2-norms, flattened)."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    scale = max(np.linalg.norm(e), np.linalg.norm(a), floor)
    return float(np.linalg.norm(a - e) / scale)


def describe_mismatch(actual, expected, rtol: float, atol: float, n_worst: int = 5) -> str:
    """A report of the ``n_worst`` entries with the largest excess over the tolerance."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    diff = np.abs(a - e)
    allowed = atol + rtol * np.abs(e)
    excess = (diff - allowed).ravel()
    order = np.argsort(excess)[::-1][:n_worst]
    atol_text = f"{atol:g}" if np.ndim(atol) == 0 else f"entrywise (max {np.max(atol):.3e})"
    lines = [f"shape {a.shape}; {int(np.count_nonzero(excess > 0))} of {a.size} entries outside "
             f"rtol={rtol:g}, atol={atol_text}; max abs diff {diff.max():.3e}; "
             f"relative 2-norm error {relative_error(a, e):.3e}"]
    for flat in order:
        idx = np.unravel_index(flat, a.shape) if a.ndim else ()
        av, ev = a[idx], e[idx]
        ratio = av / ev if ev != 0 else np.inf if av != 0 else 1.0
        lines.append(f"  at {tuple(int(i) for i in idx)}: actual {av:.17g}  expected {ev:.17g}  "
                     f"diff {abs(av - ev):.3e}  ratio {ratio:.12g}")
    return "\n".join(lines)


def assert_close(actual, expected, rtol: float = 1e-10, atol=0.0, name: str = "") -> None:
    """Assert ``|actual - expected| <= atol + rtol |expected|`` entrywise, explaining failures.
    ``atol`` may be a scalar or an array broadcasting against ``expected`` (per-entry bounds)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected shape {e.shape}")
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(e)):
        raise AssertionError(f"{name}: non-finite values (actual finite: {np.isfinite(a).all()}, "
                             f"expected finite: {np.isfinite(e).all()})")
    if not np.all(np.abs(a - e) <= atol + rtol * np.abs(e)):
        raise AssertionError(f"{name} mismatch\n" + describe_mismatch(a, e, rtol, atol))


def assert_rel_error(actual, expected, tol: float, name: str = "") -> None:
    """Assert the relative 2-norm error is below ``tol``, printing the worst entries if not."""
    err = relative_error(actual, expected)
    if not err <= tol:
        raise AssertionError(f"{name}: relative error {err:.3e} > {tol:.1e}\n"
                             + describe_mismatch(actual, expected, rtol=tol, atol=0.0))
