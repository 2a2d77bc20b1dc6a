"""moons: half-moons from a network with no hidden layer; layers are inserted when depth helps.

Task: ``datasets.half_moons`` noise 0.3, 200 training (seed = demo seed) and 500 test points
(seed + 1), cross-entropy, full batch (senn-math section 10).  Start ``mlp([2, 2])`` (a linear
classifier).  SENNConfig fields the demo sets, from the paper's setting for this task:
``depth=True`` (layers may be inserted), ``max_width=16`` and ``max_layers=4`` (three hidden
slots of width up to 16, plus the output layer), ``depth_cost=2`` (the paper's "/2"),
``steps=400`` (400 full-batch epochs).  Figure ``moons.png``: decision boundaries at the start,
after each depth insertion (one optimiser step after it) and at the end.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..architectures import mlp
from ..datasets import half_moons
from ..trainer import SENNConfig
from .task import Task

NAME = "moons"
SUMMARY = "half-moons from no hidden layer: width and depth growth, decision boundaries"
OPTIONS = {}


def task(seed: int = 0, quick: bool = False) -> Task:
    """The half-moons task (module docstring)."""
    X, y = half_moons(200, 0.3, seed)
    Xt, yt = half_moons(500, 0.3, seed + 1)
    notes = {"depth": "the paper inserts layers on this task", "max_width": "paper: slots of width up to 16",
             "max_layers": "paper: 3 hidden slots + the output layer", "depth_cost": "paper: depth cost /2",
             "steps": "paper: 400 full-batch epochs"}
    return Task(X, y, Xt, yt, losses.softmax_cross_entropy(), True,
                start=lambda: mlp([2, 2], activation="rational", seed=seed),
                build=lambda widths: mlp([2, *widths, 2], activation="rational", seed=seed),
                config=SENNConfig(steps=400, depth=True, max_width=16, max_layers=4, depth_cost=2.0),
                quick_steps=120, config_notes=notes, info={"n_train": 200, "n_test": 500, "noise": 0.3})


def make_callback(task, config):
    """Copy the network at the start and one step after every change of the number of layers
    (saved with run checkpoints: derivations/22-run-checkpoints.md section 4)."""
    callback = LayerSnapshots()
    return callback, callback.extra


class LayerSnapshots:
    """The callback of :func:`make_callback`; ``extra["snapshots"]`` lists (label, net)."""

    def __init__(self):
        self.extra, self.layers = {"snapshots": []}, None

    def __call__(self, step, net, log):
        from ..grow.expansion_round import num_linear_layers
        n = num_linear_layers(net)
        if self.layers is None:
            self.extra["snapshots"].append(("start (after step 0)", net.copy()))
        elif n != self.layers:
            self.extra["snapshots"].append((f"after depth insertion (step {step})", net.copy()))
        self.layers = n
        return False

    def state_dict(self) -> dict:
        snaps = self.extra["snapshots"]
        return {"info": {"layers": self.layers, "labels": [label for label, _ in snaps]},
                "networks": {str(i): net for i, (_, net) in enumerate(snaps)}}

    def load_state_dict(self, d) -> None:
        self.layers = d["info"]["layers"]
        self.extra["snapshots"] = [(label, d["networks"][str(i)]) for i, label in enumerate(d["info"]["labels"])]


def targets(summary) -> dict:
    """Issue 8: at least one layer inserted, test accuracy >= 0.85."""
    inserted = summary["num_layers"] - 1
    return {"layers_inserted": inserted, "test_accuracy": summary["final_test_accuracy"],
            "met": bool(inserted >= 1 and summary["final_test_accuracy"] >= 0.85)}


def figures(task, net, log, extra, config, out) -> list:
    """``moons.png``: decision boundaries of the snapshots and the final network."""
    from .figures import pyplot, save
    plt = pyplot()
    snaps = extra["snapshots"] + [("end", net)]
    g = np.linspace(-2.0, 3.0, 150)
    G = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.6 * len(snaps), 3.6), squeeze=False)
    from ..grow.expansion_round import architecture
    for ax, (title, snap) in zip(axes[0], snaps):
        F = snap.forward(G)
        ax.contourf(g, g, (F[:, 1] - F[:, 0]).reshape(g.size, g.size), levels=[-1e9, 0, 1e9],
                    colors=["#9ecae1", "#fdae6b"], alpha=0.6)
        for k, c in ((0, "C0"), (1, "C1")):
            m = task.Y == k
            ax.scatter(task.X[m, 0], task.X[m, 1], s=6, c=c, label=f"class {k}")
        ax.set_title(f"{title}\nhidden widths {architecture(snap)}", fontsize=8)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("half-moons: decision boundary (shaded by predicted class)", fontsize=9)
    return [save(fig, out, "moons.png")]
