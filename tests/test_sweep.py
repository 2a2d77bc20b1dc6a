"""senn-ref sweep: argument parsing, the table's means and spreads, joblib with 2 jobs, and the
same runs through a local Dask cluster (skipped when Dask is not installed)."""
import csv
import json

import numpy as np
import pytest

from senn_ref.cli import main
from senn_ref.demos.sweep import (aggregate, parse_seeds, parse_sets, run_sweep, settings_grid, split_settings,
                                  write_table)

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


def test_write_table_is_atomic_a_failure_keeps_the_previous_files(tmp_path, monkeypatch):
    """sweep.csv and sweep.md go through checkpoint.atomic_write: the exact bytes of a direct
    write, and a write that fails half-way leaves the previous file whole and no temporary."""
    table = [{"setting": "tau=1", "n": 2, "final_test_loss_mean": 0.5, "final_test_loss_std": 0.25},
             {"setting": "tau=2", "n": 2, "final_test_loss_mean": 0.125, "final_test_loss_std": 0.0}]
    csv_path, md_path = write_table(table, str(tmp_path))
    raw = open(csv_path, "rb").read()
    assert raw == (b"setting,n,final_test_loss_mean,final_test_loss_std\r\n"
                   b"tau=1,2,0.5,0.25\r\ntau=2,2,0.125,0.0\r\n")
    md = open(md_path, "rb").read()
    assert md == (b"| setting | n | final_test_loss |\n|---|---|---|\n"
                  b"| tau=1 | 2 | 0.5 +- 0.25 |\n| tau=2 | 2 | 0.125 +- 0 |\n")
    calls = []

    def failing_writerow(self, row):
        calls.append(row)
        if len(calls) == 2:                       # the header went out, then the second row fails
            raise OSError("disk full")
        return original(self, row)
    original = csv.DictWriter.writerow
    monkeypatch.setattr(csv.DictWriter, "writerow", failing_writerow)
    with pytest.raises(OSError, match="disk full"):
        write_table(table[::-1], str(tmp_path))
    assert open(csv_path, "rb").read() == raw and open(md_path, "rb").read() == md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv", "sweep.md"]


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
