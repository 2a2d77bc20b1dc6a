"""Mini-batch training loop and evaluation.

Two kinds of optimiser plug in:

* first-order (``SGD``, ``Adam``): ``opt.step(params, grads)`` with the
  network's named parameter arrays and the mean-loss gradient;
* curvature-based (``KFAC``, ``NaturalGradientCG``; they set the class
  attribute ``uses_curvature = True``): ``opt.step(net, X, Y, loss)``, because
  they need the network and the batch to build their curvature.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import as_float_array, check_batch, check_network, check_positive_int, check_target_rows
from .losses.base import check_loss  # noqa: F401  (re-exported: senn_ref.train.check_loss)


@dataclass
class History:
    """Per-epoch records: mean training loss over the epoch's batches, and the
    full-data train/validation loss (and accuracy for classification) at its end."""
    epoch: list = field(default_factory=list)
    batch_loss: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)


def _check_targets(Y, n: int, name: str, x_name: str) -> np.ndarray:
    Y = check_target_rows(Y, n, name, x_name)
    if Y.dtype.kind == "f":
        Y = as_float_array(Y, name)
    return Y


def evaluate(net, X, Y, loss) -> tuple[float, float | None]:
    """Mean loss over (X, Y) and, for classification losses, accuracy (else None)."""
    check_loss(loss)
    F = net.forward(X)
    F = F.reshape(F.shape[0], -1)
    value = loss.value(F, Y)
    acc = loss.accuracy(F, Y) if hasattr(loss, "accuracy") else None
    return float(value), (None if acc is None else float(acc))


def check_training_data(net, X, Y, loss, X_val=None, Y_val=None):
    """Validate a training set and an optional validation set for ``net`` and ``loss``:
    X (N,) + net.in_shape, Y every target checked by ``loss`` against the output width
    K = prod(out_shape); X_val/Y_val both or neither.  Returns ``(X, Y, X_val, Y_val)`` as
    checked arrays.  Shared by :func:`fit` and :func:`senn_ref.train_senn`."""
    X = check_batch(X, check_network(net).in_shape, "X")
    N = X.shape[0]
    Y = _check_targets(Y, N, "Y", "X")
    K = int(np.prod(net.out_shape))
    loss.check(np.zeros((N, K)), Y)                  # all targets, against the output width
    if (X_val is None) != (Y_val is None):
        raise ValueError("X_val, Y_val: give both or neither")
    if X_val is not None:
        X_val = check_batch(X_val, net.in_shape, "X_val")
        Y_val = _check_targets(Y_val, X_val.shape[0], "Y_val", "X_val")
        loss.check(np.zeros((X_val.shape[0], K)), Y_val)
    return X, Y, X_val, Y_val


def fit(net, X, Y, loss, optimizer, epochs: int = 1, batch_size: int | None = None, seed: int = 0,
        X_val=None, Y_val=None, callback=None) -> History:
    """Train ``net`` in place; returns a :class:`History`.

    X : (N,) + net.in_shape float array; Y : targets accepted by ``loss``.
    batch_size None means full batch (a batch_size above N is clamped to N); batches are
    reshuffled every epoch with ``seed`` (an integer >= 0).  All arguments, every target
    and the validation set are checked before the first update (ValueError/TypeError).
    ``callback(epoch, net, history)`` runs after each epoch; returning True stops training.
    """
    # every argument is checked before the first update, so a bad label anywhere in Y,
    # a malformed validation set or a non-callable callback cannot strike mid-training
    loss = check_loss(loss)
    check_network(net)
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer: expected a senn_ref.optim optimiser (SGD, Adam, KFAC, NaturalGradientCG), "
                        f"got {type(optimizer).__name__}")
    X, Y, X_val, Y_val = check_training_data(net, X, Y, loss, X_val, Y_val)
    N = X.shape[0]
    epochs = check_positive_int(epochs, "epochs")
    bs = N if batch_size is None else min(check_positive_int(batch_size, "batch_size"), N)
    seed = check_positive_int(seed, "seed", minimum=0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    rng = np.random.default_rng(seed)
    uses_curvature = getattr(optimizer, "uses_curvature", False)
    hist = History()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(N) if bs < N else np.arange(N)
        losses = []
        for start in range(0, N, bs):
            idx = order[start:start + bs]
            Xb, Yb = X[idx], Y[idx]
            if uses_curvature:
                value = optimizer.step(net, Xb, Yb, loss)
            else:
                value, res = net.loss_and_grad(Xb, Yb, loss)
                optimizer.step(net.named_params(), res.grads)
            losses.append(float(value))
        hist.epoch.append(epoch)
        hist.batch_loss.append(float(np.mean(losses)))
        tl, ta = evaluate(net, X, Y, loss)
        hist.train_loss.append(tl)
        hist.train_acc.append(ta)
        if X_val is not None:
            vl, va = evaluate(net, X_val, Y_val, loss)
            hist.val_loss.append(vl)
            hist.val_acc.append(va)
        if callback is not None and callback(epoch, net, hist):
            break
    return hist
