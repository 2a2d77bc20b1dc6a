"""The fused Rational kernel against its NumPy twin, side by side in one process.

For each shape, two ``Rational`` layers with identical parameters (``backend="numba"``
and ``backend="numpy"``) run ``forward``, ``backward`` and both on the same batch, timed
side by side by :func:`senn_ref.bench.timing.compare` (warm-up, which also compiles the
Numba kernels; interleaved rounds repeated until the ratio is stable).  Shapes: the digits
conv net's first activation ``(64, 16, 8, 8)``, an MNIST-like conv activation
``(128, 16, 28, 28)`` and a dense layer ``(256, 512)``.  Each row gives the Numba
milliseconds and the ratio NumPy / Numba (> 1: the kernel is faster) with its spread, and
is printed as soon as it is measured.
Run as ``senn-ref bench rational [--quick]``.
See ``derivations/05-rational.md`` "Kernel".
"""
from __future__ import annotations


import numpy as np

from ..layers.rational import Rational
from .timing import compare, machine, progress, ratio_cell

SHAPES = ((64, 16, 8, 8), (128, 16, 28, 28), (256, 512))
PARTS = ("forward", "backward", "both")


def measure(shape, quick: bool = False, seed: int = 0) -> dict:
    """Numba and NumPy twin side by side on one shape: ``row[part]`` is the
    :class:`~senn_ref.bench.timing.Comparison` of ``forward``, ``backward`` and ``both``."""
    rng = np.random.default_rng(seed)
    X = 2.0 * rng.standard_normal(shape)
    dY = rng.standard_normal(shape)
    layers = {be: Rational(shape[1], init="random", rng=np.random.default_rng(seed), spatial=tuple(shape[2:]),
                           backend=be) for be in ("numba", "numpy")}
    for layer in layers.values():
        layer.forward(X)
    calls = {"forward": lambda la: (lambda: la.forward(X)),
             "backward": lambda la: (lambda: la.backward(dY)),
             "both": lambda la: (lambda: (la.forward(X), la.backward(dY)))}
    row = {"shape": shape}
    for part in PARTS:
        row[part] = compare({be: calls[part](la) for be, la in layers.items()}, baseline="numba",
                            label=f"{shape} {part}", **_settings(quick))
    return row


def _settings(quick: bool) -> dict:
    return (dict(min_rounds=3, max_rounds=15, budget_seconds=3.0) if quick
            else dict(min_rounds=7, max_rounds=40, budget_seconds=15.0))


def run(quick: bool = False, seed: int = 0) -> list[dict]:
    """Print the table row by row and return one row per shape."""
    shapes = SHAPES[:1] + SHAPES[2:] if quick else SHAPES
    print(f"Rational layer; Numba ms and ratio numpy/numba (median of interleaved rounds "
          f"+- half the interquartile range; * = not stable within the round budget); {machine()}")
    print(f"{'shape':>20} " + " ".join(f"{p:>24}" for p in ("forward", "backward", "forward+backward")),
          flush=True)
    rows = []
    for i, shape in enumerate(shapes, 1):
        progress(i, len(shapes), f"rational {shape}")
        rows.append(measure(shape, quick, seed))
        cells = []
        for part in PARTS:
            c = rows[-1][part]
            cells.append(f"{c['numba'].seconds * 1e3:8.3f} {ratio_cell(c['numpy'])}{'' if c.stable else '*'}")
        print(f"{str(shape):>20} " + " ".join(f"{c:>24}" for c in cells), flush=True)
    return rows


if __name__ == "__main__":
    run()
