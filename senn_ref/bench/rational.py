"""The fused Rational kernel against its NumPy twin, side by side in one process.

For each shape, two ``Rational`` layers with identical parameters (``backend="numba"``
and ``backend="numpy"``) run ``forward`` and ``backward`` on the same batch; each time
is the best of ``repeats`` runs after a warm-up call (which also compiles the Numba
kernels).  Shapes: the digits conv net's first activation ``(64, 16, 8, 8)``, an
MNIST-like conv activation ``(128, 16, 28, 28)`` and a dense layer ``(256, 512)``.
The table gives milliseconds and the ratio NumPy / Numba (> 1: the kernel is faster).
Run as ``python -c "from senn_ref.bench import rational; rational.run()"``.
See ``derivations/05-rational.md`` "Kernel".
"""
from __future__ import annotations


import numpy as np

from ..layers.rational import Rational
from .timing import best_time

SHAPES = ((64, 16, 8, 8), (128, 16, 28, 28), (256, 512))


def measure(shape, repeats: int, seed: int = 0) -> dict:
    """Forward, backward and forward+backward times (s) of both backends on one shape."""
    rng = np.random.default_rng(seed)
    X = 2.0 * rng.standard_normal(shape)
    dY = rng.standard_normal(shape)
    row = {"shape": shape}
    for backend in ("numba", "numpy"):
        layer = Rational(shape[1], init="random", rng=np.random.default_rng(seed), spatial=tuple(shape[2:]),
                         backend=backend)
        layer.forward(X)
        row[backend] = {"forward": best_time(lambda: layer.forward(X), repeats),
                        "backward": best_time(lambda: layer.backward(dY), repeats)}
        row[backend]["both"] = best_time(lambda: (layer.forward(X), layer.backward(dY)), repeats)
    return row


def run(quick: bool = False, seed: int = 0) -> list[dict]:
    """Print the table and return one row per shape (times in seconds)."""
    repeats = 3 if quick else 10
    shapes = SHAPES[:1] + SHAPES[2:] if quick else SHAPES
    rows = [measure(s, repeats, seed) for s in shapes]
    print(f"Rational layer, best of {repeats} after warm-up; ms (numba | numpy) and ratio numpy/numba")
    print(f"{'shape':>20} {'forward':>26} {'backward':>26} {'forward+backward':>26}")
    for r in rows:
        cells = []
        for part in ("forward", "backward", "both"):
            a, b = r["numba"][part], r["numpy"][part]
            cells.append(f"{a * 1e3:8.3f} | {b * 1e3:8.3f} {b / a:5.1f}x")
        print(f"{str(r['shape']):>20} " + " ".join(f"{c:>26}" for c in cells))
    return rows


if __name__ == "__main__":
    run()
