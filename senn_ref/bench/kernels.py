"""Benchmark: conv and dense forward+backward against a NumPy twin, GEMM and PyTorch CPU.

Usage:  ``senn-ref bench kernels [--quick]`` or ``python demos/bench_kernels.py [--quick]``.

For each case the same float64 inputs go through the contenders, timed side by side by
:func:`senn_ref.bench.timing.compare` (warm-up, interleaved rounds, repeated until the
ratios are stable; each ratio is printed with its spread):

* ``ours``   - ``Conv2D(backend="numba")`` / ``MaxPool2D(backend="numba")`` / ``Dense``:
  forward, then backward (dX, dW, db); the baseline of every ratio;
* ``numpy``  - conv and pool only: the same layer with the plain NumPy twin kernels.
  Dense layers have no Numba kernel (both backends are the same BLAS call), so there is
  no twin to compare and the column shows "-";
* ``gemm``   - NumPy's float64 ``(512 x 512) @ (512 x 512)``, interleaved with the layer:
  "of GEMM" is the layer's GFLOP/s over the GEMM's, both from the same rounds;
* ``jax``    - conv only: ``jax.jit`` of XLA's ``conv_general_dilated`` (NCHW, float64) and its
  VJP, default threads, checked against our layer's pass first (column skipped when jax is
  not importable);
* ``torch``  - ``torch.nn.functional.conv2d`` / ``linear`` / ``max_pool2d`` in float64 +
  autograd ``backward``, default threads, checked against our layer's pass first (column
  skipped when torch is not importable).  Interleaved with the others, torch's OpenMP
  workers would keep spinning after each call and slow the next contender, so torch is
  imported through :func:`senn_ref.bench.peer_torch.load`, which sets
  ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set.

FLOPs: a conv forward is ``2 N O Ho Wo C kh kw``, forward + backward (dX and dW) three
times that; dense ``3 * 2 N in out``; a 2x2 max pool row has no FLOP count.  Each row is
printed as soon as it is measured, after a progress line on stderr.

``run(quick=False)`` prints the table and returns the rows as a list of dicts.
Conv2D's design and the alternatives measured with this benchmark are in
``derivations/03-convolution.md`` section 6.
"""
from __future__ import annotations

import os

import numpy as np

from ..layers.conv2d import Conv2D
from ..layers.dense import Dense
from ..layers.pooling import MaxPool2D
from .peer_torch import load
from .timing import compare, machine, progress, ratio_cell

torch = load()  # optional comparison: None when torch is not importable

#: (label, kind, N, in_ch/in_features, out_ch/out_features, H=W, kernel, padding)
CASES = [
    ("digits conv 1->8 8x8", "conv", 256, 1, 8, 8, 3, 1),
    ("digits conv 8->16 8x8", "conv", 256, 8, 16, 8, 3, 1),
    ("digits dense 1024->10", "dense", 256, 1024, 10, None, None, None),
    ("mnist conv 1->16 28x28", "conv", 128, 1, 16, 28, 3, 1),
    ("mnist conv 16->32 28x28", "conv", 128, 16, 32, 28, 3, 1),
    ("mnist dense 784->128", "dense", 128, 784, 128, None, None, None),
    ("mnist maxpool 2x2 32x28x28", "pool", 128, 32, 32, 28, 2, 0),
    # issue 12's four conv cases (against torch there; jax here), N = 64
    ("i12 conv 1->8 8x8", "conv", 64, 1, 8, 8, 3, 1),
    ("i12 conv 8->16 8x8", "conv", 64, 8, 16, 8, 3, 1),
    ("i12 conv 16->32 14x14", "conv", 64, 16, 32, 14, 3, 1),
    ("i12 conv 32->64 28x28", "conv", 64, 32, 64, 28, 3, 1),
]


GEMM_N = 512


