"""Release comparison: the same SENN runs with this checkout and with an older one, interleaved.

Usage::

    git worktree add --detach /tmp/prev 0a310cf          # any older checkout of senn-ref
    python -m senn_ref.bench.release /tmp/prev [--rounds 3] [regression1d digits]

Each run is a fresh process (``sys.executable``, ``PYTHONPATH`` set to the checkout, so each
imports its own ``senn_ref``): the demo's task and starting network (seed 0), its SENN config
with ``quiet=True``, ``train_senn`` under one BLAS thread as the demos run; the wall time of
``train_senn`` alone is reported (data loading and figures excluded), with the final widths,
accepted expansions and the test metric (MSE or accuracy) so that one can see both checkouts
ran the same experiment.  One warm-up run per checkout and task fills the Numba caches; then
``rounds`` rounds, the order of the two checkouts alternating from round to round, so that
background load hits both alike.  Printed: per run, then per task the medians and the median
of the per-round ratios previous / current.  The README's table of this comparison says which
commits and what load.  This compares two versions of the code, never one with itself: the
checkouts must differ (refused otherwise).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

NAMES = ("regression1d", "digits")

_CHILD = r"""
import importlib, json, sys, time
import numpy as np
import senn_ref
from senn_ref.demos.runner import one_blas_thread
name, steps = sys.argv[1], int(sys.argv[2])
task = importlib.import_module("senn_ref.demos." + name).task(seed=0)
cfg = task.config.replace(quiet=True, **({"steps": steps} if steps else {}))
net = task.start()
with one_blas_thread():
    t = time.perf_counter()
    net, log = senn_ref.train_senn(net, task.X, task.Y, task.loss, cfg, seed=0)
    wall = time.perf_counter() - t
out = net.forward(task.X_test)
metric = (float(np.mean(out.argmax(axis=1) == task.Y_test)) if task.classification
          else float(np.mean((out - task.Y_test) ** 2)))
print(json.dumps({"tree": senn_ref.__file__, "wall": wall, "widths": log.final["widths"],
                  "accepted": log.count(), "metric": metric}))
"""


def run_child(tree: str, name: str, steps: int = 0) -> dict:
    """One SENN run of demo ``name`` with the ``senn_ref`` of checkout ``tree`` (module
    docstring); ``steps`` > 0 overrides the config's steps.  Returns {tree, wall, widths,
    accepted, metric}; RuntimeError if the run fails or imported another checkout."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", _CHILD, name, str(steps)], capture_output=True, text=True,
                         env=env, cwd=str(tree))
    if out.returncode != 0:
        raise RuntimeError(f"release run {name} in {tree} failed:\n{out.stderr[-2000:]}")
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(rep["tree"]).resolve().is_relative_to(Path(tree).resolve()):
        raise RuntimeError(f"the run imported {rep['tree']}, not the checkout {tree}")
    return rep


def compare_trees(previous: str, current: str, names=NAMES, rounds: int = 3) -> dict:
    """Interleaved runs (module docstring); returns {name: {"previous": [...], "current": [...]}}."""
    if Path(previous).resolve() == Path(current).resolve():
        raise ValueError("previous: the same checkout as current (a comparison of code with itself)")
    trees = {"previous": previous, "current": current}
    for name in names:
        for tree in trees.values():
            run_child(tree, name)                             # warm-up: Numba caches
    res = {name: {k: [] for k in trees} for name in names}
    for r in range(rounds):
        for name in names:
            for key in (("previous", "current") if r % 2 == 0 else ("current", "previous")):
                rep = run_child(trees[key], name)
                res[name][key].append(rep)
                print(f"round {r} {name:13s} {key:9s} {rep['wall']:7.2f} s  widths {rep['widths']} "
                      f"accepted {rep['accepted']} metric {rep['metric']:.4g}  load {os.getloadavg()[0]:.1f}",
                      flush=True)
    for name in names:
        p = [x["wall"] for x in res[name]["previous"]]
        c = [x["wall"] for x in res[name]["current"]]
        ratio = np.median([a / b for a, b in zip(p, c)])
        print(f"{name}: previous {np.median(p):.2f} s [{min(p):.2f}-{max(p):.2f}], current {np.median(c):.2f} s "
              f"[{min(c):.2f}-{max(c):.2f}], previous / current {ratio:.2f}x (median of {rounds} paired rounds)")
    return res


def _positive(text: str) -> int:
    import argparse
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m senn_ref.bench.release", description=__doc__.splitlines()[0])
    parser.add_argument("previous", help="path of the older checkout")
    parser.add_argument("names", nargs="*", default=list(NAMES), help="demos (default: regression1d digits)")
    parser.add_argument("--rounds", type=_positive, default=3, help="paired rounds after the warm-up (default: 3)")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in NAMES:
            parser.error(f"argument names: unknown demo {name!r} (choose from {', '.join(NAMES)})")
    if not (Path(args.previous) / "senn_ref" / "__init__.py").is_file():
        parser.error(f"argument previous: {args.previous!r} is not a senn-ref checkout (no senn_ref/__init__.py)")
    current = str(Path(__file__).resolve().parents[2])
    print(f"previous {args.previous}, current {current}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    compare_trees(args.previous, current, args.names, args.rounds)


if __name__ == "__main__":
    main()
