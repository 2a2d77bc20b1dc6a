"""``senn-ref sweep``: one demo over seeds and settings, in parallel processes.

Each run is :func:`senn_ref.demos.runner.run_demo` (quiet) in its own folder
``out/<setting>/seed<k>``; the runs go to joblib's process pool (``jobs`` workers) or, with
``scheduler="ADDRESS"``, to a Dask distributed cluster (optional extra ``[distributed]``).
The table has one row per setting: mean and standard deviation over seeds of the test loss,
test accuracy or MSE, total hidden units, parameters, accepted expansions and seconds; it is
written as ``sweep.csv`` and ``sweep.md`` with a figure ``sweep.png``.  ``tests/test_sweep.py``.
"""
from __future__ import annotations

import csv
import io
import itertools
import os
import time

import numpy as np

from .._validate import check_positive_int
from ..checkpoint import atomic_write
from ..trainer import SENNConfig

COLUMNS = ("final_test_loss", "final_test_accuracy", "final_test_mse", "total_hidden_units", "num_params",
           "expansions_accepted", "wall_seconds")


def parse_seeds(text: str) -> list:
    """"0-4" -> [0, 1, 2, 3, 4]; "1,3,7" -> [1, 3, 7]; ValueError naming --seeds otherwise."""
    try:
        seeds = []
        for part in str(text).split(","):
            if "-" in part:
                a, b = (int(s) for s in part.split("-", 1))
                seeds += list(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"--seeds: expected e.g. 0-4 or 0,2,5, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct integers >= 0, got {text!r}")
    return seeds


def _value(text: str):
    """A --set value typed: int, float, true/false/none, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_sets(items) -> dict:
    """["tau=0.5,1", "n_train=100"] -> {"tau": [0.5, 1], "n_train": [100]} (values typed:
    int, float, true/false/none, else text).  ValueError naming --set for a malformed item."""
    out = {}
    for item in items or ():
        key, sep, values = str(item).partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--set: expected KEY=V1[,V2,...], got {item!r}")
        out[key.strip()] = [_value(v.strip()) for v in values.split(",")]
    return out


def split_settings(setting: dict) -> tuple:
    """(SENNConfig overrides, demo options) of one setting dict."""
    fields = set(SENNConfig().to_dict())
    return ({k: v for k, v in setting.items() if k in fields}, {k: v for k, v in setting.items() if k not in fields})


def settings_grid(sets: dict) -> list:
    """Every combination of the ``--set`` values as a dict (one empty dict without ``--set``)."""
    keys = list(sets)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sets[k] for k in keys))]


def label(setting: dict) -> str:
    """"key=value,key=value" of a setting ("default" when empty): the table's row name."""
    return ",".join(f"{k}={v}" for k, v in setting.items()) or "default"


def one_run(name, setting, seed, out, common) -> dict:
    """A worker: run the demo quietly and return the numbers of the table (plain dict)."""
    from .runner import run_demo
    overrides, options = split_settings(setting)
    overrides = {**common.get("overrides", {}), **overrides}
    options = {**common.get("options", {}), **options}
    s = run_demo(name, out=out, seed=seed, steps=common.get("steps"), quick=common.get("quick", False),
                 quiet=True, overrides=overrides, options=options, baselines=common.get("baselines", False))
    row = {"setting": label(setting), "seed": seed, "hidden_widths": s["hidden_widths"],
           "total_hidden_units": int(sum(s["hidden_widths"]))}
    for key in COLUMNS:
        if key in s and key != "total_hidden_units":
            row[key] = s[key]
    return row


def check_sweep(name, seeds, sets, common) -> list:
    """Validate everything (demo name, seeds, every setting) before any run; returns the jobs."""
    from .runner import prepare
    seeds = [check_positive_int(s, "seed", minimum=0) for s in seeds]
    grid = settings_grid(sets)
    for setting in grid:
        overrides, options = split_settings(setting)
        prepare(name, seeds[0], common.get("steps"), common.get("quick", False), True,
                {**common.get("overrides", {}), **overrides}, {**common.get("options", {}), **options})
    return [(setting, seed) for setting in grid for seed in seeds]


