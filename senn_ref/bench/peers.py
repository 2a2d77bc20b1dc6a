"""``senn-ref bench peers``: senn-ref against ``jax.jit`` and PyTorch at the sizes SENN runs at.

Needs the optional extra ``[bench]`` (``pip install 'senn-ref[bench]'``: jax and torch);
with only one of them installed the other's columns print ``-``, with neither the command
stops with one line naming the extra.  Issue 12's table, every row side by side in one
process, float64 on the CPU, each framework with its default threads (PyTorch imported with
``OMP_WAIT_POLICY=PASSIVE`` unless set, :mod:`senn_ref.bench.peer_torch`).  For each row the
twins (:mod:`senn_ref.bench.peer_jax`, :mod:`senn_ref.bench.peer_torch`) are built from the
same formulas as the network, their numbers are checked equal to senn-ref's (relative 2-norm
error at most 1e-10, else AssertionError with the worst entries), and only then the
contenders are timed with :func:`senn_ref.bench.timing.compare` (senn-ref is the baseline;
a ratio below 1 means the peer is faster).  Rows:

* ``exact GGN``: ``fisher.exact(net, X, mse())`` versus ``J^T J / N`` (rational 1-83-1,
  P = 499, and 1-500-1, P = 3001; N = 50; 09-fisher.md section 3b);
* ``SGD step``: ``Network.loss_and_grad`` and ``p -= lr g`` (rational 1-16-1, N = 50, MSE;
  tanh 64-64-10, N = 1797, softmax cross-entropy);
* ``CG iteration``: one natural-gradient CG iteration's operator product
  ``FisherOperator.matvec(v) = (F + 0.1 I) v`` (MSE; 1-16-1, N = 50; 09-fisher.md section 4);
* ``CG eta``: ``score.eta(curvature="cg")``, ``g^T (F + 0.1 I)^{-1} g`` by CG to relative
  residual 1e-10, against the same CG in each framework (same eta, iteration counts within one);
* ``conv fwd+bwd``: issue 12's four 3x3 'same' conv cases, N = 64, forward then backward
  (dX, dW, db), built and checked by :mod:`senn_ref.bench.kernels`;
* ``first step, fresh process``: seconds from process start to the end of the first training
  step of the 1-D task (:mod:`senn_ref.bench.peer_fresh`), median of interleaved rounds.

The 1-D SGD and CG rows also time senn-ref's layer-wise path
(:func:`senn_ref.network_plan.layerwise`) in the same rounds.  ``--quick``: the 1-83-1 GGN,
the 1-D SGD, CG and CG-eta rows, one conv case and one fresh-process round, fewer timing rounds.
The table is printed as Markdown (paste-able into the README).
"""
from __future__ import annotations

import os

import numpy as np

from ..architectures import mlp
from ..fisher.exact import exact
from ..fisher.matvec import FisherOperator
from ..losses import mse, softmax_cross_entropy
from ..natural_gradient import natural_gradient
from ..network_plan import layerwise, plan_for
from ..score import eta
from ..testing import describe_mismatch, relative_error
from . import peer_fresh, peer_jax, peer_torch
from .timing import compare, machine, progress, ratio_cell

LR = 1e-3
CG_DAMPING = 0.1
CG_TOL = 1e-10
PEERS = ("jax.jit", "torch")
COLUMNS = ("senn-ref",) + PEERS + ("layer-wise",)


def load_peers() -> dict:
    """``{"jax.jit": jax, "torch": torch}`` for the importable ones (torch first, so that its
    OpenMP setting is in place before anything imports it); SystemExit naming the extra when
    neither is there."""
    torch, jax = peer_torch.load(), peer_jax.load()
    found = {name: mod for name, mod in (("jax.jit", jax), ("torch", torch)) if mod is not None}
    if not found:
        raise SystemExit("senn-ref bench peers needs jax or torch: pip install 'senn-ref[bench]'")
    return found


