"""The main demo: a fixed-size rational MLP on the paper's 1-D regression task,
with the natural expansion score tracked during training.

The target is the random rational teacher of the paper's Figure 2
(``senn_ref.datasets.teacher_regression``: 50 training points, 1000 test points).
A student ``mlp([1, width, 1])`` is trained by natural gradient (exact GGN + CG,
damping 0.1, lr 0.1, as the authors' released MLP code trains), and every
``check_every`` steps we record

* the training loss L and the test loss,
* the natural expansion score eta = g^T (F + delta I)^+ g under the exact
  euclidean Fisher (``senn_ref.score.eta``), undamped and with the training
  damping delta = 0.1, and
* its ceiling lambda = mean ||e_n||^2 = 2 L (``senn_ref.score.ceiling``).

eta/2 is the decrease of the loss that the quadratic model promises for the
*current* architecture; 0 <= eta <= lambda always.  The undamped score sits
close to the ceiling: with rational units the Fisher has near-null directions
(each unit's (v, c, l) scale direction, see derivations/05-rational.md) along
which the quadratic model extrapolates without limit.  The damped score is the
one that measures reachable progress, and it falls as training converges - the
signal SENN compares against the gain of new units.  Writes ``regression.png``
and prints a table.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from . import losses, score
from ._validate import check_positive_int
from .architectures import mlp
from .datasets import teacher_regression
from .optim.ngd_cg import NaturalGradientCG


def run(out_dir: str = "senn-ref-demo", quick: bool = False, width: int = 4, seed: int = 0,
        verbose: bool = True) -> dict:
    """Train, record rows (step, train loss, test loss, lambda, eta undamped, eta damped), plot.

    Returns {"records": (n_checks, 6) array, "figure": path, "net": trained network}.
    ``width`` >= 1 and ``seed`` >= 0 are integers; ``out_dir`` is created and checked to be
    writable before training (``check_out_dir``).
    """
    width = check_positive_int(width, "width")
    seed = check_positive_int(seed, "seed", minimum=0)
    check_out_dir(out_dir)
    steps, check_every = (120, 20) if quick else (600, 50)
    X, Y, Xt, Yt, teacher = teacher_regression(seed=seed)
    net = mlp([1, width, 1], activation="rational", seed=seed)
    loss = losses.mse()
    opt = NaturalGradientCG(lr=0.1, damping=0.1)
    rows = []
    if verbose:
        print(f"student {net}; teacher: rational MLP [1,16,16,16,16,1]; 50 train / 1000 test points")
        print(f"{'step':>6} {'train L':>11} {'test L':>11} {'lambda':>11} {'eta(d=0)':>11} {'eta(d=0.1)':>11}")
    for step in range(steps + 1):
        if step % check_every == 0:
            train_l = loss.value(net.forward(X), Y)
            test_l = loss.value(net.forward(Xt), Yt)
            lam = score.ceiling(net, X, Y, loss)
            eta0 = score.eta(net, X, Y, loss, curvature="exact", damping=0.0)
            eta_d = score.eta(net, X, Y, loss, curvature="exact", damping=opt.damping)
            rows.append((step, train_l, test_l, lam, eta0, eta_d))
            if verbose:
                print(f"{step:6d} {train_l:11.4e} {test_l:11.4e} {lam:11.4e} {eta0:11.4e} {eta_d:11.4e}")
        if step < steps:
            opt.step(net, X, Y, loss)
    records = np.array(rows)
    path = _plot(net, teacher, X, Y, records, out_dir)
    if verbose:
        print(f"figure written to {path}")
    return {"records": records, "figure": path, "net": net}


def check_out_dir(out_dir) -> str:
    """Create ``out_dir`` if needed and check that a file can be written in it, so that a bad
    folder fails before training rather than after; raises OSError naming ``out_dir``."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir: expected a path, got {type(out_dir).__name__}")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise OSError(f"out_dir: cannot write to {os.fspath(out_dir)!r} "
                      f"({exc.strerror or type(exc).__name__})") from exc
    return os.fspath(out_dir)


def _plot(net, teacher, X, Y, records, out_dir):
    from .demos.figures import pyplot, write_png
    plt = pyplot()

    os.makedirs(out_dir, exist_ok=True)
    grid = np.linspace(-3, 3, 400)[:, None]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax0.plot(grid[:, 0], teacher.forward(grid)[:, 0], "k-", lw=1, label="teacher")
    ax0.plot(grid[:, 0], net.forward(grid)[:, 0], "C3-", lw=1.5, label=f"student ({net.num_params()} params)")
    ax0.plot(X[:, 0], Y[:, 0], "o", ms=3, color="C0", label="training data")
    ax0.set_xlabel("x")
    ax0.legend(fontsize=8)
    ax0.set_title("fit after training")
    step, train_l, test_l, lam, eta0, eta_d = records.T
    ax1.semilogy(step, train_l, "C0-o", ms=3, label="train loss L")
    ax1.semilogy(step, test_l, "C1-o", ms=3, label="test loss")
    ax1.semilogy(step, lam, "k--", lw=1, label="ceiling lambda = 2L")
    ax1.semilogy(step, eta0, "C2:", label="eta, undamped")
    ax1.semilogy(step, eta_d, "C3-", label="eta, damping 0.1")
    ax1.set_xlabel("natural-gradient step")
    ax1.legend(fontsize=8)
    ax1.set_title("natural expansion score during training")
    fig.tight_layout()
    return write_png(fig, os.path.join(out_dir, "regression.png"), dpi=110)     # atomic, closes fig
