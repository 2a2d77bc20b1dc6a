"""Side-by-side timing shared by every benchmark: warm up, interleave, repeat until stable.

API (all a benchmark needs)::

    from senn_ref.bench.timing import compare, progress, ratio_cell

    progress(i, n, "case label")                     # "[i/n] case label ..." on stderr
    print(machine())                                 # CPUs, load average, threads: print it once
    res = compare({"numba": f, "numpy": g}, baseline="numba", label="case label")
    res["numpy"].ratio      # median over rounds of t_numpy / t_numba (paired per round)
    res["numpy"].spread     # half the interquartile range of those ratios, relative (0.03 = +-3 %)
    res["numpy"].seconds    # median seconds per call
    res.stable, res.rounds  # whether the stopping rule was met, and after how many rounds
    ratio_cell(res["numpy"])  # "1.93x+-3%" for a table

``compare(contenders, baseline=None, *, warmup=2, min_rounds=5, max_rounds=40, rtol=0.05,
target_seconds=0.02, budget_seconds=20.0, label=None)``:

1. **warm-up**: every contender is called ``warmup`` times (the first call compiles Numba
   kernels or loads their cache, fills caches and starts thread pools); the last warm-up
   call sets ``number``, the calls per sample, so one sample lasts about ``target_seconds``
   (timer resolution and scheduler noise then matter little);
2. **interleaved rounds**: each round takes one sample of every contender, the order
   rotated by one each round so no contender always runs first or after a given other one;
   background load therefore hits all contenders alike, and the ratio of a round is paired;
3. **stopping rule**: after ``min_rounds`` rounds, stop as soon as for every contender the
   median ratio of the first half of the rounds and that of the second half agree to
   ``rtol``; otherwise stop at ``max_rounds`` or once ``budget_seconds`` are spent, with
   ``stable = False`` (print it: the ratio is then less certain than its spread says).

With ``label`` a progress line goes to stderr every ~2 s of a long measurement.  The
functions are called without arguments and their results are discarded; they must do the
same work on every call.  Only ratios measured this way are printed by the benchmarks.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Timing:
    """One contender: median ``seconds`` per call, ``ratio`` to the baseline (median of the
    per-round paired ratios; 1 for the baseline), ``spread`` (half the interquartile range of
    those ratios divided by ``ratio``), ``number`` calls per sample."""
    name: str
    seconds: float
    ratio: float
    spread: float
    number: int
    is_baseline: bool = False


@dataclass
class Comparison:
    """Result of :func:`compare`: ``timings[name]`` (also ``res[name]``), ``baseline``,
    ``rounds`` taken and whether the stopping rule was met (``stable``)."""
    baseline: str
    rounds: int
    stable: bool
    timings: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Timing:
        return self.timings[name]


def _check(contenders, baseline, warmup, min_rounds, max_rounds, rtol, target_seconds, budget_seconds):
    if not isinstance(contenders, dict) or not contenders:
        raise TypeError("contenders: expected a non-empty dict name -> callable")
    for name, fn in contenders.items():
        if not callable(fn):
            raise TypeError(f"contenders[{name!r}]: expected a callable, got {type(fn).__name__}")
    baseline = next(iter(contenders)) if baseline is None else baseline
    if baseline not in contenders:
        raise ValueError(f"baseline: {baseline!r} is not one of the contenders {list(contenders)}")
    for name, value in (("warmup", warmup), ("min_rounds", min_rounds), ("max_rounds", max_rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if max_rounds < min_rounds:
        raise ValueError(f"max_rounds: must be >= min_rounds ({min_rounds}), got {max_rounds}")
    for name, value in (("rtol", rtol), ("target_seconds", target_seconds), ("budget_seconds", budget_seconds)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return baseline


def _sample(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _halves_agree(ratios: np.ndarray, rtol: float) -> bool:
    """Median of the first half of the rounds vs the second half, for every contender (column)."""
    h = ratios.shape[0] // 2
    if h == 0:
        return False
    first, second = np.median(ratios[:h], axis=0), np.median(ratios[-h:], axis=0)
    return bool(np.all(np.abs(first / second - 1.0) <= rtol))


def compare(contenders: dict, baseline: str | None = None, *, warmup: int = 2, min_rounds: int = 5,
            max_rounds: int = 40, rtol: float = 0.05, target_seconds: float = 0.02,
            budget_seconds: float = 20.0, label: str | None = None) -> Comparison:
    """Time ``contenders`` (name -> zero-argument callable) side by side; see the module
    docstring for the procedure and the fields of the returned :class:`Comparison`.
    Ratios are ``seconds(name) / seconds(baseline)`` (> 1: slower than the baseline)."""
    baseline = _check(contenders, baseline, warmup, min_rounds, max_rounds, rtol, target_seconds,
                      budget_seconds)
    names = list(contenders)
    number = {}
    for name in names:
        for _ in range(warmup):
            t = _sample(contenders[name], 1)
        number[name] = max(1, int(math.ceil(target_seconds / max(t, 1e-9))))
    samples = {name: [] for name in names}
    start = last_report = time.perf_counter()
    stable, rounds, ratios = False, 0, None
    while rounds < max_rounds:
        k = rounds % len(names)
        for name in names[k:] + names[:k]:
            samples[name].append(_sample(contenders[name], number[name]))
        rounds += 1
        base = np.array(samples[baseline])
        ratios = np.stack([np.array(samples[n]) / base for n in names], axis=1)   # (rounds, m)
        now = time.perf_counter()
        if label is not None and now - last_report > 2.0:
            med = np.median(ratios, axis=0)
            cells = ", ".join(f"{n} {r:.3g}x" for n, r in zip(names, med) if n != baseline)
            print(f"    {label}: round {rounds}, {cells}", file=sys.stderr, flush=True)
            last_report = now
        if rounds >= min_rounds:
            if _halves_agree(ratios, rtol):
                stable = True
                break
            if now - start > budget_seconds:
                break
    res = Comparison(baseline=baseline, rounds=rounds, stable=stable)
    for j, name in enumerate(names):
        q25, q50, q75 = np.percentile(ratios[:, j], [25, 50, 75])
        res.timings[name] = Timing(name, float(np.median(samples[name])), float(q50),
                                   float((q75 - q25) / (2.0 * q50)), number[name], name == baseline)
    return res


def ratio_cell(t: Timing) -> str:
    """``"1.93x+-3%"``: a contender's ratio to the baseline and its relative spread
    (``"baseline"`` for the baseline itself)."""
    if t.is_baseline:
        return "baseline"
    return f"{t.ratio:.3g}x+-{100 * t.spread:.0f}%"


def progress(i: int, n: int, label: str) -> None:
    """Progress line ``[i/n] label ...`` on stderr (flushed), printed before a measurement."""
    print(f"[{i}/{n}] {label} ...", file=sys.stderr, flush=True)


def machine() -> str:
    """``"2 CPUs, load average 0.31 (1 min), Numba threads 2, OMP_NUM_THREADS unset"``: other
    load inflates the spread of every ratio; thread counts say what was compared."""
    try:
        load = f", load average {os.getloadavg()[0]:.2f} (1 min)"
    except (AttributeError, OSError):       # pragma: no cover - platforms without getloadavg
        load = ""
    import numba
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{os.cpu_count()} CPUs{load}, Numba threads {numba.config.NUMBA_NUM_THREADS}, OMP_NUM_THREADS {omp}"
