"""Cost of the K-FAC width proposal score: per candidate, versus depth and width, and vectorised.

Problem: a rational MLP ``8 -> w -> ... -> w -> 4`` with ``L`` hidden layers on a fixed batch
(N = 256, MSE, random targets), damping 0.01; the hidden layer produced by the first Dense is
scored (its consumer is the second Dense, with w + 1 inputs and w outputs).

1. ``depth``: ``WidthProposals.score(W, b, act, grad=True)`` on C = 32 one-unit candidates,
   for L = 2, 4, 8 at each width w, timed side by side (:func:`senn_ref.bench.timing.compare`,
   baseline L = 2): the per-candidate cost must not grow with L (16-kfac-proposal.md section 8:
   O(N q (m + n) + q^3 + q m^2 + q n^2) per candidate, nothing from other layers).
2. ``vectorised``: one batched call on C = 64 candidates versus a Python loop of 64 single
   calls (L = 2), side by side; the ratio is loop / vectorised.

Every row is printed as soon as it is measured, with the ratio's spread and whether the
stopping rule was met.  ``run(quick=True)`` uses widths 8 and 64 and a smaller budget
(under a minute).  Numbers are reported in ``derivations/16-kfac-proposal.md`` section 8.
"""
from __future__ import annotations

import numpy as np

from ..grow.kfac_proposal import WidthProposals
from ..layers.dense import Dense
from ..layers.rational import Rational
from ..losses import mse
from ..network import Network
from .timing import compare, progress, ratio_cell

WIDTHS = (8, 16, 32, 64, 128, 256)
DEPTHS = (2, 4, 8)
N_IN, N_OUT, DAMPING = 8, 4, 0.01


def make_context(width: int, depth: int, N: int = 256, seed: int = 0) -> WidthProposals:
    """The proposal context of the first hidden layer of ``8 -> w x depth -> 4`` (rational)."""
    rng = np.random.default_rng(seed)
    sizes = [N_IN] + [width] * depth + [N_OUT]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(Dense(sizes[i], sizes[i + 1], rng, bias_std=0.1))
        if i < len(sizes) - 2:
            layers.append(Rational(sizes[i + 1], rng=rng))
    net = Network(layers)
    data = np.random.default_rng(1000)
    X, Y = data.standard_normal((N, N_IN)), data.standard_normal((N, N_OUT))
    return WidthProposals(net, X, Y, mse(), 0, damping=DAMPING)


def _candidates(ctx, n):
    return ctx.random_candidates(n, np.random.default_rng(7), k=1)


def run(quick: bool = False, widths=None, depths=None, N: int = 256, n_depth: int = 32,
        n_loop: int = 64, budget_seconds: float | None = None) -> list[dict]:
    """Measure both parts; returns rows ``{"part", "width", ...}`` (depth rows: ``depth``,
    ``seconds_per_candidate``, ``ratio`` to L = depths[0], ``spread``, ``stable``; vectorised
    rows: ``vectorised_s``, ``loop_s`` per call, ``ratio`` = loop / vectorised, ``spread``, ``stable``)."""
    widths = tuple(widths) if widths is not None else ((8, 64) if quick else WIDTHS)
    depths = tuple(depths) if depths is not None else DEPTHS
    budget = budget_seconds if budget_seconds is not None else (4.0 if quick else 20.0)
    rows, total = [], 2 * len(widths)
    print(f"K-FAC width proposal score: N={N}, damping={DAMPING}, lower bound + gradient "
          f"(times are medians per call; ratios measured side by side, +- half the IQR)")
    print(f"\n1) per-candidate cost vs depth (C={n_depth} candidates per call, baseline L={depths[0]})")
    print(f"{'width':>6} " + " ".join(f"{'L=%d us/cand' % L:>14}" for L in depths) + "  ratios to L="
          f"{depths[0]}")
    for i, w in enumerate(widths):
        progress(i + 1, total, f"depth sweep, width {w}")
        calls = {}
        for L in depths:
            ctx = make_context(w, L, N)
            W, b, act = _candidates(ctx, n_depth)
            calls[f"L={L}"] = (lambda c=ctx, W=W, b=b, a=act: c.score(W, b, a, grad=True))
        res = compare(calls, baseline=f"L={depths[0]}", budget_seconds=budget, label=f"width {w}")
        cells, ratios = [], []
        for L in depths:
            t = res[f"L={L}"]
            rows.append({"part": "depth", "width": w, "depth": L, "seconds_per_candidate": t.seconds / n_depth,
                         "ratio": t.ratio, "spread": t.spread, "stable": res.stable})
            cells.append(f"{1e6 * t.seconds / n_depth:>14.1f}")
            ratios.append(f"L={L}: {ratio_cell(t)}")
        print(f"{w:>6} " + " ".join(cells) + "  " + ", ".join(ratios[1:])
              + ("" if res.stable else "  (not stable)"), flush=True)
    print(f"\n2) vectorised vs per-candidate loop (C={n_loop}, L={depths[0]}; ratio = loop / vectorised)")
    print(f"{'width':>6} {'vectorised ms':>14} {'loop ms':>10}  ratio")
    for i, w in enumerate(widths):
        progress(len(widths) + i + 1, total, f"vectorised vs loop, width {w}")
        ctx = make_context(w, depths[0], N)
        W, b, act = _candidates(ctx, n_loop)
        singles = [(W[j:j + 1], b[j:j + 1], {k: v[j:j + 1] for k, v in act.items()}) for j in range(n_loop)]

        def loop(c=ctx, singles=singles):
            for args in singles:
                c.score(*args, grad=True)

        res = compare({"vectorised": lambda: ctx.score(W, b, act, grad=True), "loop": loop},
                      baseline="vectorised", budget_seconds=budget, label=f"width {w}")
        t, v = res["loop"], res["vectorised"]
        rows.append({"part": "vectorised", "width": w, "vectorised_s": v.seconds, "loop_s": t.seconds,
                     "ratio": t.ratio, "spread": t.spread, "stable": res.stable})
        print(f"{w:>6} {1e3 * v.seconds:>14.2f} {1e3 * t.seconds:>10.2f}  {ratio_cell(t)}"
              + ("" if res.stable else "  (not stable)"), flush=True)
    return rows