def check(label: str, who: str, what: str, theirs, ours) -> None:
    """AssertionError unless ``theirs`` equals ``ours`` to relative 2-norm error 1e-10."""
    theirs, ours = np.asarray(theirs, dtype=np.float64), np.asarray(ours, dtype=np.float64)
    err = relative_error(theirs, ours) if theirs.shape == ours.shape else np.inf
    if not err <= 1e-10:
        detail = (describe_mismatch(theirs, ours, 1e-10, 0.0, 3) if theirs.shape == ours.shape
                  else f"shapes {theirs.shape} vs {ours.shape}")
        raise AssertionError(f"{label}: {who}'s {what} differs from senn-ref's (relative {err:.2e}); "
                             f"{who} vs senn-ref: {detail}")


def ggn_contenders(label, net, X, peers) -> dict:
    """``{name: call}``: ``fisher.exact(net, X, mse())``, the (P, P) GGN ``J^T J / N``, and the
    peers' (09-fisher.md section 3b), each checked equal to ours."""
    loss = mse()
    out = {"senn-ref": lambda: exact(net, X, loss)}
    ours = exact(net, X, loss)
    for name, mod in peers.items():
        twin = peer_jax if name == "jax.jit" else peer_torch
        out[name], G = twin.ggn(net, X, mod)
        check(label, name, "GGN", G, ours)
    return out


def sgd_contenders(label, net, X, Y, loss, peers) -> dict:
    """``{name: call}``: one SGD step ``p -= LR g`` on every parameter array, ours with
    ``Network.loss_and_grad``; the peers' first step (loss, updated parameters) checked equal
    to ours; the layer-wise path too where the compiled whole-network path serves ``net``."""
    start = [np.array(p) for p in net.named_params().values()]
    value, grads = net.loss_and_grad(X, Y, loss)
    new = [p - LR * g for p, g in zip(start, grads.grads.values())]
    params = net.named_params()

    def ours_step():
        _, g = net.loss_and_grad(X, Y, loss)
        for key, gk in g.grads.items():
            params[key] -= LR * gk

    out = {"senn-ref": ours_step}
    for name, mod in peers.items():
        twin = peer_jax if name == "jax.jit" else peer_torch
        out[name], their_value, their_new = twin.sgd(net, X, Y, loss.name, LR, mod)
        check(label, name, "loss", their_value, value)
        for key, a, b in zip(params, their_new, new):
            check(label, name, f"updated {key}", a, b)
    plan = plan_for(net)
    if plan is not None and plan.fast_for(X.shape[0]):   # else senn-ref is the layer-wise path itself
        twin_net = net.copy()                            # its own caches: no refresh between contenders
        twin_params = twin_net.named_params()

        def layerwise_step():
            with layerwise():
                _, g = twin_net.loss_and_grad(X, Y, loss)
            for key, gk in g.grads.items():
                twin_params[key] -= LR * gk
        out["layer-wise"] = layerwise_step
    return out


def cg_contenders(label, net, X, peers) -> dict:
    """``{name: call}``: one CG iteration's product ``(F + 0.1 I) v`` (MSE, v (P,) random),
    ``FisherOperator.matvec`` against the peers' jvp + vjp (09-fisher.md section 4), and the
    layer-wise path."""
    op = FisherOperator(net, X, mse(), damping=CG_DAMPING)
    v = np.random.default_rng(4).standard_normal(op.P)
    ours = op.matvec(v)
    out = {"senn-ref": lambda: op.matvec(v)}
    for name, mod in peers.items():
        twin = peer_jax if name == "jax.jit" else peer_torch
        out[name], theirs = twin.gvp(net, X, v, CG_DAMPING, mod)
        check(label, name, "GGN-vector product", theirs, ours)
    with layerwise():
        op_layerwise = FisherOperator(net.copy(), X, mse(), damping=CG_DAMPING)

    def layerwise_product():
        with layerwise():
            op_layerwise.matvec(v)
    out["layer-wise"] = layerwise_product
    return out


