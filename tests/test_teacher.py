"""The paper's first experiment: from one hidden unit, train_senn with the default config on the
teacher task (senn_ref/trainer/teacher_experiment.py).  The full table - every fixed width 1-32
and SENN, seeds 0-4, 2000 steps, whole-set and in-range test MSE - is ``senn-ref bench teacher``
(``teacher_table()``), quoted in derivations/21-trainer.md section 4.  Here: the faithful part
CI can afford - SENN and the one-unit network at the full 2000 steps on seeds 0-4 (the issue's
5x target, asserted inside the training range on every seed and on the whole test set where
the docs say it holds), and every fixed width at 400 steps on seed 0 (the 1.5x target)."""
import numpy as np
import pytest

from senn_ref.trainer import SENNConfig
from senn_ref.trainer.teacher_experiment import (FACTOR_ONE_UNIT, MIN_GROWN, WIDTHS, fixed_width_run,
                                                 range_split, senn_run, targets)

STEPS = 400
SEEDS = range(5)
#: seeds whose whole-set test MSE misses the 5x target (derivations/21-trainer.md section 4)
WHOLE_SET_MISSES = {2}


@pytest.fixture(scope="module")
def full_runs():
    """seed -> (SENN run, one-unit run), default config, 2000 steps (about 4 s per seed, one core)."""
    return {s: (senn_run(s), fixed_width_run(1, s)) for s in SEEDS}


def test_senn_is_5x_below_one_unit_inside_the_training_range_on_seeds_0_to_4(full_runs):
    """The issue's first target at full length: >= 4 units grown and SENN's in-range test MSE
    >= 5x below the one-unit network's on every seed; on the whole test set the same holds
    except on seed 2, where > 99 % of SENN's error is extrapolation past the training inputs."""
    lines, fails = [], []
    for s, (r, one) in full_runs.items():
        ratio_in, ratio_all = one["inside_mse"] / r["inside_mse"], one["test_mse"] / r["test_mse"]
        lines.append(f"seed {s}: widths {r['widths']} in-range {ratio_in:.1f}x whole {ratio_all:.1f}x "
                     f"outside share {r['outside_share']:.3f}")
        if r["widths"][0] - 1 < MIN_GROWN or ratio_in < FACTOR_ONE_UNIT:
            fails.append(s)
        if (ratio_all >= FACTOR_ONE_UNIT) == (s in WHOLE_SET_MISSES):
            fails.append(s)
    assert not fails, f"seeds {fails}:\n" + "\n".join(lines)


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


def test_seed_2_error_is_extrapolation_past_the_right_edge(full_runs):
    """Why seed 2 misses the 5x target (derivations/21-trainer.md section 4): the full 2000-step
    default run fits the training range (inside-range test MSE > 100x below the total), 99.7 %
    of its test error (``outside_share``) sits outside the training inputs' range, > 95 % at the
    test points right of the last training input, where the teacher turns up after its minimum
    and the training data hold one point past it; an oracle that continued the teacher by its
    tangent at that last input would have < 20 % of that error."""
    from senn_ref.datasets import teacher_regression
    seed = 2
    r = full_runs[seed][0]
    X, Y, Xt, Yt, teacher = teacher_regression(seed=seed)
    assert r["inside_mse"] * 100 < r["test_mse"], r
    assert 0.99 < r["outside_share"] < 1.0 and r["n_outside"] == 28, (r["outside_share"], r["n_outside"])
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


def test_range_split_adds_up_and_targets_read_the_table():
    """range_split: the whole-set MSE is the in-range and outside errors together; targets():
    the ratios and the met flags of a hand-made table."""
    from senn_ref import mlp
    net = mlp([1, 3, 1], seed=0)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(-1, 1, (20, 1)), [[-1.0], [1.0]]])      # the range is [-1, 1]
    Xt = np.concatenate([rng.uniform(-1, 1, (30, 1)), [[1.5], [-2.0], [3.0]]])
    Yt = np.sin(3 * Xt)
    d = range_split(net, X, Xt, Yt)
    err = np.sum((net.forward(Xt) - Yt) ** 2, axis=1)
    inside = (Xt[:, 0] >= X.min()) & (Xt[:, 0] <= X.max())
    assert d["n_outside"] == 3 and inside.sum() == 30
    assert np.isclose(d["test_mse"], err.mean(), rtol=1e-14) and np.isclose(d["inside_mse"], err[inside].mean(), rtol=1e-14)
    assert np.isclose(d["outside_share"] * err.sum(), err[~inside].sum(), rtol=1e-12)
    assert np.isclose(d["test_mse"] * 33, d["inside_mse"] * 30 + d["outside_share"] * err.sum(), rtol=1e-12)

    def row(test, inside):
        return {"test_mse": test, "inside_mse": inside}
    table = {"fixed": {1: [row(1.0, 1.0), row(1.0, 1.0)], 4: [row(0.5, 0.05), row(0.1, 0.5)]},
             "senn": [{"seed": 0, "widths": [6], "outside_share": 0.9, **row(0.1, 0.1)},
                      {"seed": 1, "widths": [3], "outside_share": 0.2, **row(0.1, 0.1)}]}
    t = targets(table)
    assert t[0]["grown"] == 5 and t[0]["test"]["one_unit_ratio"] == 10.0 and t[0]["test"]["best_ratio"] == 0.2
    assert t[0]["test"]["met"] and not t[0]["inside"]["met"]          # inside: 2x the best fixed width
    assert t[0]["inside"]["best_ratio"] == 2.0 and t[0]["inside"]["best_fixed_one_unit_ratio"] == 20.0
    assert not t[1]["test"]["met"] and t[1]["grown"] == 2               # 1.0x the best (0.1), but only 2 grown


def test_bench_teacher_prints_both_tables_and_the_targets(capsys):
    """``senn-ref bench teacher`` (here 1 seed, 30 steps): the whole-set and in-range blocks, the
    outside shares, and one targets line per test set that agrees with ``targets()``."""
    from senn_ref.bench import teacher
    out = teacher.run(seeds=[3], steps=30)
    text = capsys.readouterr().out
    assert "test MSE, whole test set" in text and "inside the training range [min x_train" in text
    assert "share of the whole-set squared error" in text
    t = out["targets"][0]
    for key, name in (("test", "whole test set"), ("inside", "inside the training range")):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name + ":"))
        assert ("met on 1 of 1" in line) == t[key]["met"], (line, t)
    r = out["senn"][0]
    assert f"{r['inside_mse']:9.2e}" in text and f"{r['outside_share']:9.1%}" in text
