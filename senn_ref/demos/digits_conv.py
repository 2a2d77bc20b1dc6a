"""digits-conv: channel and layer growth in a small conv net on the bundled 8x8 digits.

Task: ``datasets.digits()`` images (n, 1, 8, 8; 1347 training / 450 test), softmax
cross-entropy.  Start ``convnet(8, channels=(4, 4))``: conv 4 -> rational -> avg-pool -> conv 4
-> rational -> avg-pool -> flatten -> dense 10.  Channel growth adds output channels to either
conv layer; a layer can be inserted before the dense head (insertions before a zero-padded conv
are not offered by the trainer, see ``grow.insert_layer.depth_supported``), and the inserted
dense layer then grows too.  Scores and decisions are the trainer's (natural expansion score on
the exact GGN / K-FAC, whatever the optimiser); only the training steps use the optimiser.

SENNConfig fields the demo sets (:data:`NOTES` says why; measured on the shared 2-core machine
under load 9-11):

* ``optimizer="adam"``, ``lr=0.01``, ``batch_size=128``, ``steps=1000`` (95 epochs): the
  paper's conv experiment trains with Adam (senn-math section 10).  Full-batch NGD-CG, the
  trainer's default, reached 0.72 test accuracy after 40 steps in 101 s of optimiser time
  (2.5 s per step: CG at its 100-iteration cap once the net had grown) and 0.973 after 120
  steps in 757 s; Adam's 1000 mini-batch steps took 16-32 s of training time.
* ``lr_schedule="cosine"``, ``weight_decay=0.1`` (decoupled, AdamW: each step shrinks the
  weights by lr_t * 0.1, 1e-3 at the start, ~0 at the end).  Chosen on a validation split of
  the training images only: the last 269 of seed 0's 1347 (shuffled) training rows held out,
  SENN with this config trained on the other 1078.  Constant lr, decay 1e-3, 1e-2, 0.1, 0.5:
  validation accuracy 0.985, 0.993, 0.985, 0.985; but the full run with constant lr and 1e-2
  ended on an Adam loss spike (test 0.960), so a cosine schedule (lr to ~0 at the last step)
  was tried: decay 1e-2 0.993 (validation loss 0.055), 0.1 0.996 (0.014, one image ahead) -
  picked.  ``derivations/21-trainer.md`` sections 10-11.  An earlier 0.1 with constant lr had
  been picked on the test split (1e-3 -> 0.976, 0.1 -> 0.987, 0.5 -> 0.973) and is withdrawn.
* ``expand_every=100``, ``max_additions_per_round=4``, ``n_candidates=30``,
  ``score_batch=256``: cost.  One round of the previous settings (every 30 steps, up to 32
  additions, 100 candidates, 512 scoring examples) took 140 s for 30 additions; with these, the
  9 rounds' proposal search took 63-111 s and every round added its 4 (the cap, not tau, sets
  the growth rate).
* ``depth=True`` (layer growth is part of the experiment), ``max_width=32`` (channels per
  layer), ``tau=0.007`` (the paper's MNIST value; with the default tau = 1 and NGD-CG no channel
  was added in the first 90 steps).

Full run with baselines (README, Demos), seed 0: test accuracy 0.984 (target >= 0.98 met), 24
channels added and one layer inserted, [18, 14, 27], 71 s at load ~2 (seed 1: 0.987, [20, 16, 23]).  With constant lr
and decay 0.01: 0.960 (the batch loss rose from 2e-5 to 0.35 in the last 40 steps).  With the
withdrawn constant-lr 0.1 (after the grown-entry rule for Adam, ``derivations/08-optimisers.md``
section 4.1): 0.989 (seed 0) / 0.991 (seed 1).

``--quick`` (CI): 300 training images, 60 steps and ``QUICK`` (a round every 20 steps, at most 2
additions per round, 10 candidates, 128 scoring examples).
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

#: starting channels of the two conv layers
START = (4, 4)
#: the full run's settings (module docstring)
CONFIG = dict(steps=1000, optimizer="adam", lr=0.01, lr_schedule="cosine", batch_size=128, weight_decay=0.1,
              expand_every=100, max_additions_per_round=4, n_candidates=30, score_batch=256, depth=True, max_width=32,
              tau=0.007)
#: --quick (CI smoke run) only: a round every 20 steps, at most 2 additions, 10 candidates
QUICK = {"expand_every": 20, "max_additions_per_round": 2, "n_candidates": 10, "score_batch": 128}
NOTES = {"optimizer": "the paper's conv experiment uses Adam; NGD-CG took 2.5 s per step here "
                      "(CG at its 100-iteration cap once grown)",
         "lr": "Adam, 0.01",
         "lr_schedule": "cosine to ~0 at step 1000 (constant 0.01 ended on a loss spike); picked with "
                        "weight_decay on the validation split (derivations/21 section 10)",
         "batch_size": "128 (mini-batches, as the paper's MNIST run)",
         "steps": "1000 mini-batch steps (95 epochs)",
         "weight_decay": "decoupled (AdamW) 0.1 = shrink 1e-3 per step at the initial lr; picked by "
                         "validation accuracy on the last 20 % of seed 0's training rows (constant "
                         "lr: 1e-3 0.985, 1e-2 0.993, 0.1 0.985, 0.5 0.985; cosine: 1e-2 0.993, "
                         "0.1 0.996), not on test",
         "expand_every": "100 steps (cost: 9 rounds)", "max_additions_per_round": "4 (cost)",
         "n_candidates": "30 (cost)", "score_batch": "256 (cost)",
         "depth": "layer growth is part of this experiment", "max_width": "32 channels per layer",
         "tau": "paper (MNIST): 0.007"}
NAME = "digits-conv"
SUMMARY = "conv net on the 8x8 digits from 4+4 channels: channel and layer growth (Adam)"
OPTIONS = {}


def task(seed: int = 0, quick: bool = False) -> Task:
    """The conv digits task (module docstring)."""
    X, y, Xt, yt = digits(seed=seed)
    if quick:               # CI smoke run: 300 training images
        X, y = X[:300], y[:300]

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
                start=lambda: convnet(8, channels=START, seed=seed), build=build,
                config=SENNConfig(**{**CONFIG, **(QUICK if quick else {})}), quick_steps=60,
                config_notes=NOTES, info={"n_train": int(y.size), "n_test": int(yt.size)})


def targets(summary) -> dict:
    """Issue 8: test accuracy >= 0.98 with at least one channel and one layer addition.

    Channels added = final conv widths minus :data:`START` (the demo never prunes)."""
    channels = int(sum(w - s for w, s in zip(summary["hidden_widths"][:2], START)))
    checks = {"test_accuracy_at_least_0.98": bool(summary["final_test_accuracy"] >= 0.98),
              "channel_added": channels >= 1, "layer_added": summary["depth_additions"] >= 1}
    return {"test_accuracy": summary["final_test_accuracy"], "channel_additions": channels,
            "layer_additions": summary["depth_additions"], "checks": checks, "met": all(checks.values())}
