"""width-vs-data: final width against training-set size (the paper's MNIST-subset experiment,
on the bundled 8x8 digits).

The digits MLP task (``digits.py``, same start and SENNConfig except ``tau=0.03``, the paper's
value for this experiment) is run with growth on nested
random subsets of the training images (sizes in ``SIZES``; ``--quick``: two sizes).  The main
run (summary keys, events.json, network.npz) is the full training set; the others are run in
``figures`` and reported under ``summary["width_vs_data"]`` and in ``width_vs_data.png``
(final hidden units against the size, log x).  Several seeds: ``senn-ref sweep digits --seeds
0-2 --set n_train=100,200,400,800,1347 --set tau=0.03``.
"""
from __future__ import annotations

import time

from . import digits
from .baselines import measure

NAME = "width-vs-data"
SUMMARY = "final width against training-set size (digits subsets, log x)"
OPTIONS = {}
SIZES = (100, 200, 400, 800)
QUICK_SIZES = (100,)


def task(seed: int = 0, quick: bool = False):
    """The full digits task, without the fixed-width sweep (the sizes are the experiment)."""
    t = digits.task(seed=seed, quick=quick)
    t.fixed_widths = ()
    t.config = t.config.replace(tau=0.03)
    t.config_notes = {**t.config_notes, "tau": "paper (width vs data): 0.03"}
    t.extra_baselines = {}
    t.info["seed"] = seed
    t.info["quick"] = quick
    return t


def figures(task, net, log, extra, config, out) -> list:
    """Run the smaller sizes and plot final hidden units against the training-set size."""
    from ..trainer import train_senn
    from .figures import pyplot, save
    seed = task.info["seed"]
    rows = []
    for n in (QUICK_SIZES if task.info["quick"] else SIZES):
        t = digits.task(seed=seed, quick=True, n_train=n)
        if not config.quiet:
            print(f"width-vs-data: SENN on {n} training images", flush=True)
        t0 = time.perf_counter()
        grown, _ = train_senn(t.start(), t.X, t.Y, t.loss, config.replace(quiet=True), seed=seed)
        m = measure(t, grown, time.perf_counter() - t0)
        rows.append({"n_train": n, "hidden_units": sum(m["hidden_widths"]), "test_accuracy": m["test_accuracy"]})
    full = measure(task, net, 0.0)
    rows.append({"n_train": int(task.Y.size), "hidden_units": sum(full["hidden_widths"]),
                 "test_accuracy": full["test_accuracy"]})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.semilogx([r["n_train"] for r in rows], [r["hidden_units"] for r in rows], "o-")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("final hidden units")
    ax.set_title(f"digits MLP: final width vs data size (seed {seed})", fontsize=9)
    extra["summary"] = {"width_vs_data": rows}
    return [save(fig, out, "width_vs_data.png")]
