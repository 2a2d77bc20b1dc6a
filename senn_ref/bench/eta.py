"""Cost of the natural expansion score eta versus layer width: exact, CG and K-FAC.

A 2-hidden-layer tanh MLP ``8 -> w -> w -> 4`` on a fixed batch (N = 256, MSE,
random targets), widths w = 8, 16, ..., 512, damping delta = 0.1 for every method.

* exact : dense GGN factor (P forward-mode passes) + SVD: cost ~ N K P^2 + P JVPs; skipped
          once P exceeds ``EXACT_MAX_P`` (prints "skipped (P=...)" and the time the P^2 law
          extrapolates from the largest measured width).
* cg    : matrix-free CG on (F + delta I) u = g: each product is one JVP and one backward
          pass, O(N P); the iteration count ("it=") depends on the conditioning, not on P directly.
* kfac  : ``senn_ref.kfac.kfac_eta``: factors (w+1) x (w+1) and w x w, eigendecompositions
          O(w^3) = O(P^1.5) per layer, never anything of size P^2.

At each width the methods are timed side by side by :func:`senn_ref.bench.timing.compare`
(one warm-up call each, which includes Numba compilation at the first width, then
interleaved rounds until the ratios are stable); each row prints the median seconds of
every method, its ratio to K-FAC at the same width with the spread, and the scores (exact
and CG agree to the CG tolerance; K-FAC is an approximation).  Each row is printed as soon
as it is measured, after a progress line on stderr.  ``run(quick=True)`` stops at width 64
with fewer rounds.  See ``derivations/10-expansion-score.md`` section 9.
"""
from __future__ import annotations

import numpy as np

from .. import score
from ..natural_gradient import natural_gradient
from ..layers.activations import Tanh
from ..layers.dense import Dense
from ..losses import mse
from ..network import Network
from .timing import compare, machine, progress, ratio_cell

WIDTHS = (8, 16, 32, 64, 128, 256, 512)
EXACT_MAX_P = 3000
N, N_IN, N_OUT, DAMPING = 256, 8, 4, 0.1
METHODS = ("exact", "cg", "kfac")


def make_problem(width: int, seed: int = 0):
    """Network ``8 -> w -> w -> 4`` (tanh), inputs X (256, 8), targets Y (256, 4)."""
    rng = np.random.default_rng(seed)
    net = Network([Dense(N_IN, width, rng, bias_std=0.1), Tanh((width,)),
                   Dense(width, width, rng, bias_std=0.1), Tanh((width,)), Dense(width, N_OUT, rng)])
    data = np.random.default_rng(1000)
    X = data.standard_normal((N, N_IN))
    Y = data.standard_normal((N, N_OUT))
    return net, X, Y


def run(quick: bool = False, widths=None, repeats: int | None = None) -> list[dict]:
    """Time eta for every width and method; returns rows ``{"width", "P", "method", "seconds"
    (None if skipped), "ratio" (seconds / K-FAC seconds at the same width), "spread", "eta"}``.
    ``repeats`` fixes the number of interleaved rounds (default: until stable)."""
    widths = tuple(widths) if widths is not None else (WIDTHS[:4] if quick else WIDTHS)
    if repeats is not None:
        settings = dict(min_rounds=repeats, max_rounds=repeats)
    else:
        settings = (dict(min_rounds=3, max_rounds=10, budget_seconds=10.0) if quick
                    else dict(min_rounds=5, max_rounds=30, budget_seconds=60.0))
    loss = mse()
    rows = []
    print(f"N={N}, 8 -> w -> w -> 4 tanh MLP, damping {DAMPING}; median seconds and ratio to K-FAC "
          f"at the same width (interleaved rounds, +- half the interquartile range; * = not stable); "
          f"{machine()}")
    print(f"{'width':>6} {'P':>8} " + " ".join(f"{m:>34}" for m in METHODS), flush=True)
    for i, w in enumerate(widths, 1):
        progress(i, len(widths), f"eta width {w}")
        net, X, Y = make_problem(w)
        P = net.num_params()
        last = {}

        def call(m):
            if m == "cg":
                def fn():
                    u, g, _, info = natural_gradient(net, X, Y, loss, damping=DAMPING, tol=1e-8, maxiter=2000)
                    last[m] = (float(g @ u), info.iterations)
            else:
                def fn():
                    last[m] = (score.eta(net, X, Y, loss, curvature=m, damping=DAMPING), None)
            return fn

        timed = [m for m in METHODS if not (m == "exact" and P > EXACT_MAX_P)]
        res = compare({m: call(m) for m in timed}, baseline="kfac", warmup=1, target_seconds=0.05,
                      label=f"width {w}", **settings)
        cells = []
        for m in METHODS:
            if m not in timed:
                rows.append({"width": w, "P": P, "method": m, "seconds": None, "ratio": None, "spread": None,
                             "eta": None})
                cells.append(f"skipped (P={P} > {EXACT_MAX_P})")
                continue
            t = res[m]
            eta, iters = last[m]
            rows.append({"width": w, "P": P, "method": m, "seconds": t.seconds, "ratio": t.ratio,
                         "spread": t.spread, "eta": eta, "cg_iterations": iters, "stable": res.stable})
            extra = f" it={iters}" if iters is not None else ""
            cells.append(f"{t.seconds:8.3f}s {ratio_cell(t)}{'' if res.stable else '*'} eta={eta:.4f}{extra}")
        print(f"{w:>6} {P:>8} " + " ".join(f"{c:>34}" for c in cells), flush=True)
    return rows


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths up to 64, fewer rounds")
    run(quick=parser.parse_args().quick)