def _gemm_call():
    """NumPy float64 ``(512 x 512) @ (512 x 512)`` (``2 * 512^3`` flops) as a contender."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((GEMM_N, GEMM_N)), rng.standard_normal((GEMM_N, GEMM_N))
    return lambda: A @ B


def _layer_step(layer, X, dY):
    def step():
        layer.forward(X)
        layer.backward(dY)
    return step


def _agree(who, layer, X, dY, outs) -> None:
    """Raise unless a peer's ``outs = (Y, dX[, dW, db])`` equal ``layer``'s forward and backward
    on ``X``, ``dY`` (relative to the largest entry of ours, 1e-10): a peer column times the
    same pass as ours."""
    Y = layer.forward(X)
    dX, grads = layer.backward(dY)
    ours = (Y, dX) + tuple(grads[k] for k in ("W", "b") if k in grads)
    for name, a, b in zip(("Y", "dX", "dW", "db"), outs, ours):
        err = np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)
        if not err < 1e-10:
            raise RuntimeError(f"bench kernels: {who}'s {name} differs from ours (relative {err:.2e})")


def _torch_step(kind, layer, X, dY, padding):
    """PyTorch float64 forward + ``backward`` of ``layer``'s operation with its parameters,
    checked against ``layer`` first (:func:`_agree`)."""
    params = getattr(layer, "params", {})
    x = torch.tensor(X, requires_grad=True)
    w = torch.tensor(params.get("W", np.zeros(1)), requires_grad=True)
    b = torch.tensor(params.get("b", np.zeros(1)), requires_grad=True)
    g = torch.tensor(dY)

    def step():
        x.grad = w.grad = b.grad = None
        if kind == "pool":
            y = torch.nn.functional.max_pool2d(x, 2)
        elif kind == "conv":
            y = torch.nn.functional.conv2d(x, w, b, padding=padding)
        else:
            y = torch.nn.functional.linear(x, w, b)
        y.backward(g)
        return y

    y = step()
    outs = (y, x.grad) if kind == "pool" else (y, x.grad, w.grad, b.grad)
    _agree("torch", layer, X, dY, [t.detach().numpy() for t in outs])
    return step


def _jax_step(layer, X, dY, padding):
    """``jax.jit`` of conv forward + VJP (dX, dW, db), or None without jax.  Its outputs are
    checked against ``layer``'s forward and backward first (relative 1e-10), so the column
    times the same pass."""
    try:
        import jax
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    jax.config.update("jax_enable_x64", True)
    pad = ((padding, padding), (padding, padding))

    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    @jax.jit
    def step(x, w, b, g):
        y, vjp = jax.vjp(conv, x, w, b)
        return y, vjp(g)

    params = layer.params
    args = [jax.numpy.asarray(a) for a in (X, params["W"], params["b"], dY)]
    y, (dx, dw, db) = step(*args)
    _agree("jax", layer, X, dY, [np.asarray(a) for a in (y, dx, dw, db)])
    return lambda: jax.block_until_ready(step(*args))


def _setup(kind, N, cin, cout, hw, k, pad, rng):
    """Layers for both backends, input, output cotangent and the FLOP count of one case."""
    if kind == "conv":
        X = rng.standard_normal((N, cin, hw, hw))
        layers = {be: Conv2D(cin, cout, k, 1, pad, rng=np.random.default_rng(1), bias_std=0.1,
                             backend=be, in_hw=(hw, hw)) for be in ("numba", "numpy")}
        Ho, Wo = layers["numba"].out_hw
        flops = 3 * 2.0 * N * cout * Ho * Wo * cin * k * k
        dY = rng.standard_normal((N, cout, Ho, Wo))
    elif kind == "pool":
        X = rng.standard_normal((N, cin, hw, hw))
        layers = {be: MaxPool2D(k, in_shape=(cin, hw, hw), backend=be) for be in ("numba", "numpy")}
        flops = 0.0                                    # comparisons only: no GFLOP/s column
        dY = rng.standard_normal((N, cin) + layers["numba"].out_hw)
    else:
        X = rng.standard_normal((N, cin))
        # dense is pure BLAS whatever the backend: no twin to compare with
        layers = {"numba": Dense(cin, cout, rng=np.random.default_rng(1), bias_std=0.1)}
        flops = 3 * 2.0 * N * cin * cout
        dY = rng.standard_normal((N, cout))
    return layers, X, dY, flops


def _settings(quick: bool) -> dict:
    return (dict(min_rounds=3, max_rounds=15, budget_seconds=4.0) if quick
            else dict(min_rounds=7, max_rounds=60, budget_seconds=30.0))


def measure_case(case, rng, quick: bool = False) -> dict:
    """Measure one entry of ``CASES``; returns its row (seconds, ratios with spreads, GFLOP/s)."""
    label, kind, N, cin, cout, hw, k, pad = case
    layers, X, dY, flops = _setup(kind, N, cin, cout, hw, k, pad, rng)
    contenders = {"ours": _layer_step(layers["numba"], X, dY)}
    if "numpy" in layers:
        contenders["numpy"] = _layer_step(layers["numpy"], X, dY)
    if flops:
        contenders["gemm"] = _gemm_call()
    if kind == "conv" and (jax_step := _jax_step(layers["numba"], X, dY, pad)) is not None:
        contenders["jax"] = jax_step
    if torch is not None:
        contenders["torch"] = _torch_step(kind, layers["numba"], X, dY, pad)
    res = compare(contenders, baseline="ours", label=label, **_settings(quick))
    row = {"case": label, "flops": flops, "ours_s": res["ours"].seconds, "rounds": res.rounds,
           "stable": res.stable, "timings": res.timings}
    for name in ("numpy", "jax", "torch"):
        if name in contenders:
            row[f"{name}_s"] = res[name].seconds
            row[f"{name}_over_ours"] = res[name].ratio
            row[f"{name}_spread"] = res[name].spread
    if flops:
        row["ours_gflops"] = flops / row["ours_s"] / 1e9
        row["gemm_gflops"] = 2.0 * GEMM_N ** 3 / res["gemm"].seconds / 1e9
        # (flops / t_ours) / (gemm_flops / t_gemm) with the paired median ratio t_gemm / t_ours
        row["fraction_of_gemm"] = flops / (2.0 * GEMM_N ** 3) * res["gemm"].ratio
        row["fraction_spread"] = res["gemm"].spread
    return row


def format_header() -> str:
    """The table's column names and rule (two lines)."""
    head = (f"{'case':26s} {'ours ms':>8s} {'numpy/ours':>12s} {'jax/ours':>12s} {'torch/ours':>12s} {'GFLOP/s':>8s} "
            f"{'of GEMM':>11s} {'rounds':>7s}")
    return head + "\n" + "-" * len(head)


