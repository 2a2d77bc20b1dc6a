"""The paper's first experiment (senn-math section 10): fixed widths against SENN on the teacher task.

Task: ``datasets.teacher_regression(seed)`` (a random rational MLP [1, 16, 16, 16, 16, 1],
x ~ N(0, 1), 50 training and 1000 test points), loss MSE (1/2 convention), full batch.

* :func:`fixed_width_run` trains ``mlp([1, w, 1])`` (rational units, init seed = data seed) for
  ``steps`` natural-gradient steps (``NaturalGradientCG``, lr 0.1, damping 0.1, as the released
  code trains) and returns its test MSE and the time per step;
* :func:`senn_run` starts from ``mlp([1, 1, 1])`` (the same initial unit as the w = 1 baseline)
  and runs :func:`senn_ref.train_senn` with a given config for the same steps and optimiser;
* :func:`teacher_table` runs both over seeds and widths and returns / prints the table that
  ``derivations/21-trainer.md`` reports.  ``senn-ref bench senn`` prints it with ``--table``;
  ``tests/test_teacher.py`` runs a short version.

Test MSE here is ``mean ||f(x) - y||^2`` over the 1000 test points (no 1/2), the usual MSE;
``inside_mse`` is the same over the test points inside the training inputs' range (about 97 %
of them), since with 50 training points the rest - extrapolation - can dominate the test MSE.
"""
from __future__ import annotations

import time

import numpy as np

from .. import losses
from .._validate import check_positive_int
from ..architectures import mlp
from ..datasets import teacher_regression
from ..optim.ngd_cg import NaturalGradientCG

#: the fixed widths of the baseline table (the issue's 1, 2, 4, ..., 32)
WIDTHS = (1, 2, 4, 8, 16, 32)
#: the paper's training setting for this task (senn-math section 10)
LR, DAMPING, STEPS = 0.1, 0.1, 2000


def mse_of(net, X, Y) -> float:
    """``mean_n ||f(x_n) - y_n||^2`` (no 1/2): X (n,) + in_shape, Y (n, K) (here (n, 1)).
    ``derivations/21-trainer.md`` section 4.  Also the demos' test MSE (``demos/baselines.py``)."""
    F = net.forward(X).reshape(X.shape[0], -1)
    return float(np.mean(np.sum((F - Y.reshape(F.shape)) ** 2, axis=1)))


def inside_mse(net, X, Xt, Yt) -> float:
    """Test MSE over the test points inside the training inputs' range [min X, max X] (no
    extrapolation): X (n, 1) training inputs, Xt (m, 1), Yt (m, 1).  ``derivations/21-trainer.md``
    section 4."""
    inside = (Xt[:, 0] >= X[:, 0].min()) & (Xt[:, 0] <= X[:, 0].max())
    return mse_of(net, Xt[inside], Yt[inside])


def fixed_width_run(width: int, seed: int, steps: int = STEPS) -> dict:
    """Train ``mlp([1, width, 1], seed=seed)`` on teacher ``seed`` by NGD-CG (lr 0.1, damping 0.1,
    full batch) for ``steps`` steps.  Returns {width, seed, steps, test_mse, inside_mse, train_mse, ms_per_step}.
    ``derivations/21-trainer.md`` section 4; ``tests/test_teacher.py``."""
    width = check_positive_int(width, "width")
    seed = check_positive_int(seed, "seed", minimum=0)
    steps = check_positive_int(steps, "steps")
    X, Y, Xt, Yt, _ = teacher_regression(seed=seed)
    net = mlp([1, width, 1], activation="rational", seed=seed)
    opt = NaturalGradientCG(lr=LR, damping=DAMPING)
    loss = losses.mse()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(net, X, Y, loss)
    dt = time.perf_counter() - t0
    return {"width": width, "seed": seed, "steps": steps, "test_mse": mse_of(net, Xt, Yt),
            "inside_mse": inside_mse(net, X, Xt, Yt), "train_mse": mse_of(net, X, Y),
            "ms_per_step": 1e3 * dt / steps}


