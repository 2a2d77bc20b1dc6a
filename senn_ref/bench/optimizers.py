"""K-FAC against Adam on the bundled 8x8 digits, per step, on the same budget.

Both optimisers see the same mini-batches (same seed, batch 64) for the same number of
epochs, from the same initial network: the rational conv net ``convnet()`` and the MLP
``mlp([64, 32, 10])``.  Adam gets its best learning rate from a small grid (chosen by the
final training loss, which favours Adam); K-FAC runs with one fixed setting:
Monte-Carlo factors with the true (softmax) output metric, one sample, running averages
0.9, inverses every step, factored damping 1e-2 with the trace-norm pi, learning rate 0.3
and a trust region kl_clip = 1e-2 (``senn_ref.optim.KFAC``).

``run(quick=False)`` prints a line per training run as it finishes (training loss and
test accuracy after every epoch, with a progress line on stderr before it), then the
final-loss ratio and the time per step of K-FAC over Adam, measured side by side on one
batch by :func:`senn_ref.bench.timing.compare` (warm-up, interleaved rounds until the
ratio is stable, spread reported), and returns the rows.  Run as ``senn-ref bench optimizers`` or
``python demos/compare_optimizers.py``.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from ..architectures import convnet, mlp
from ..datasets import digits
from ..optim import KFAC, Adam
from ..train import fit
from .timing import compare as compare_timings, machine, progress, ratio_cell

ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
KFAC_SETTINGS = dict(lr=0.3, damping=1e-2, pi="trace", kl_clip=1e-2, ema=0.9, inverse_every=1,
                     metric="true", mode="mc", n_samples=1)


def make_kfac(seed: int = 0) -> KFAC:
    """The fixed K-FAC configuration of this comparison."""
    return KFAC(rng=np.random.default_rng(seed), **KFAC_SETTINGS)


def _build(model: str, seed: int, channels):
    return convnet(seed=seed, channels=channels) if model == "conv" else mlp([64, 32, 10], seed=seed)


def format_run(r: dict) -> str:
    """One training run: model, optimiser, rate, training loss and test accuracy per epoch."""
    loss_s = " ".join(f"{v:.4f}" for v in r["train_loss"])
    acc_s = " ".join(f"{v:.3f}" for v in r["val_acc"])
    return f"{r['model']:>4} {r['optimizer']:>4} lr={r['lr']:<6g} loss [{loss_s}]  acc [{acc_s}]"


def compare(model: str, epochs: int, seed: int = 0, adam_lrs=ADAM_LRS, channels=(16, 32),
            verbose: bool = False) -> list[dict]:
    """Train ``model`` ("conv" or "mlp") with each Adam rate and with K-FAC; one row per run:
    {model, optimizer, lr, train_loss (per epoch), val_acc (per epoch)}.  ``verbose``: a
    progress line (stderr) before and the row (stdout) after every run."""
    Xtr, ytr, Xte, yte = digits(seed=seed, flat=(model == "mlp"))
    loss = losses.softmax_cross_entropy()
    runs = [("adam", lr, Adam(lr=lr)) for lr in adam_lrs] + [("kfac", KFAC_SETTINGS["lr"], make_kfac(seed))]
    rows = []
    for i, (name, lr, opt) in enumerate(runs, 1):
        if verbose:
            progress(i, len(runs), f"{model} {name} lr={lr:g}, {epochs} epochs")
        net = _build(model, seed, channels)
        hist = fit(net, Xtr, ytr, loss, opt, epochs=epochs, batch_size=64, seed=seed, X_val=Xte, Y_val=yte)
        rows.append({"model": model, "optimizer": name, "lr": lr, "train_loss": hist.train_loss,
                     "val_acc": hist.val_acc})
        if verbose:
            print(format_run(rows[-1]), flush=True)
    return rows


def step_time(model: str, adam_lr: float, seed: int = 0, channels=(16, 32), quick: bool = False):
    """K-FAC and Adam steps on one batch of 64, side by side (:func:`timing.compare`, baseline
    Adam); each optimiser steps its own copy of the initial network."""
    Xtr, ytr, _, _ = digits(seed=seed, flat=(model == "mlp"))
    Xb, yb = Xtr[:64], ytr[:64]
    loss = losses.softmax_cross_entropy()
    nets = {"adam": _build(model, seed, channels), "kfac": _build(model, seed, channels)}
    opts = {"adam": Adam(lr=adam_lr), "kfac": make_kfac(seed)}

    def step(name):
        net, opt = nets[name], opts[name]
        if getattr(opt, "uses_curvature", False):
            return lambda: opt.step(net, Xb, yb, loss)

        def first_order():      # what train.fit does per batch for a first-order optimiser
            _, res = net.loss_and_grad(Xb, yb, loss)
            opt.step(net.named_params(), res.grads)
        return first_order

    settings = (dict(min_rounds=3, max_rounds=15, budget_seconds=5.0) if quick
                else dict(min_rounds=7, max_rounds=40, budget_seconds=20.0))
    return compare_timings({"adam": step("adam"), "kfac": step("kfac")}, baseline="adam",
                           label=f"{model} step time", **settings)


def best_adam(rows: list[dict], model: str) -> dict:
    """The Adam row of ``model`` with the lowest final training loss."""
    adam = [r for r in rows if r["model"] == model and r["optimizer"] == "adam"]
    return min(adam, key=lambda r: r["train_loss"][-1])


def run(quick: bool = False, seed: int = 0) -> list[dict]:
    """Print the runs as they finish and the summary; returns the rows."""
    epochs = 2 if quick else 5
    print(f"digits, batch 64, {epochs} epochs, same batches for every run; train loss / test accuracy "
          f"per epoch; {machine()}", flush=True)
    rows = []
    for model in ("mlp", "conv"):
        rows += compare(model, epochs, seed, verbose=True)
    for model in ("mlp", "conv"):
        a = best_adam(rows, model)
        k = next(r for r in rows if r["model"] == model and r["optimizer"] == "kfac")
        t = step_time(model, a["lr"], seed, quick=quick)
        print(f"{model}: final train loss K-FAC / best Adam (lr={a['lr']:g}) = "
              f"{k['train_loss'][-1] / a['train_loss'][-1]:.3f}; time per step K-FAC / Adam = "
              f"{ratio_cell(t['kfac'])}{'' if t.stable else ' (not stable)'} "
              f"({1e3 * t['kfac'].seconds:.1f} vs {1e3 * t['adam'].seconds:.1f} ms)", flush=True)
    return rows
