"""The paper's first experiment, short version: from one hidden unit, train_senn with the default
config on the teacher task (senn_ref/trainer/teacher_experiment.py; the full 5-seed, 2000-step
table is ``teacher_table()``, quoted in derivations/21-trainer.md section 4)."""
import numpy as np

from senn_ref.trainer import SENNConfig
from senn_ref.trainer.teacher_experiment import WIDTHS, fixed_width_run, senn_run

STEPS = 400


def test_senn_grows_and_beats_one_unit_and_matches_the_best_fixed_width():
    seed = 0
    r = senn_run(seed, steps=STEPS)
    fixed = {w: fixed_width_run(w, seed, STEPS)["test_mse"] for w in WIDTHS}
    best = min(fixed.values())
    table = " ".join(f"w={w}: {v:.2e}" for w, v in fixed.items())
    msg = f"SENN {r['test_mse']:.2e} widths {r['widths']}; fixed {table}"
    assert r["widths"][0] >= 5, "grew fewer than 4 units: " + msg
    assert r["test_mse"] * 5 <= fixed[1], "not 5x below the one-unit network: " + msg
    assert r["test_mse"] <= 1.5 * best, "not within 1.5x of the best fixed width: " + msg
    log = r["log"]
    # the config was the default one (apart from steps and quiet)
    d = SENNConfig().to_dict()
    d.update(steps=STEPS, quiet=True)
    assert log.config == {**d, "rate_bound": log.config["rate_bound"]}
    assert all(ro["additions"] < ro["rate_bound"] for ro in log.rounds)
    # growth happened where the data are: every accepted unit's gain passed both tests
    acc = log.accepted
    assert len(acc) == r["widths"][0] - 1
    assert all(e["score"] > e["tau"] * e["eta_c"] and e["score"] > e["alpha"] for e in acc)
    assert np.isfinite(r["train_mse"]) and r["train_mse"] < fixed[1]


def test_seed_2_error_is_extrapolation_past_the_right_edge():
    """Why seed 2 misses the 5x target (derivations/21-trainer.md section 4): the full 2000-step
    default run fits the training range (inside-range test MSE > 100x below the total), > 95 % of
    its test error sits at the test points right of the last training input, where the teacher
    turns up after its minimum and the training data hold one point past it; an oracle that
    continued the teacher by its tangent at that last input would have < 20 % of that error."""
    from senn_ref.datasets import teacher_regression
    seed = 2
    r = senn_run(seed)
    X, Y, Xt, Yt, teacher = teacher_regression(seed=seed)
    assert r["inside_mse"] * 100 < r["test_mse"], r
    hi = X[:, 0].max()
    right = Xt[:, 0] > hi
    err = np.sum((r["net"].forward(Xt) - Yt) ** 2, axis=1)
    assert err[right].sum() > 0.95 * err.sum(), (err[right].sum(), err.sum())
    y_sorted = Y[np.argsort(X[:, 0]), 0]
    assert np.argmin(y_sorted) == len(y_sorted) - 2      # the minimum, then a single point past it
    h = 1e-5
    f = lambda x: teacher.forward(np.array([[x]]))[0, 0]  # noqa: E731
    slope = (f(hi + h) - f(hi - h)) / (2 * h)
    tangent = f(hi) + slope * (Xt[right, 0] - hi)
    oracle = float(np.sum((tangent - Yt[right, 0]) ** 2) / Xt.shape[0])
    assert oracle < 0.2 * r["test_mse"], (oracle, r["test_mse"])
