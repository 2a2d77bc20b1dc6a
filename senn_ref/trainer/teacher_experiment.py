"""The paper's first experiment (senn-math section 10): fixed widths against SENN on the teacher task.

Task: ``datasets.teacher_regression(seed)`` (a random rational MLP [1, 16, 16, 16, 16, 1],
x ~ N(0, 1), 50 training and 1000 test points), loss MSE (1/2 convention), full batch.

* :func:`fixed_width_run` trains ``mlp([1, w, 1])`` (rational units, init seed = data seed) for
  ``steps`` natural-gradient steps (``NaturalGradientCG``, lr 0.1, damping 0.1, as the released
  code trains) and returns its test MSE and the time per step;
* :func:`senn_run` starts from ``mlp([1, 1, 1])`` (the same initial unit as the w = 1 baseline)
  and runs :func:`senn_ref.train_senn` with a given config for the same steps and optimiser;
* :func:`teacher_table` runs both over seeds and widths and returns / prints the table that
  ``derivations/21-trainer.md`` reports, and :func:`targets` checks the issue's targets on it
  per seed.  ``senn-ref bench teacher`` prints it (seeds 0-4, or ``--quick``: seeds 0-1, 400
  steps); ``tests/test_teacher.py`` runs cheaper versions.

Test MSE here is ``mean ||f(x) - y||^2`` over the 1000 test points (no 1/2), the usual MSE;
``inside_mse`` is the same over the test points inside the training inputs' range (about 97 %
of them; "interpolation MSE"), and ``outside_share`` the fraction of the whole-set squared
error from the others (:func:`range_split`), since with 50 training points extrapolation can
dominate the test MSE.
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
    return range_split(net, X, Xt, Yt)["inside_mse"]


def range_split(net, X, Xt, Yt) -> dict:
    """The test error split at the training inputs' range ``R = [min X, max X]``:
    ``test_mse = mean_m ||f(xt_m) - yt_m||^2`` (all m test points), ``inside_mse`` the same mean
    over the test points in R, and ``outside_share = sum_{xt not in R} e_m / sum_m e_m`` the
    fraction of the whole-set squared error from outside R (extrapolation).  X (n, 1) training
    inputs, Xt (m, 1), Yt (m, 1).  Returns {test_mse, inside_mse, outside_share, n_outside}.
    ``derivations/21-trainer.md`` section 4; ``tests/test_teacher.py``."""
    F = net.forward(Xt).reshape(Xt.shape[0], -1)
    err = np.sum((F - Yt.reshape(F.shape)) ** 2, axis=1)
    inside = (Xt[:, 0] >= X[:, 0].min()) & (Xt[:, 0] <= X[:, 0].max())
    total = float(err.sum())
    return {"test_mse": float(np.mean(err)), "inside_mse": float(np.mean(err[inside])),
            "outside_share": float(err[~inside].sum() / total) if total > 0 else 0.0,
            "n_outside": int((~inside).sum())}


def fixed_width_run(width: int, seed: int, steps: int = STEPS) -> dict:
    """Train ``mlp([1, width, 1], seed=seed)`` on teacher ``seed`` by NGD-CG (lr 0.1, damping 0.1,
    full batch) for ``steps`` steps.  Returns {width, seed, steps, train_mse, ms_per_step} and
    :func:`range_split`'s test_mse, inside_mse, outside_share, n_outside.
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
    return {"width": width, "seed": seed, "steps": steps, **range_split(net, X, Xt, Yt),
            "train_mse": mse_of(net, X, Y), "ms_per_step": 1e3 * dt / steps}


