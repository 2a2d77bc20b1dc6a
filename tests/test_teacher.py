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