def run_sweep(name, seeds, sets=None, out="senn-ref-sweep", jobs: int = 1, scheduler: str | None = None,
              common=None, progress=print) -> list:
    """Run the sweep (module docstring); returns the per-run rows and writes the table and figure."""
    common = dict(common or {})
    jobs_list = check_sweep(name, seeds, sets or {}, common)
    jobs = check_positive_int(jobs, "jobs")
    os.makedirs(out, exist_ok=True)
    args = [(name, s, k, os.path.join(out, label(s).replace("=", "-").replace(",", "_"), f"seed{k}"), common)
            for s, k in jobs_list]
    t0 = time.perf_counter()
    progress(f"sweep {name}: {len(args)} runs ({len(jobs_list) // max(1, len(seeds))} settings x "
             f"{len(seeds)} seeds) on {'dask ' + scheduler if scheduler else f'{jobs} joblib worker(s)'}")
    if scheduler:
        rows = _run_dask(args, scheduler, progress)
    else:
        from joblib import Parallel, delayed
        rows = []
        for row in Parallel(n_jobs=jobs, return_as="generator")(delayed(one_run)(*a) for a in args):
            rows.append(row)
            progress(f"  run {len(rows)}/{len(args)}: {row['setting']} seed {row['seed']}: widths "
                     f"{row['hidden_widths']}, test loss {row['final_test_loss']:.4g}")
    progress(f"sweep {name}: done in {time.perf_counter() - t0:.1f} s")
    table = aggregate(rows)
    write_table(table, out)
    sweep_figure(table, out, name)
    return rows


def _run_dask(args, scheduler, progress) -> list:
    try:
        from dask.distributed import Client
    except ImportError:
        from ..datasets import MissingExtraError
        raise MissingExtraError("--scheduler needs Dask: pip install 'senn-ref[distributed]'") from None
    with Client(scheduler, timeout=30) as client:
        futures = [client.submit(one_run, *a, pure=False) for a in args]
        rows = client.gather(futures)
    progress(f"dask: {len(rows)} runs gathered")
    return rows


def aggregate(rows) -> list:
    """One dict per setting: n, and mean / std (over seeds, ddof 0) of every numeric column."""
    table = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == setting]
        entry = {"setting": setting, "n": len(group)}
        for key in COLUMNS:
            vals = [r[key] for r in group if r.get(key) is not None]
            if vals:
                entry[f"{key}_mean"] = float(np.mean(vals))
                entry[f"{key}_std"] = float(np.std(vals))
        table.append(entry)
    return table


def write_table(table, out) -> tuple:
    """``sweep.csv`` (every column) and ``sweep.md`` (mean +- std), each written atomically
    (``checkpoint.atomic_write``); returns both paths."""
    keys = ["setting", "n"] + [f"{k}_{s}" for k in COLUMNS for s in ("mean", "std") if any(f"{k}_mean" in t for t in table)]
    csv_path, md_path = os.path.join(out, "sweep.csv"), os.path.join(out, "sweep.md")
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for t in table:
        w.writerow({k: t.get(k, "") for k in keys})
    cols = [k for k in COLUMNS if any(f"{k}_mean" in t for t in table)]
    lines = ["| setting | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for t in table:
        cells = [f"{t[k + '_mean']:.4g} +- {t[k + '_std']:.2g}" if k + "_mean" in t else "" for k in cols]
        lines.append(f"| {t['setting']} | {t['n']} | " + " | ".join(cells) + " |")
    # atomically, as summary.json (runner.write_json): a crash never leaves a half-written table;
    # bytes, so that csv's \r\n line ends reach the file unchanged on every platform
    atomic_write(csv_path, lambda fh: fh.write(buf.getvalue().encode()), suffix=".csv.tmp")
    atomic_write(md_path, lambda fh: fh.write(("\n".join(lines) + "\n").encode()), suffix=".md.tmp")
    return csv_path, md_path


def sweep_figure(table, out, name) -> str:
    """``sweep.png``: total hidden units and the test metric per setting, mean with std bars."""
    from .figures import pyplot, save
    plt = pyplot()
    metric = "final_test_accuracy" if any("final_test_accuracy_mean" in t for t in table) else "final_test_loss"
    x = np.arange(len(table))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, ylabel in ((ax0, "total_hidden_units", "hidden units (total)"), (ax1, metric, metric.replace("_", " "))):
        ax.errorbar(x, [t.get(f"{key}_mean", np.nan) for t in table], yerr=[t.get(f"{key}_std", 0) for t in table],
                    fmt="o-", capsize=3)
        ax.set_xticks(x, [t["setting"] for t in table], rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("setting")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name}: {ylabel}, mean +- std over seeds (n = {table[0]['n']})", fontsize=9)
    return save(fig, out, "sweep.png")