def senn_run(seed: int, steps: int = STEPS, config=None, **changes) -> dict:
    """``train_senn`` from ``mlp([1, 1, 1], seed=seed)`` on teacher ``seed`` for ``steps`` steps.

    ``config``: a SENNConfig (None = the defaults), with ``steps`` and ``changes`` applied, quiet.
    Returns {seed, steps, train_mse, widths, additions, seconds, log, net} and :func:`range_split`'s
    test_mse, inside_mse, outside_share, n_outside.
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
    return {"seed": seed, "steps": steps, **range_split(net, X, Xt, Yt), "train_mse": mse_of(net, X, Y),
            "widths": log.final["widths"], "additions": log.count(accepted=True), "seconds": dt,
            "log": log, "net": net}


#: the issue's targets: SENN's MSE at least FACTOR_ONE_UNIT x below the one-unit network, at most
#: FACTOR_BEST x the best fixed width's, and at least MIN_GROWN units added
FACTOR_ONE_UNIT, FACTOR_BEST, MIN_GROWN = 5.0, 1.5, 4


def targets(table: dict) -> list[dict]:
    """Per seed, the issue's targets on the whole test set and inside the training range.

    ``table`` from :func:`teacher_table` (with SENN).  For each seed and each of ``"test"`` (whole
    set) and ``"inside"`` (in-range MSE): ``one_unit_ratio = mse(w=1) / mse(SENN)`` (target >= 5),
    ``best_ratio = mse(SENN) / min_w mse(w)`` (target <= 1.5), ``best_fixed_one_unit_ratio =
    mse(w=1) / min_w mse(w)`` (whether any fixed width reaches 5x), and ``grown`` units (>= 4).
    ``derivations/21-trainer.md`` section 4; ``tests/test_teacher.py``."""
    fixed, widths = table["fixed"], sorted(table["fixed"])
    out = []
    for j, r in enumerate(table["senn"]):
        row = {"seed": r["seed"], "grown": int(r["widths"][0]) - 1,         # SENN starts from one unit
               "outside_share": r["outside_share"]}
        for key, col in (("test", "test_mse"), ("inside", "inside_mse")):
            one = fixed[1][j][col] if 1 in fixed else float("nan")
            best = min(fixed[w][j][col] for w in widths)
            row[key] = {"one_unit_ratio": one / r[col], "best_ratio": r[col] / best,
                        "best_fixed_one_unit_ratio": one / best}
            row[key]["met"] = (row[key]["one_unit_ratio"] >= FACTOR_ONE_UNIT
                               and row[key]["best_ratio"] <= FACTOR_BEST and row["grown"] >= MIN_GROWN)
        out.append(row)
    return out


def teacher_table(seeds=range(5), widths=WIDTHS, steps: int = STEPS, config=None, senn: bool = True,
                  verbose: bool = True) -> dict:
    """Test MSE of every fixed width and of SENN, per seed, on the whole test set and inside the
    training inputs' range, with the whole-set error's share from outside that range.

    Returns {"fixed": {width: [row per seed]}, "senn": [row per seed] and "targets"
    (:func:`targets`) if ``senn``} and, with ``verbose``, prints three blocks of one line per seed
    (whole-set MSE with SENN's final width and the two ratios the issue asks for; in-range MSE
    with the same ratios; outside share of every column), then the targets per seed.
    ``derivations/21-trainer.md`` section 4 quotes its output; ``senn-ref bench teacher``."""
    seeds = [check_positive_int(s, "seed", minimum=0) for s in seeds]
    widths = [check_positive_int(w, "width") for w in widths]
    if 1 not in widths:
        raise ValueError(f"widths: must include 1 (the one-unit baseline), got {widths}")
    widths = sorted(set(widths))
    steps = check_positive_int(steps, "steps")
    fixed = {w: [fixed_width_run(w, s, steps) for s in seeds] for w in widths}
    out = {"fixed": fixed}
    if senn:
        out["senn"] = [senn_run(s, steps, config) for s in seeds]
        out["targets"] = targets(out)
    if verbose:
        print_table(out, steps)
    return out


def print_table(out: dict, steps: int) -> None:
    """Print :func:`teacher_table`'s result (see there).  ``derivations/21-trainer.md`` section 4."""
    fixed = out["fixed"]
    widths = sorted(fixed)
    seeds = [r["seed"] for r in fixed[widths[0]]]
    senn = "senn" in out
    head = " ".join(f"{'w=' + str(w):>9}" for w in widths)
    print(f"teacher task after {steps} NGD-CG steps (lr {LR}, damping {DAMPING}, full batch)")
    for col, title in (("test_mse", "test MSE, whole test set"),
                       ("inside_mse", "test MSE inside the training range [min x_train, max x_train]")):
        print(title)
        print(f"{'seed':>4} {head}" + (f" {'SENN':>9} {'width':>5} {'w=1/SENN':>8} {'SENN/best':>9}" if senn else ""))
        for j, s in enumerate(seeds):
            vals = [fixed[w][j][col] for w in widths]
            line = f"{s:>4} " + " ".join(f"{v:9.2e}" for v in vals)
            if senn:
                r = out["senn"][j]
                line += (f" {r[col]:9.2e} {str(r['widths']):>5} {fixed[1][j][col] / r[col]:8.1f}"
                         f" {r[col] / min(vals):9.2f}")
            print(line)
    print("share of the whole-set squared error from test points outside the training range")
    print(f"{'seed':>4} {head}" + (f" {'SENN':>9}" if senn else "") + "  outside points")
    for j, s in enumerate(seeds):
        line = f"{s:>4} " + " ".join(f"{fixed[w][j]['outside_share']:9.1%}" for w in widths)
        print(line + (f" {out['senn'][j]['outside_share']:9.1%}" if senn else "")
              + f"  {fixed[widths[0]][j]['n_outside']}")
    ms = " ".join(f"{np.mean([r['ms_per_step'] for r in fixed[w]]):9.2f}" for w in widths)
    print(f"{'ms/step':>4} {ms}")
    if not senn:
        return
    print(f"targets: SENN >= {FACTOR_ONE_UNIT:g}x below w=1, <= {FACTOR_BEST:g}x the best fixed width, "
          f">= {MIN_GROWN} units grown")
    for key, name in (("test", "whole test set"), ("inside", "inside the training range")):
        missed = [t["seed"] for t in out["targets"] if not t[key]["met"]]
        fixed5 = [t["seed"] for t in out["targets"] if t[key]["best_fixed_one_unit_ratio"] < FACTOR_ONE_UNIT]
        why = "; ".join(f"seed {t['seed']}: w=1/SENN {t[key]['one_unit_ratio']:.1f}, SENN/best "
                        f"{t[key]['best_ratio']:.2f}, {t['grown']} grown, {t['outside_share']:.1%} of its "
                        f"error outside the range" for t in out["targets"] if not t[key]["met"])
        print(f"  {name}: met on {len(seeds) - len(missed)} of {len(seeds)} seeds"
              + (f" (missed: {why})" if missed else "")
              + f"; best fixed width not {FACTOR_ONE_UNIT:g}x below w=1 on seeds {fixed5 or 'none'}")
