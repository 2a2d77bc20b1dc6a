"""``senn-ref verify``: check every numerical claim of senn-math section 11 on fresh random instances.

Each claim is a function ``claim(rng, trials) -> Outcome`` in this package (``passes``,
``curvature``, ``gains``, ``rounds``, ``growth``); it draws its networks, data, dampings and
proposals from ``numpy.random.default_rng([seed, number])`` (so selecting claims does not change
their instances) and calls the public functions of ``senn_ref`` through their modules'
attributes (a monkeypatched function is the one verified).  :func:`run` returns one row per
claim ``{name, number, section, trials, worst, tolerance, passed, check, checks,
measurements}`` and prints the table or the JSON document.  ``derivations/README.md``
("senn-ref verify") lists what each claim compares and its tolerance.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .._validate import check_positive_int
from . import curvature, gains, growth, passes, rounds
from .report import Outcome, row, table, to_json

#: (number, name, derivation section, module, function name) in senn-math 11 order
CLAIMS = (
    (1, "passes", "01-conventions.md 1.4", passes, "claim_passes"),
    (2, "kernel-twins", "03-convolution.md 6, 05-rational.md 8", passes, "claim_kernel_twins"),
    (3, "fisher-products", "09-fisher.md 4, 11-kfac.md 4", curvature, "claim_fisher_products"),
    (4, "damped-inverses", "11-kfac.md 6", curvature, "claim_damped_inverses"),
    (5, "eta-range", "10-expansion-score.md 4-5", curvature, "claim_eta_range"),
    (6, "preservation", "14-growth-operations.md 3, 17-depth.md 2, 18-pruning.md 1", growth, "claim_preservation"),
    (7, "width-gain", "15-width-gain.md 2-6", gains, "claim_width_gain"),
    (8, "gain-gradient", "16-kfac-proposal.md 4-5, 17-depth.md 7", gains, "claim_gain_gradient"),
    (9, "rate-bound", "19-criterion.md 2", rounds, "claim_rate_bound"),
    (10, "pruning-scores", "18-pruning.md 2-4", growth, "claim_pruning_scores"),
    (11, "growth-state", "14-growth-operations.md 4, 17-depth.md 4, 18-pruning.md 6", growth, "claim_growth_state"),
)
NAMES = tuple(c[1] for c in CLAIMS)
DEFAULT_TRIALS = 8


def select(claims) -> list:
    """The CLAIMS entries named in ``claims`` (names or numbers as strings/ints; None = all),
    in senn-math order.  ValueError naming the unknown entry."""
    if claims is None or len(claims) == 0:
        return list(CLAIMS)
    wanted = set()
    for c in claims:
        key = str(c).strip()
        hit = [e for e in CLAIMS if key in (e[1], str(e[0]))]
        if not hit:
            raise ValueError(f"claim: unknown claim {c!r}; choose numbers 1-{len(CLAIMS)} or names {', '.join(NAMES)}")
        wanted.add(hit[0][0])
    return [e for e in CLAIMS if e[0] in wanted]


def run(seed: int = 0, trials: int = DEFAULT_TRIALS, claims=None, verbose: bool = True,
        as_json: bool = False) -> list[dict]:
    """Run the selected claims with ``trials`` random instances each (a claim may build several
    objects per instance); print the table (or, with ``as_json``, the JSON document) when
    ``verbose``; return the rows.  A claim that raises is a failed row whose check names the
    exception; warnings raised inside a claim are counted in its measurements.  Arguments are
    checked before anything runs.  ``derivations/README.md`` ("senn-ref verify")."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    trials = check_positive_int(trials, "trials")
    chosen = select(claims)
    t0 = time.perf_counter()
    rows = []
    for number, name, section, module, fname in chosen:
        rng = np.random.default_rng([int(seed), number])
        t1 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome = getattr(module, fname)(rng, trials)
            except Exception as exc:                   # a crash is a failed claim, not a traceback
                outcome = Outcome(trials)
                outcome.add(f"raised {type(exc).__name__}: {exc}", float("nan"), 0.0)
        if caught:                                     # reported beside the verdict, not on stderr
            first = str(caught[0].message).splitlines()[0][:90]
            outcome.measurements["warnings"] = f"{len(caught)} (first: {caught[0].category.__name__}: {first})"
        rows.append(row(name, number, section, outcome))
        rows[-1]["seconds"] = round(time.perf_counter() - t1, 3)
    seconds = time.perf_counter() - t0
    if verbose:
        print(to_json(int(seed), rows, seconds) if as_json else table(int(seed), rows, seconds))
    return rows


__all__ = ["CLAIMS", "DEFAULT_TRIALS", "NAMES", "run", "select"]