def senn_run(seed: int, steps: int = STEPS, config=None, **changes) -> dict:
    """``train_senn`` from ``mlp([1, 1, 1], seed=seed)`` on teacher ``seed`` for ``steps`` steps.

    ``config``: a SENNConfig (None = the defaults), with ``steps`` and ``changes`` applied, quiet.
    Returns {seed, steps, test_mse, train_mse, inside_mse, widths, additions, seconds, log, net}.
    ``derivations/21-trainer.md`` section 4; ``tests/test_teacher.py``."""
    from .config import SENNConfig
    from .train_senn import train_senn
    seed = check_positive_int(seed, "seed", minimum=0)
    config = (SENNConfig() if config is None else config).replace(steps=steps, quiet=True, **changes)
    X, Y, Xt, Yt, _ = teacher_regression(seed=seed)
    net = mlp([1, 1, 1], activation="rational", seed=seed)
    t0 = time.perf_counter()
    net, log = train_senn(net, X, Y, losses.mse(), config, seed=seed)
    dt = time.perf_counter() - t0
    return {"seed": seed, "steps": steps, "test_mse": mse_of(net, Xt, Yt), "train_mse": mse_of(net, X, Y),
            "inside_mse": inside_mse(net, X, Xt, Yt),
            "widths": log.final["widths"], "additions": log.count(accepted=True), "seconds": dt,
            "log": log, "net": net}


def teacher_table(seeds=range(5), widths=WIDTHS, steps: int = STEPS, config=None, senn: bool = True,
                  verbose: bool = True) -> dict:
    """Test MSE of every fixed width and of SENN, per seed.

    Returns {"fixed": {width: [row per seed]}, "senn": [row per seed] (if ``senn``)} and, with
    ``verbose``, prints one line per seed: the fixed widths' test MSE, SENN's, its final width,
    and the two ratios the issue asks for (SENN / width 1 and SENN / best fixed width).
    ``derivations/21-trainer.md`` section 4 quotes its output."""
    seeds = [check_positive_int(s, "seed", minimum=0) for s in seeds]
    widths = [check_positive_int(w, "width") for w in widths]
    fixed = {w: [fixed_width_run(w, s, steps) for s in seeds] for w in widths}
    out = {"fixed": fixed}
    if senn:
        out["senn"] = [senn_run(s, steps, config) for s in seeds]
    if verbose:
        head = " ".join(f"{'w=' + str(w):>9}" for w in widths)
        print(f"teacher task, test MSE after {steps} NGD-CG steps (lr {LR}, damping {DAMPING}, full batch)")
        print(f"{'seed':>4} {head}" + (f" {'SENN':>9} {'width':>5} {'/w=1':>7} {'/best':>6}" if senn else ""))
        for j, s in enumerate(seeds):
            vals = [fixed[w][j]["test_mse"] for w in widths]
            line = f"{s:>4} " + " ".join(f"{v:9.2e}" for v in vals)
            if senn:
                r = out["senn"][j]
                line += (f" {r['test_mse']:9.2e} {str(r['widths']):>5} {fixed[widths[0]][j]['test_mse'] / r['test_mse']:7.1f}"
                         f" {r['test_mse'] / min(vals):6.2f}")
            print(line)
        print("test MSE inside the training range (no extrapolation):")
        for j, s in enumerate(seeds):
            line = f"{s:>4} " + " ".join(f"{fixed[w][j]['inside_mse']:9.2e}" for w in widths)
            print(line + (f" {out['senn'][j]['inside_mse']:9.2e}" if senn else ""))
        ms = " ".join(f"{np.mean([r['ms_per_step'] for r in fixed[w]]):9.2f}" for w in widths)
        print(f"{'ms/step':>4} {ms}")
    return out
