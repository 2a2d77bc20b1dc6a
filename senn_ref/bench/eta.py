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

Prints seconds and the ratio to the smallest width for every method, plus the scores
(exact and CG agree to the CG tolerance; K-FAC is an approximation).  ``run(quick=True)``
stops at width 64 with one repetition.  See ``derivations/10-expansion-score.md`` section 9.
"""
from __future__ import annotations

import time

import numpy as np

from .. import score
from ..natural_gradient import natural_gradient
from ..layers.activations import Tanh
from ..layers.dense import Dense
from ..losses import mse
from ..network import Network

WIDTHS = (8, 16, 32, 64, 128, 256, 512)
EXACT_MAX_P = 3000
N, N_IN, N_OUT, DAMPING = 256, 8, 4, 0.1


def make_problem(width: int, seed: int = 0):
    """Network ``8 -> w -> w -> 4`` (tanh), inputs X (256, 8), targets Y (256, 4)."""
    rng = np.random.default_rng(seed)
    net = Network([Dense(N_IN, width, rng, bias_std=0.1), Tanh((width,)),
                   Dense(width, width, rng, bias_std=0.1), Tanh((width,)), Dense(width, N_OUT, rng)])
    data = np.random.default_rng(1000)
    X = data.standard_normal((N, N_IN))
    Y = data.standard_normal((N, N_OUT))
    return net, X, Y


def _time(fn, repeats: int):
    best, value = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def run(quick: bool = False, widths=None, repeats: int | None = None) -> list[dict]:
    """Time eta for every width and method; returns rows
    ``{"width", "P", "method", "seconds" (None if skipped), "ratio" (to the smallest width), "eta"}``."""
    widths = tuple(widths) if widths is not None else (WIDTHS[:4] if quick else WIDTHS)
    repeats = repeats if repeats is not None else (1 if quick else 3)
    try:
        from ..kfac import kfac_eta  # noqa: F401
        methods = ("exact", "cg", "kfac")
    except ImportError:
        methods = ("exact", "cg")
        print("senn_ref.kfac not available: K-FAC column skipped")
    loss = mse()
    rows, base = [], {}
    print(f"N={N}, 8 -> w -> w -> 4 tanh MLP, damping {DAMPING}; seconds (best of {repeats}), "
          f"x ratio to the smallest width")
    print(f"{'width':>6} {'P':>8} " + " ".join(f"{m:>32}" for m in methods))
    for w in widths:
        net, X, Y = make_problem(w)
        P = net.num_params()
        cells = []
        for m in methods:
            if m == "exact" and P > EXACT_MAX_P:
                # extrapolate from the largest measured width by the P^2 law of the exact path
                measured = [r for r in rows if r["method"] == "exact" and r["seconds"] is not None]
                guess = measured[-1]["seconds"] * (P / measured[-1]["P"]) ** 2 if measured else None
                rows.append({"width": w, "P": P, "method": m, "seconds": None, "ratio": None, "eta": None,
                             "extrapolated_seconds": guess})
                cells.append(f"skipped (P={P})" + (f" ~{guess:.3g}s" if guess is not None else ""))
                continue
            if m == "cg":
                def fn():
                    u, g, _, info = natural_gradient(net, X, Y, loss, damping=DAMPING, tol=1e-8, maxiter=2000)
                    return float(g @ u), info.iterations
                sec, (eta, iters) = _time(fn, repeats)
            else:
                sec, eta = _time(lambda: score.eta(net, X, Y, loss, curvature=m, damping=DAMPING), repeats)
                iters = None
            base.setdefault(m, sec)
            rows.append({"width": w, "P": P, "method": m, "seconds": sec, "ratio": sec / base[m], "eta": eta,
                         "cg_iterations": iters})
            extra = f" it={iters}" if iters is not None else ""
            cells.append(f"{sec:8.3f}s x{sec / base[m]:7.1f} eta={eta:.4f}{extra}")
        print(f"{w:>6} {P:>8} " + " ".join(f"{c:>32}" for c in cells), flush=True)
    return rows


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths up to 64, one repetition")
    run(quick=parser.parse_args().quick)
