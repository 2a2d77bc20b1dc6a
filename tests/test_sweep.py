"""senn-ref sweep: argument parsing, the table's means and spreads, joblib with 2 jobs, and the
same runs through a local Dask cluster (skipped when Dask is not installed)."""
import csv
import json

import numpy as np
import pytest

from senn_ref.cli import main
from senn_ref.demos.sweep import aggregate, parse_seeds, parse_sets, run_sweep, settings_grid, split_settings

COMMON = {"steps": 35, "quick": True}          # one round (step 30) per run: about a second each


def test_parsing():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("1,3,7") == [1, 3, 7]
    for bad in ("a", "3-1x", "1,1", "-1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    sets = parse_sets(["tau=0.5,1", "n_train=100", "search=random", "prune=true"])
    assert sets == {"tau": [0.5, 1], "n_train": [100], "search": ["random"], "prune": [True]}
    with pytest.raises(ValueError, match="--set"):
        parse_sets(["tau"])
    grid = settings_grid({"tau": [1, 2], "n_train": [10, 20, 30]})
    assert len(grid) == 6 and split_settings(grid[0]) == ({"tau": 1}, {"n_train": 10})


def test_aggregate_mean_and_std():
    rows = [{"setting": "a", "seed": s, "final_test_loss": v, "total_hidden_units": u}
            for s, (v, u) in enumerate(((1.0, 2), (3.0, 4)))] + [{"setting": "b", "seed": 0, "final_test_loss": 5.0,
                                                                   "total_hidden_units": 7}]
    t = aggregate(rows)
    assert [r["setting"] for r in t] == ["a", "b"] and t[0]["n"] == 2
    assert t[0]["final_test_loss_mean"] == 2.0 and t[0]["final_test_loss_std"] == 1.0
    assert t[1]["total_hidden_units_std"] == 0.0


def _check_outputs(out, rows, settings, seeds):
    assert len(rows) == settings * seeds
    with open(out / "sweep.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == settings and (out / "sweep.png").stat().st_size > 10_000
    md = (out / "sweep.md").read_text()
    assert md.count("\n") == settings + 2 and "+-" in md
    for t in table:                                   # the table's mean is the mean of the runs' summaries
        losses = [json.loads(p.read_text())["final_test_loss"]
                  for p in (out / t["setting"].replace("=", "-").replace(",", "_")).glob("seed*/summary.json")]
        assert len(losses) == seeds
        assert np.isclose(float(t["final_test_loss_mean"]), np.mean(losses), rtol=1e-12)
        assert np.isclose(float(t["final_test_loss_std"]), np.std(losses), rtol=1e-9, atol=1e-15)


def test_cli_sweep_with_two_jobs(tmp_path, capsys):
    assert main(["sweep", "regression1d", "--seeds", "0-1", "--set", "tau=1,1000", "--jobs", "2",
                 "--quick", "--steps", "35", "--out", str(tmp_path)]) == 0
    out = tmp_path / "regression1d"
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    _check_outputs(out, [0] * 4, 2, 2)
    units = {r["setting"]: float(r["total_hidden_units_mean"]) for r in rows}
    assert units["tau=1000"] == 1.0 and units["tau=1"] == 2.0      # tau 1000 never grows; tau 1 grew once
    assert "| tau=1 | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sweep", "regression1d", "--set", "tau=-1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "tau" in err


def test_sweep_through_a_local_dask_cluster(tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        rows = run_sweep("regression1d", [0, 1], {"tau": [1]}, out=str(tmp_path / "dask"),
                         scheduler=cluster.scheduler_address, common=COMMON, progress=lambda t: None)
    _check_outputs(tmp_path / "dask", rows, 1, 2)
    local = run_sweep("regression1d", [0, 1], {"tau": [1]}, out=str(tmp_path / "joblib"), jobs=1,
                      common=COMMON, progress=lambda t: None)
    for a, b in zip(rows, local):                     # same seeds, same numbers on either backend
        assert a["final_test_loss"] == b["final_test_loss"] and a["hidden_widths"] == b["hidden_widths"]
