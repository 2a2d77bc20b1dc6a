"""The exact Jacobian (and the exact GGN built on it) by reverse versus forward mode.

``fisher.jacobian`` takes reverse mode when K < P: K backward passes keeping per-example
parameter gradients instead of P forward-mode passes (``derivations/09-fisher.md``
section 3b).  This benchmark times, side by side in one process with
:func:`senn_ref.bench.timing.compare`:

* ``reverse`` : :func:`senn_ref.fisher.exact.jacobian_reverse` (the baseline, ratio 1);
* ``forward`` : :func:`senn_ref.fisher.exact.jacobian_forward` (the algorithm ``jacobian``
  used before), skipped when P exceeds ``FORWARD_MAX_P`` in a quick run;
* ``ggn``     : :func:`senn_ref.fisher.exact` with the euclidean metric (the Jacobian plus
  one (P, NK) @ (NK, P) product), for the size of the Jacobian's share.

Cases: the 1-D task's rational nets 1-16-1, 1-83-1 and 1-500-1 (N = 50, K = 1, P = 97,
499, 2,999), a tanh 64-64-10 digits MLP (N = 200, K = 10, P = 4,810) and the default
digits convnet (N = 32, K = 10).  Before timing, the two Jacobians are checked equal
(relative 2-norm error below 1e-12).  Rows print the median seconds per call and the
ratio to reverse mode with its spread (``*`` = the stopping rule was not met).
"""
from __future__ import annotations

import numpy as np

from ..architectures import convnet, mlp
from ..fisher.exact import exact, jacobian_forward, jacobian_reverse
from ..losses import mse
from ..testing import relative_error
from .timing import compare, machine, progress, ratio_cell

#: in a quick run, forward mode is timed only up to this many parameters
FORWARD_MAX_P = 600


def cases(quick: bool = False) -> list:
    """``(label, net, X)`` triples; ``quick`` keeps the two smallest dense cases."""
    data = np.random.default_rng(1)
    out = [("rational 1-16-1, N=50", mlp([1, 16, 1], seed=0), data.standard_normal((50, 1))),
           ("rational 1-83-1, N=50", mlp([1, 83, 1], seed=0), data.standard_normal((50, 1)))]
    if quick:
        return out
    out += [("rational 1-500-1, N=50", mlp([1, 500, 1], seed=0), data.standard_normal((50, 1))),
            ("tanh 64-64-10, N=200", mlp([64, 64, 10], activation="tanh", seed=0),
             data.standard_normal((200, 64))),
            ("convnet 8x8 (16, 32), N=32", convnet(seed=0), data.standard_normal((32, 1, 8, 8)))]
    return out


def _settings(quick: bool) -> dict:
    """Stopping-rule arguments of :func:`~senn_ref.bench.timing.compare`."""
    return (dict(min_rounds=3, max_rounds=8, budget_seconds=8.0) if quick
            else dict(min_rounds=5, max_rounds=30, budget_seconds=60.0))


def run(quick: bool = False) -> list[dict]:
    """Time every case; returns rows ``{"case", "P", "K", "method", "seconds", "ratio", "spread"}``."""
    settings = _settings(quick)
    loss = mse()
    rows = []
    print(f"exact Jacobian: median seconds per call and ratio to reverse mode (interleaved rounds, "
          f"+- half the interquartile range; * = not stable); {machine()}")
    print(f"{'case':<28} {'K':>3} {'P':>6} {'reverse':>12} {'forward':>24} {'ggn':>24}", flush=True)
    todo = cases(quick)
    for i, (label, net, X) in enumerate(todo, 1):
        progress(i, len(todo), f"jacobian {label}")
        P = net.num_params()
        Jr = jacobian_reverse(net, X)
        K = Jr.shape[1]
        contenders = {"reverse": lambda: jacobian_reverse(net, X),
                      "ggn": lambda: exact(net, X, loss)}
        if not (quick and P > FORWARD_MAX_P):
            err = relative_error(Jr, jacobian_forward(net, X))
            if not err <= 1e-12:
                raise AssertionError(f"{label}: reverse and forward Jacobians differ ({err:.2e})")
            contenders["forward"] = lambda: jacobian_forward(net, X)
        res = compare(contenders, baseline="reverse", warmup=1, target_seconds=0.05, label=label, **settings)
        star = "" if res.stable else "*"
        cells = {}
        for m in ("reverse", "forward", "ggn"):
            if m not in contenders:
                cells[m] = "skipped"
                continue
            t = res[m]
            rows.append({"case": label, "P": P, "K": K, "method": m, "seconds": t.seconds,
                         "ratio": t.ratio, "spread": t.spread})
            cells[m] = f"{t.seconds * 1e3:.3g} ms" + ("" if m == "reverse" else f" {ratio_cell(t)}{star}")
        print(f"{label:<28} {K:>3} {P:>6} {cells['reverse']:>12} {cells['forward']:>24} {cells['ggn']:>24}",
              flush=True)
    return rows
