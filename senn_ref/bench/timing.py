"""Wall-clock timing shared by the benchmarks."""
from __future__ import annotations

import time


def best_time(fn, repeats: int) -> float:
    """Smallest wall time in seconds of ``repeats`` calls of ``fn()``, after one warm-up call
    (which also triggers Numba compilation or cache loading).  The minimum is the least
    disturbed by other load on the machine."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