def format_row(r: dict) -> str:
    """One measured row: ours in ms, twin, jax and torch ratios with spread ("-" where there is no such
    contender), GFLOP/s and fraction of the interleaved GEMM, rounds (``*``: not stable)."""
    t = r["timings"]
    cells = [ratio_cell(t[n]) if n in t else "-" for n in ("numpy", "jax", "torch")]
    gf = f"{r['ours_gflops']:8.2f}" if r["flops"] else f"{'-':>8s}"
    frac = (f"{100 * r['fraction_of_gemm']:.0f}%+-{100 * r['fraction_spread']:.0f}%" if r["flops"] else "-")
    rounds = f"{r['rounds']}" + ("" if r["stable"] else "*")
    return (f"{r['case']:26s} {1e3 * r['ours_s']:8.2f} {cells[0]:>12s} {cells[1]:>12s} {cells[2]:>12s} {gf} {frac:>11s} "
            f"{rounds:>7s}")


def run(quick: bool = False, verbose: bool = True) -> list[dict]:
    """Measure every case, printing each row as it is measured (``verbose``); returns the rows."""
    if verbose:
        threads = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY "
                   f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}" if torch else "torch not installed")
        print(f"float64, forward+backward; ratios to 'ours' (> 1: ours is faster), median of paired "
              f"interleaved rounds +- half the interquartile range; GEMM = NumPy 512^3 in the same "
              f"rounds; {threads}; {machine()}; * = not stable within the round budget")
        print(format_header(), flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, case in enumerate(CASES, 1):
        if verbose:
            progress(i, len(CASES), case[0])
        rows.append(measure_case(case, rng, quick))
        if verbose:
            print(format_row(rows[-1]), flush=True)
    return rows