def cg_eta_contenders(label, net, X, Y, peers) -> dict:
    """``score.eta(..., curvature="cg")`` (tolerance 1e-10) against the peers' CG: the same
    eta (1e-10) after the same number of iterations, give or take one (the last residuals are
    rounding-sized: on a 1-5-1 net ours stopped at relative residual 3.4e-11 after 6, torch's
    after 7; 11 for all three on this row's net)."""
    u, g, _, info = natural_gradient(net, X, Y, mse(), damping=CG_DAMPING, tol=CG_TOL)
    out = {"senn-ref": lambda: eta(net, X, Y, mse(), curvature="cg", damping=CG_DAMPING, tol=CG_TOL)}
    for name, mod in peers.items():
        twin = peer_jax if name == "jax.jit" else peer_torch
        out[name], (value, iterations) = twin.cg_eta(net, X, Y, CG_DAMPING, CG_TOL, mod)
        check(label, name, "eta", value, g @ u)
        if abs(iterations - info.iterations) > 1:
            raise AssertionError(f"{label}: {name}'s CG took {iterations} iterations, senn-ref's {info.iterations}")
    return out


def conv_contenders(case, peers) -> dict:
    """Issue 12's conv case from :data:`senn_ref.bench.kernels.CASES`, its builders and checks."""
    from . import kernels
    _, kind, N, cin, cout, hw, k, pad = case
    layers, X, dY, _ = kernels._setup(kind, N, cin, cout, hw, k, pad, np.random.default_rng(0))
    out = {"senn-ref": kernels._layer_step(layers["numba"], X, dY)}
    if "jax.jit" in peers:
        out["jax.jit"] = kernels._jax_step(layers["numba"], X, dY, pad)
    if "torch" in peers:
        out["torch"] = kernels._torch_step(kind, layers["numba"], X, dY, pad)
    return out


def _rows(quick: bool, peers) -> list:
    """``[(label, make_contenders)]`` in the table's order."""
    from .kernels import CASES
    data = np.random.default_rng(3)
    X1 = data.standard_normal((50, 1))
    rows = [("exact GGN, rational 1-83-1, N=50, P=499", lambda L: ggn_contenders(L, mlp([1, 83, 1], seed=0), X1, peers))]
    if not quick:
        rows.append(("exact GGN, rational 1-500-1, N=50, P=3001",
                     lambda L: ggn_contenders(L, mlp([1, 500, 1], seed=0), X1, peers)))
    rows.append(("SGD step, rational 1-16-1, N=50, MSE",
                 lambda L: sgd_contenders(L, mlp([1, 16, 1], seed=0), X1, np.sin(3.0 * X1), mse(), peers)))
    rows.append(("CG iteration (GGN-vector product), 1-16-1, N=50",
                 lambda L: cg_contenders(L, mlp([1, 16, 1], seed=0), X1, peers)))
    rows.append(("CG eta, 1-16-1, N=50, tol 1e-10",
                 lambda L: cg_eta_contenders(L, mlp([1, 16, 1], seed=0), X1, np.sin(3.0 * X1), peers)))
    if not quick:
        Xd, Yd = data.standard_normal((1797, 64)), data.integers(0, 10, 1797)
        rows.append(("SGD step, tanh 64-64-10, N=1797, softmax CE",
                     lambda L: sgd_contenders(L, mlp([64, 64, 10], activation="tanh", seed=0), Xd, Yd,
                                              softmax_cross_entropy(), peers)))
    conv = [c for c in CASES if c[0].startswith("i12 ")]
    for case in conv[:1] if quick else conv:
        rows.append((f"conv fwd+bwd N=64 {case[0][9:]} k3", lambda L, c=case: conv_contenders(c, peers)))
    return rows


