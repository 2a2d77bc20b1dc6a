"""Benchmark: conv and dense forward+backward, Numba path vs NumPy twin vs PyTorch CPU.

Usage:  ``senn-ref bench kernels [--quick]`` or ``python demos/bench_kernels.py [--quick]``.

For each case the same float64 inputs go through
* ``numba``  - ``Conv2D(backend="numba")`` / ``Dense``: forward, then backward (dX, dW, db);
* ``numpy``  - the same layer with the plain NumPy twin kernels;
* ``torch``  - ``torch.nn.functional.conv2d`` / ``linear`` in float64 + autograd
  ``backward`` (column skipped when torch is not importable).
Times are the best of several repeats after a warm-up (which also triggers
Numba compilation).  FLOPs: a conv forward is ``2 N O Ho Wo C kh kw``, forward
+ backward (dX and dW) three times that; dense ``3 * 2 N in out``.  A 2x2 max
pool row (no FLOP count) compares the pooling kernels as well.  The same
process also measures NumPy's float64 GEMM rate on 1024x1024 @ 1024x1024 (best
of a measurement before and one after the layer timings), and each row reports the layer's achieved GFLOP/s as a fraction of it.

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
from .timing import best_time

try:  # optional comparison
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

#: (label, kind, N, in_ch/in_features, out_ch/out_features, H=W, kernel, padding)
CASES = [
    ("digits conv 1->8 8x8", "conv", 256, 1, 8, 8, 3, 1),
    ("digits conv 8->16 8x8", "conv", 256, 8, 16, 8, 3, 1),
    ("digits dense 1024->10", "dense", 256, 1024, 10, None, None, None),
    ("mnist conv 1->16 28x28", "conv", 128, 1, 16, 28, 3, 1),
    ("mnist conv 16->32 28x28", "conv", 128, 16, 32, 28, 3, 1),
    ("mnist dense 784->128", "dense", 128, 784, 128, None, None, None),
    ("mnist maxpool 2x2 32x28x28", "pool", 128, 32, 32, 28, 2, 0),
]


def gemm_gflops(n: int = 1024, repeats: int = 3) -> float:
    """NumPy float64 ``(n x n) @ (n x n)`` rate in GFLOP/s (``2 n^3`` flops)."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    return 2.0 * n ** 3 / best_time(lambda: A @ B, repeats) / 1e9


def _layer_step(layer, X, dY):
    def step():
        layer.forward(X)
        layer.backward(dY)
    return step


def _torch_step(kind, X, dY, params, padding):
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
    return step


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
        layer = Dense(cin, cout, rng=np.random.default_rng(1), bias_std=0.1)
        layers = {"numba": layer, "numpy": layer}   # dense is pure BLAS: no kernel to swap
        flops = 3 * 2.0 * N * cin * cout
        dY = rng.standard_normal((N, cout))
    return layers, X, dY, flops


def measure(quick: bool = False) -> list[dict]:
    """Time every case; returns one dict per case (seconds, GFLOP/s, ratios).

    The NumPy-based paths of all cases are timed first and PyTorch last: torch's
    OpenMP workers keep spinning for a while after each call, which would
    otherwise slow down whatever runs next on a 2-core machine.  Within a case,
    the numba and numpy paths alternate repeat by repeat so that background load
    hits both alike.
    """
    repeats = 3 if quick else 10
    rng = np.random.default_rng(0)
    peak = gemm_gflops(repeats=5)
    rows, setups = [], []
    for label, kind, N, cin, cout, hw, k, pad in CASES:
        layers, X, dY, flops = _setup(kind, N, cin, cout, hw, k, pad, rng)
        setups.append((kind, layers, X, dY, pad))
        steps = {be: _layer_step(layers[be], X, dY) for be in ("numba", "numpy")}
        best = {be: np.inf for be in steps}
        for _ in range(repeats):
            for be, step in steps.items():
                best[be] = min(best[be], best_time(step, 1))
        row = {"case": label, "flops": flops, "numba_s": best["numba"], "numpy_s": best["numpy"],
               "gemm_gflops": peak, "numpy_over_numba": best["numpy"] / best["numba"]}
        if flops:
            row["numba_gflops"] = flops / row["numba_s"] / 1e9
            row["fraction_of_gemm"] = row["numba_gflops"] / peak
        rows.append(row)
    # the machine's GEMM rate varies with load and clock: take the better of two measurements
    peak = max(peak, gemm_gflops(repeats=5))
    for row in rows:
        row["gemm_gflops"] = peak
        if row["flops"]:
            row["fraction_of_gemm"] = row["numba_gflops"] / peak
    if torch is not None:
        for row, (kind, layers, X, dY, pad) in zip(rows, setups):
            row["torch_s"] = best_time(_torch_step(kind, X, dY, layers["numba"].params, pad), repeats)
            row["torch_over_numba"] = row["torch_s"] / row["numba_s"]
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (f"{'case':26s} {'numba ms':>9s} {'numpy ms':>9s} {'torch ms':>9s} {'np/nb':>6s} "
            f"{'to/nb':>6s} {'GFLOP/s':>8s} {'of GEMM':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        t = r.get("torch_s")
        lines.append(f"{r['case']:26s} {1e3 * r['numba_s']:9.2f} {1e3 * r['numpy_s']:9.2f} "
                     f"{(1e3 * t if t else float('nan')):9.2f} {r['numpy_over_numba']:6.2f} "
                     f"{r.get('torch_over_numba', float('nan')):6.2f} {r.get('numba_gflops', float('nan')):8.2f} "
                     f"{100 * r.get('fraction_of_gemm', float('nan')):7.1f}%")
    return "\n".join(lines)


def run(quick: bool = False, verbose: bool = True) -> list[dict]:
    """:func:`measure` every case and (``verbose``) print the table; returns the rows."""
    rows = measure(quick=quick)
    if verbose:
        threads = (f"torch {torch.__version__}, {torch.get_num_threads()} threads" if torch
                   else "torch not installed")
        print(f"float64; NumPy GEMM 1024^3: {rows[0]['gemm_gflops']:.1f} GFLOP/s; {threads}; "
              f"{os.cpu_count()} CPUs")
        print(format_rows(rows))
    return rows
