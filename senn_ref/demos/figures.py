"""Figures every demo writes: loss curves with the expansion events, and the architecture over
training (``training.png``); plus the sweep figure helper.  matplotlib, Agg backend, PNG.

Every figure is written atomically (:func:`write_png`): rendered in memory, then put in place by
``checkpoint.atomic_write`` (temporary file in the same folder, fsync, ``os.replace``), so a failed
or interrupted save leaves the previous PNG whole and no temporary behind.  ``tests/test_demos.py``.
"""
from __future__ import annotations

import io
import os

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def training_figure(log, path: str, title: str) -> str:
    """Two panels from a SENNLog: (left) train / test loss against the optimiser step, with a
    vertical line at every accepted width (green), depth (red) and pruning (grey) event;
    (right) units per hidden layer against the step.  Writes ``path`` (PNG) and returns it."""
    plt = pyplot()
    hist = log.history
    steps = np.array([h["step"] for h in hist])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax0.semilogy(steps, [h["train_loss"] for h in hist], "C0-", label="train loss")
    if hist and "val_loss" in hist[0]:
        ax0.semilogy(steps, [h["val_loss"] for h in hist], "C1-", label="test loss")
    seen = set()
    for e in log.accepted:
        kind = e.get("kind")
        color = {"width": "C2", "depth": "C3", "prune": "C7"}.get(kind, "k")
        lab = f"{kind} added" if kind not in seen else None
        seen.add(kind)
        ax0.axvline(e["step"], color=color, lw=0.7, ls="--", alpha=0.7, label=lab)
    ax0.set_xlabel("optimiser step")
    ax0.set_ylabel("loss (trainer's convention)")
    ax0.set_title(f"{title}: loss and expansion events")
    ax0.legend(fontsize=8)
    depth = max((len(h["widths"]) for h in hist), default=0)
    for j in range(depth):          # drawn slightly apart so equal widths stay visible
        w = [h["widths"][j] + 0.08 * j if j < len(h["widths"]) else np.nan for h in hist]
        ax1.step(steps, w, where="post", lw=2, label=f"hidden layer {j + 1}")
    ax1.step(steps, [len(h["widths"]) for h in hist], "k--", where="post", lw=1, label="number of hidden layers")
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel("units (channels) per layer")
    ax1.set_title("architecture during training (layer j drawn +0.08 j)", fontsize=10)
    if depth:
        ax1.legend(fontsize=8)
    fig.tight_layout()
    return write_png(fig, path, dpi=100)


def write_png(fig, path: str, dpi: int = 100) -> str:
    """Render ``fig`` as PNG into memory, write the bytes to ``path`` atomically
    (``checkpoint.atomic_write``: an error while rendering or writing keeps any previous ``path``
    whole and removes the temporary), close ``fig`` in every case, return ``path``."""
    from ..checkpoint import atomic_write
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return atomic_write(path, lambda fh: fh.write(buf.getvalue()), suffix=".png.tmp")
    finally:
        pyplot().close(fig)


def save(fig, out: str, name: str) -> str:
    """Save ``fig`` as ``out/name`` (PNG, 100 dpi, atomically: :func:`write_png`), close it,
    return the path."""
    fig.tight_layout()
    return write_png(fig, os.path.join(out, name), dpi=100)