def _time(seconds: float) -> str:
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _line(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _fresh_rows(rounds: int, peers) -> list:
    """The two fresh-process rows (module docstring): medians over rounds; a peer's ratio is
    the median of its per-round ratios to senn-ref's time in the same round."""
    res = peer_fresh.measure(rounds, [p for p in PEERS if p in peers])
    out = []
    for key, label in (("cold", "first step, fresh process, empty Numba cache"),
                       ("warmup", "first step, fresh process, after `senn-ref warmup dense`")):
        ours = np.array(res[key])
        row = {"row": label, "senn-ref_s": float(np.median(ours)), "rounds": rounds}
        cells = [label, _time(row["senn-ref_s"])]
        for p in PEERS:
            cells.append(_time(float(np.median(res[p]))) if p in res else "-")
        for p in PEERS:
            if p in res:
                row[f"{p}_s"] = float(np.median(res[p]))
                row[f"{p}_over_ours"] = float(np.median(np.array(res[p]) / ours))
                cells.append(f"{row[f'{p}_over_ours']:.3g}x")
            else:
                cells.append("-")
        note = f"{rounds} round{'s' if rounds > 1 else ''}"
        print(_line(cells + [f"{note}; warm-up itself {np.median(res['warmup_s']):.3g} s"
                             if key == "warmup" else note]), flush=True)
        out.append(row)
    imports = ", ".join(f"{name} {np.median(t):.2f} s" for name, t in res["import_s"].items())
    print(f"\nFresh processes, seconds from the start to the imports done (median): {imports}.", flush=True)
    out[0]["import_s"] = {name: float(np.median(t)) for name, t in res["import_s"].items()}
    return out


def run(quick: bool = False, fresh: bool = True) -> list[dict]:
    """Print the table (module docstring) and return one dict per row: ``row``, ``stable``,
    ``{name}_s`` (median seconds per call) and ``{name}_over_ours`` (paired ratio, with
    ``{name}_spread``) for each contender measured (``jax.jit``, ``torch``, ``layer-wise``);
    the fresh-process rows (``fresh``) have ``rounds`` instead of ``stable``, the first of them
    ``import_s`` (median seconds from the start to the imports done, per contender)."""
    peers = load_peers()
    settings = (dict(min_rounds=3, max_rounds=8, budget_seconds=8.0) if quick
                else dict(min_rounds=5, max_rounds=30, budget_seconds=30.0))
    versions = ", ".join([f"jax.jit {peers['jax.jit'].__version__}" if "jax.jit" in peers else "jax not installed",
                          f"torch {peers['torch'].__version__} ({peers['torch'].get_num_threads()} threads)"
                          if "torch" in peers else "torch not installed"])
    print(f"senn-ref vs {versions}; float64, default threads, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; median time per call; ratios peer/senn-ref "
          f"(< 1: the peer is faster), median of paired interleaved rounds +- half the interquartile "
          f"range, * = not stable; {machine()}\n")
    print(_line(("row",) + COLUMNS[:3] + tuple(f"{c}/senn-ref" for c in COLUMNS[1:])))
    print(_line(["---"] * 7), flush=True)
    rows = _rows(quick, peers)
    out = []
    for i, (label, make) in enumerate(rows, 1):
        progress(i, len(rows) + fresh, label)
        res = compare(make(label), baseline="senn-ref", label=label, **settings)
        star = "" if res.stable else "*"
        row = {"row": label, "stable": res.stable}
        for name, t in res.timings.items():
            row[f"{name}_s"] = t.seconds
            if name != "senn-ref":
                row[f"{name}_over_ours"], row[f"{name}_spread"] = t.ratio, t.spread
        cells = [label] + [_time(res[c].seconds) if c in res.timings else "-" for c in COLUMNS[:3]]
        cells += [ratio_cell(res[c]) + star if c in res.timings else "-" for c in COLUMNS[1:]]
        print(_line(cells), flush=True)
        out.append(row)
    if fresh:
        progress(len(rows) + 1, len(rows) + 1, "first step in fresh processes")
        out += _fresh_rows(1 if quick else 3, peers)
    return out
