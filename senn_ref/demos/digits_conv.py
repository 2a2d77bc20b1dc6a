"""digits-conv: channel and layer growth in a small conv net on the bundled 8x8 digits.

Task: ``datasets.digits()`` images (n, 1, 8, 8), softmax cross-entropy, full batch NGD-CG.
Start ``convnet(8, channels=(4, 4))``: conv 4 -> rational -> avg-pool -> conv 4 -> rational ->
avg-pool -> flatten -> dense 10.  Channel growth adds output channels to either conv layer; a
layer can be inserted before the dense head (insertions before a zero-padded conv are not
offered by the trainer, see ``grow.insert_layer.depth_supported``).  SENNConfig fields the demo
sets: ``depth=True`` (layer growth is part of the experiment), ``max_width=32`` (channels per
layer), ``weight_decay=1e-3`` and ``tau=0.007`` (the paper's MNIST values; with the default
tau = 1 no channel was added in the first 90 steps), ``steps=200``.  ``--quick`` (CI):
300 training images, 13 steps and ``QUICK`` (a round every 6 steps, at most 2 additions per
round, 20 candidates).  In the full run (seed 0) one round added 30 channels/units at step 30.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..architectures import activation_layer, convnet
from ..layers.dense import Dense
from ..network import Network
from ..datasets import digits
from ..trainer import SENNConfig
from .task import Task

#: --quick (CI smoke run) only: a round every 6 steps, at most 2 additions per round, 20 candidates
QUICK = {"expand_every": 6, "max_additions_per_round": 2, "n_candidates": 20}
NAME = "digits-conv"
SUMMARY = "conv net on the 8x8 digits from 4+4 channels: channel and layer growth"
OPTIONS = {}


def task(seed: int = 0, quick: bool = False) -> Task:
    """The conv digits task (module docstring)."""
    X, y, Xt, yt = digits(seed=seed)
    if quick:               # CI smoke run: 300 training images, a round every 6 steps
        X, y = X[:300], y[:300]
    notes = {"depth": "layer growth is part of this experiment", "max_width": "32 channels per layer",
             "weight_decay": "paper (MNIST): 1e-3", "tau": "paper (MNIST): 0.007", "steps": "200 full-batch steps"}

    def build(widths):
        """Two conv layers of widths[:2] channels, then a dense hidden layer per further entry."""
        net = convnet(8, channels=tuple(widths[:2]), seed=seed)
        if len(widths) == 2:
            return net
        rng = np.random.default_rng(seed + 1)
        layers, n = list(net.layers[:-1]), net.layers[-1].params["W"].shape[1]
        for layer in layers:        # taken over from the discarded ``net`` (Network._check_new)
            layer.name = None
        for w in widths[2:]:
            layers += [Dense(n, w, rng), activation_layer("rational", (w,), rng)]
            n = w
        return Network(layers + [Dense(n, 10, rng)])

    return Task(X, y, Xt, yt, losses.softmax_cross_entropy(), True,
                start=lambda: convnet(8, channels=(4, 4), seed=seed), build=build,
                config=SENNConfig(steps=200, depth=True, max_width=32, weight_decay=1e-3, tau=0.007,
                                  **(QUICK if quick else {})), quick_steps=13,
                config_notes=notes, info={"n_train": int(y.size), "n_test": int(yt.size)})


def targets(summary) -> dict:
    """Issue 8: test accuracy >= 0.98 with at least one channel and one layer addition."""
    return {"test_accuracy": summary["final_test_accuracy"],
            "channel_additions": summary["width_additions"], "layer_additions": summary["depth_additions"],
            "met": bool(summary["final_test_accuracy"] >= 0.98 and summary["width_additions"] >= 1
                        and summary["depth_additions"] >= 1)}
