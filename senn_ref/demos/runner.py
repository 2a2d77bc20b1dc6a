"""``run_demo``: train SENN on a demo's task, run the baselines, write every output, print a table.

Outputs in ``out`` (issue 8): ``summary.json`` (keys in :data:`SUMMARY_KEYS` and more),
``events.json`` (the trainer's :class:`SENNLog`), ``network.npz`` (``senn_ref.checkpoint``),
``training.png`` and the demo's own figures.  Everything the caller passes is checked before
anything is trained.  ``tests/test_demos.py``.

Run checkpoints (``derivations/22-run-checkpoints.md``): training writes ``out/checkpoints/``
after every expansion round and at least every :data:`CHECKPOINT_SECONDS` of training;
``resume=True`` continues from there (``senn-ref demo NAME --resume``) and ends with the same
numbers as an uninterrupted run (wall times aside).  ``ctrl_c=True`` turns a first Ctrl-C into a
checkpoint and :class:`senn_ref.runstate.RunInterrupted`.  ``tests/test_resume.py``.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from .. import checkpoint
from .._validate import check_positive_int
from ..demo_regression import check_out_dir
from ..runstate import deferred_interrupt
from ..trainer import train_senn
from . import demo_module
from .baselines import measure, run_baselines
from .figures import training_figure
from .task import parse_option

#: demos write a run checkpoint at least this often (seconds of training), and after every round
CHECKPOINT_SECONDS = 10.0

SUMMARY_KEYS = ("final_train_loss", "final_test_loss", "final_test_accuracy", "hidden_widths", "num_layers",
                "num_params", "expansions_accepted", "expansions_rejected", "rate_bound_violations",
                "numerical_fallbacks", "wall_seconds", "baselines")


def prepare(name, seed=0, steps=None, quick=False, quiet=False, overrides=None, options=None):
    """Check the arguments and build ``(module, task, config)`` without training anything.

    overrides : SENNConfig fields (e.g. from ``--config FILE``); options : the demo's own
    options (``--set``); ``steps`` overrides both the demo's and the file's step count."""
    module = demo_module(name)
    seed = check_positive_int(seed, "seed", minimum=0)
    if steps is not None:
        steps = check_positive_int(steps, "steps")
    opts = parse_option(options or {}, getattr(module, "OPTIONS", {}), name)
    task = module.task(seed=seed, quick=bool(quick), **opts)
    config = task.config.replace(**dict(overrides or {}))
    if quick and "steps" not in (overrides or {}):
        config = config.replace(steps=task.quick_steps)
    if steps is not None:
        config = config.replace(steps=steps)
    return module, task, config.replace(quiet=bool(quiet))


def one_blas_thread():
    """A context pinning BLAS to one thread (threadpoolctl, a dependency; a no-op when
    OMP_NUM_THREADS is set, which then rules).  The demos' matrices are small: on this project's
    2-core machine under load an NGD-CG step of the digits MLP took 3.6 s with the default
    threads and 0.11 s with one."""
    import contextlib
    if os.environ.get("OMP_NUM_THREADS"):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_demo(*args, **kwargs) -> dict:
    """:func:`run_demo_threads` under :func:`one_blas_thread` (same arguments)."""
    with one_blas_thread():
        return run_demo_threads(*args, **kwargs)


def run_demo_threads(name: str = "regression1d", out: str = "senn-ref-demo/regression1d", seed: int = 0,
             steps: int | None = None, quick: bool = False, quiet: bool = False, overrides=None,
             options=None, baselines: bool = True, resume: bool = False, ctrl_c: bool = False) -> dict:
    """Run demo ``name`` (``senn_ref.demos.DEMOS``) and return its summary dict (also written to
    ``out/summary.json``).  ``quiet`` silences the progress lines and the table; ``resume``
    continues from ``out/checkpoints``; ``ctrl_c`` see the module docstring."""
    module, task, config = prepare(name, seed, steps, quick, quiet, overrides, options)
    out = check_out_dir(out)

    def say(text):
        if not quiet:
            print(text, flush=True)

    say(f"[{name}] SENN from hidden widths {measure_widths(task.start())}, {config.steps} steps, seed {seed}")
    callback, extra = (module.make_callback(task, config) if hasattr(module, "make_callback") else (None, {}))
    t0 = time.perf_counter()
    with (deferred_interrupt() if ctrl_c else contextlib.nullcontext()):
        net, log = train_senn(task.start(), task.X, task.Y, task.loss, config, X_val=task.X_test,
                              Y_val=task.Y_test, seed=seed, callback=callback,
                              checkpoint_dir=os.path.join(out, "checkpoints"), checkpoint_rounds=True,
                              checkpoint_seconds=CHECKPOINT_SECONDS, resume=resume)
    wall = time.perf_counter() - t0
    senn = measure(task, net, wall)
    summary = {"demo": name, "seed": seed, "steps": config.steps, "quick": bool(quick),
               "final_train_loss": senn["train_loss"], "final_test_loss": senn["test_loss"],
               "final_test_accuracy": senn.get("test_accuracy"), "hidden_widths": senn["hidden_widths"],
               "num_layers": senn["num_layers"], "num_params": senn["num_params"],
               "expansions_accepted": log.final["expansions_accepted"],
               "expansions_rejected": log.final["expansions_rejected"],
               "width_additions": log.count("width"), "depth_additions": log.count("depth"),
               "rate_bound_violations": log.final["rate_bound_violations"],
               "numerical_fallbacks": log.final["numerical_fallbacks"], "wall_seconds": round(wall, 3),
               "senn": senn, "config": config.to_dict(), "config_notes": task.config_notes, "info": task.info}
    if not task.classification:
        summary["final_test_mse"] = senn["test_mse"]
    summary["baselines"] = run_baselines(task, config, seed, senn["hidden_widths"], say) if baselines else {}
    if hasattr(module, "targets"):          # the "done means" numbers, measured
        summary["targets"] = module.targets(summary)
    log.to_json(os.path.join(out, "events.json"))
    checkpoint.save(net, os.path.join(out, "network.npz"), overwrite=True)
    figs = [training_figure(log, os.path.join(out, "training.png"), name)]
    if hasattr(module, "figures"):
        say(f"[{name}] figures")
        figs += module.figures(task, net, log, extra, config, out)
    summary["figures"] = [os.path.basename(f) for f in figs]
    summary.update(extra.get("summary", {}))
    summary["total_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(summary, os.path.join(out, "summary.json"))
    if not quiet:
        print_table(summary)
        print(f"wrote {', '.join(summary['figures'])}, events.json, summary.json, network.npz to {out}")
    return summary


def measure_widths(net) -> list:
    """Units per hidden layer of ``net`` (the trainer's ``architecture``)."""
    from ..grow.expansion_round import architecture
    return architecture(net)


def write_json(obj, path: str) -> str:
    """Write ``obj`` as indented JSON (numpy scalars converted by the trainer's log helper),
    atomically like every other output (``checkpoint.atomic_write``: temporary file, fsync,
    rename, fsync of the folder), so a crash never leaves a half-written ``summary.json``."""
    from ..trainer.log import _plain
    data = _plain(obj)
    return checkpoint.atomic_write(path, lambda fh: json.dump(data, fh, indent=1), binary=False,
                                   suffix=".json.tmp")


#: the baselines listed first in a demo's table, in this order, and their row names
FIRST_ROWS = ("final_from_scratch", "fixed_start", "random_proposals", "gradmax")
ROW_NAMES = {"gradmax": "GradMax-like"}


def table_rows(summary) -> list:
    """(model, measurement) rows: SENN, then every baseline that ran, then the fixed widths."""
    rows = [("SENN", summary["senn"])]
    base = summary.get("baselines", {})
    for key in FIRST_ROWS:
        if isinstance(base.get(key), dict) and "num_params" in base[key]:
            rows.append((ROW_NAMES.get(key, key.replace("_", " ")), base[key]))
    for key, row in base.items():
        if isinstance(row, dict) and "num_params" in row and key not in FIRST_ROWS:
            rows.append((key.replace("_", " "), row))
    for w, row in base.get("fixed_width_sweep", {}).items():
        rows.append((f"fixed width {w}", row))
    return rows


def print_table(summary, file=None) -> None:
    """The short comparison table of a demo run, to ``file`` (default: ``sys.stdout`` as it is at
    the call, not at import: a stream captured then may be closed by now)."""
    file = sys.stdout if file is None else file
    acc = summary.get("final_test_accuracy") is not None
    last = "test acc" if acc else "test MSE"
    print(f"{'model':<22} {'hidden widths':<16} {'params':>7} {'train loss':>11} {'test loss':>11} "
          f"{last:>9} {'seconds':>8}", file=file)
    for name, r in table_rows(summary):
        v = r.get("test_accuracy") if acc else r.get("test_mse")
        print(f"{name:<22} {str(r['hidden_widths']):<16} {r['num_params']:>7} {r['train_loss']:>11.4e} "
              f"{r['test_loss']:>11.4e} {v:>9.4g} {r['wall_seconds']:>8.1f}", file=file)
    gm = summary.get("baselines", {}).get("gradmax")
    if not gm:
        gm_text = "not run"
    elif "status" in gm:
        gm_text = gm["status"]
    else:
        gm_text = f"{gm['expansions_accepted']} accepted / {gm['expansions_rejected']} rejected"
    print(f"SENN: {summary['expansions_accepted']} accepted / {summary['expansions_rejected']} rejected "
          f"proposals, {summary['rate_bound_violations']} rate-bound violations, "
          f"{summary.get('numerical_fallbacks', 0)} numerical fallbacks (events.json, kind 'fallback'); GradMax-like baseline: "
          f"{gm_text}", file=file)
