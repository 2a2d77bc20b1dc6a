"""K-FAC against Adam on the bundled 8x8 digits, per step, on the same budget.

Both optimisers see the same mini-batches (same seed, batch 64) for the same number of
epochs, from the same initial network: the rational conv net ``convnet()`` and the MLP
``mlp([64, 32, 10])``.  Adam gets its best learning rate from a small grid (chosen by the
final training loss, which favours Adam); K-FAC runs with one fixed setting:
Monte-Carlo factors with the true (softmax) output metric, one sample, running averages
0.9, inverses every step, factored damping 1e-2 with the trace-norm pi, learning rate 0.3
and a trust region kl_clip = 1e-2 (``senn_ref.optim.KFAC``).

``run(quick=False)`` prints a table (training loss and test accuracy after every epoch)
and returns the rows.  Run as ``senn-ref bench optimizers`` or
``python demos/compare_optimizers.py``.
"""
from __future__ import annotations

import time

import numpy as np

from .. import losses
from ..architectures import convnet, mlp
from ..datasets import digits
from ..optim import KFAC, Adam
from ..train import fit

ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
KFAC_SETTINGS = dict(lr=0.3, damping=1e-2, pi="trace", kl_clip=1e-2, ema=0.9, inverse_every=1,
                     metric="true", mode="mc", n_samples=1)


def make_kfac(seed: int = 0) -> KFAC:
    """The fixed K-FAC configuration of this comparison."""
    return KFAC(rng=np.random.default_rng(seed), **KFAC_SETTINGS)


def compare(model: str, epochs: int, seed: int = 0, adam_lrs=ADAM_LRS, channels=(16, 32)) -> list[dict]:
    """Train ``model`` ("conv" or "mlp") with each Adam rate and with K-FAC; one row per run:
    {model, optimizer, lr, train_loss (per epoch), val_acc (per epoch), seconds}."""
    Xtr, ytr, Xte, yte = digits(seed=seed, flat=(model == "mlp"))
    loss = losses.softmax_cross_entropy()

    def build():
        return convnet(seed=seed, channels=channels) if model == "conv" else mlp([64, 32, 10], seed=seed)

    runs = [("adam", lr, Adam(lr=lr)) for lr in adam_lrs] + [("kfac", KFAC_SETTINGS["lr"], make_kfac(seed))]
    rows = []
    for name, lr, opt in runs:
        net = build()
        t0 = time.perf_counter()
        hist = fit(net, Xtr, ytr, loss, opt, epochs=epochs, batch_size=64, seed=seed, X_val=Xte, Y_val=yte)
        rows.append({"model": model, "optimizer": name, "lr": lr, "train_loss": hist.train_loss,
                     "val_acc": hist.val_acc, "seconds": time.perf_counter() - t0})
    return rows


def best_adam(rows: list[dict], model: str) -> dict:
    """The Adam row of ``model`` with the lowest final training loss."""
    adam = [r for r in rows if r["model"] == model and r["optimizer"] == "adam"]
    return min(adam, key=lambda r: r["train_loss"][-1])


def run(quick: bool = False, seed: int = 0) -> list[dict]:
    epochs = 2 if quick else 5
    rows = compare("mlp", epochs, seed) + compare("conv", epochs, seed)
    print(f"digits, batch 64, {epochs} epochs, same batches for every run; train loss / test accuracy per epoch")
    for r in rows:
        loss_s = " ".join(f"{v:.4f}" for v in r["train_loss"])
        acc_s = " ".join(f"{v:.3f}" for v in r["val_acc"])
        print(f"{r['model']:>4} {r['optimizer']:>4} lr={r['lr']:<6g} loss [{loss_s}]  acc [{acc_s}]  "
              f"{r['seconds']:.1f}s")
    for model in ("mlp", "conv"):
        a = best_adam(rows, model)
        k = next(r for r in rows if r["model"] == model and r["optimizer"] == "kfac")
        print(f"{model}: final train loss K-FAC / best Adam (lr={a['lr']:g}) = "
              f"{k['train_loss'][-1] / a['train_loss'][-1]:.3f}; time per run K-FAC / Adam = "
              f"{k['seconds'] / a['seconds']:.2f}")
    return rows
