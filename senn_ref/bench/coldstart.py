"""Cold start: import time and the first training step of a fresh process, cold and warm cache.

Usage: ``senn-ref bench coldstart [--quick]``.  Every number comes from a separate Python
process (``sys.executable -c``) that imports ``senn_ref``, builds a demo's data and starting
network and runs ``train_senn`` until its first optimiser step is done (a callback stops it; one BLAS
thread, as the demos run);
times are counted from just before the process is started, so the interpreter's start-up is
included.  Per case and round, side by side (interleaved, so background load hits all alike):

* ``cold``   - Numba backend, ``NUMBA_CACHE_DIR`` set to a new empty folder: what a fresh
  install pays (every kernel the step calls is compiled);
* ``warm``   - the same folder again: kernels load from the cache (the steady state);
* ``numpy``  - ``SENN_REF_BACKEND=numpy``: no Numba at all;
* ``warmup`` - a new empty folder, ``senn_ref.kernels.warmup.warm()`` in its own process
  (what ``senn-ref warmup`` does at install time; its time is printed as ``warmup s``),
  then the case: it must compile nothing (``compiled 0``).

Cases (the demos' own tasks and starting networks, seed 0): ``regression1d`` (rational MLP
[1, 1, 1], NGD-CG, 50 points), ``digits`` (rational MLP [64, 10, 10]), ``digits-tanh`` (the
same with tanh: no kernel at all) and ``digits-conv`` (conv net with rational activations and
pooling).  ``--quick``: one round, ``regression1d`` and ``digits-tanh``.  The table shows the
median over rounds of each time and of the per-round ratio cold / warm.  The README's
benchmarks section has a measured table and the options that were tried.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .timing import progress

CASES = ("regression1d", "digits", "digits-tanh", "digits-conv")
MODES = ("cold", "warm", "numpy", "warmup")

# The child: times are absolute (time.time()) so that the parent can count from the spawn.
_CHILD = r"""
import json, sys, time
stamps = {}
import senn_ref
stamps["import"] = time.time()
from senn_ref.bench.coldstart import child_setup
from senn_ref.demos.runner import one_blas_thread
net, X, Y, loss, config = child_setup(sys.argv[1])
stamps["ready"] = time.time()
with one_blas_thread():                 # as the demos run (runner.one_blas_thread)
    senn_ref.train_senn(net, X, Y, loss, config, seed=0, callback=lambda step, net, log: True)
stamps["first_step"] = time.time()
from senn_ref.kernels import dispatch
report = {"stamps": stamps, "loss": float(loss.value(net.forward(X), Y)),
          "numba_imported": "numba" in sys.modules, "compiled": 0, "loaded": 0}
if dispatch._NUMBA_MODULES:
    from senn_ref.kernels.warmup import counts
    c = counts()
    report["compiled"], report["loaded"] = c["compiled"], c["loaded"]
print(json.dumps(report))
"""

_WARM = "from senn_ref.kernels.warmup import warm; warm()"


def child_setup(case: str):
    """``(net, X, Y, loss, config)`` of a case (module docstring): the demo's task and starting
    network, its config with ``quiet=True`` and no checkpoints."""
    from .._validate import check_option
    check_option(case, CASES, "case")
    from ..architectures import mlp
    from ..demos import digits, digits_conv, regression1d
    module = {"regression1d": regression1d, "digits": digits, "digits-tanh": digits,
              "digits-conv": digits_conv}[case]
    task = module.task(seed=0)
    net = mlp([64, 10, 10], activation="tanh", seed=0) if case == "digits-tanh" else task.start()
    return net, task.X, task.Y, task.loss, task.config.replace(quiet=True)


def _env(backend: str, cache_dir: str | None) -> dict:
    env = dict(os.environ, SENN_REF_BACKEND=backend)
    root = str(Path(__file__).resolve().parents[2])          # the senn_ref being measured
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return env


def _spawn(args, env) -> tuple[float, str]:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"coldstart child {args[1:]} failed:\n{out.stderr[-2000:]}")
    return t0, out.stdout


def run_child(case: str, backend: str = "numba", cache_dir: str | None = None) -> dict:
    """One fresh process running the first step of ``case``.  Returns seconds since the spawn:
    ``import_s`` (``import senn_ref`` done), ``ready_s`` (data and network built),
    ``first_step_s``, ``total_s`` (process ended); ``step_s = first_step_s - ready_s``; the
    mean ``loss`` after the step, ``numba_imported`` and the kernels ``compiled`` / ``loaded``."""
    t0, text = _spawn([_CHILD, case], _env(backend, cache_dir))
    end = time.time()
    rep = json.loads(text.strip().splitlines()[-1])
    s = rep.pop("stamps")
    rep.update(case=case, backend=backend, import_s=s["import"] - t0, ready_s=s["ready"] - t0,
               first_step_s=s["first_step"] - t0, total_s=end - t0, step_s=s["first_step"] - s["ready"])
    return rep


def run_warmup(cache_dir: str, parts=None) -> float:
    """Seconds of ``warm(parts)`` (default: all kernels; ``("dense",)`` is ``senn-ref warmup
    dense``) in a fresh process with this cache folder."""
    code = _WARM if parts is None else _WARM.replace("warm()", f"warm({list(parts)!r})")
    t0, _ = _spawn([code], _env("numba", cache_dir))
    return time.time() - t0


def measure(case: str, rounds: int) -> dict:
    """``{mode: [child reports per round]}`` plus ``"warmup_s"`` (module docstring)."""
    res = {m: [] for m in MODES}
    res["warmup_s"] = []
    with tempfile.TemporaryDirectory(prefix="senn-coldstart-") as tmp:
        for r in range(rounds):
            cold, installed = os.path.join(tmp, f"cold{r}"), os.path.join(tmp, f"warmup{r}")
            os.mkdir(cold)
            os.mkdir(installed)
            order = [("cold", "numba", cold), ("warm", "numba", cold), ("numpy", "numpy", None)]
            for mode, backend, folder in order:
                res[mode].append(run_child(case, backend, folder))
            res["warmup_s"].append(run_warmup(installed))
            res["warmup"].append(run_child(case, "numba", installed))
    return res


def _row(case: str, res: dict) -> str:
    med = {m: {k: float(np.median([r[k] for r in res[m]])) for k in ("import_s", "first_step_s", "step_s")}
           for m in MODES}
    ratio = np.median([c["first_step_s"] / w["first_step_s"] for c, w in zip(res["cold"], res["warm"])])
    cells = [f"{med[m]['import_s']:.2f} / {med[m]['first_step_s']:.2f}" for m in MODES]
    compiled = "/".join(str(max(r["compiled"] for r in res[m])) for m in ("cold", "warm", "warmup"))
    return (f"{case:>13} " + " ".join(f"{c:>13}" for c in cells)
            + f" {ratio:>9.2f}x {np.median(res['warmup_s']):>9.2f} {compiled:>9}")


def run(quick: bool = False) -> dict:
    """Print the table (module docstring) and return ``{case: measure(case)}``."""
    cases = ("regression1d", "digits-tanh") if quick else CASES
    rounds = 1 if quick else 3
    try:
        load = f"load average {os.getloadavg()[0]:.2f} (1 min)"
    except (AttributeError, OSError):       # pragma: no cover - platforms without getloadavg
        load = "load average unknown"
    print(f"Cold start: seconds from process start to 'import senn_ref' done / to the first training "
          f"step done, median of {rounds} interleaved round(s); {os.cpu_count()} CPUs, {load}")
    print(f"{'case':>13} " + " ".join(f"{m:>13}" for m in MODES)
          + f" {'cold/warm':>10} {'warmup s':>9} {'compiled':>9}  (compiled: cold/warm/warmup)", flush=True)
    out = {}
    for i, case in enumerate(cases, 1):
        progress(i, len(cases), f"coldstart {case}")
        try:
            out[case] = measure(case, rounds)
        except RuntimeError as exc:
            if "MissingExtraError" not in str(exc):
                raise
            print(f"{case:>13} skipped: {str(exc).strip().splitlines()[-1]}", flush=True)
            continue
        print(_row(case, out[case]), flush=True)
    return out


if __name__ == "__main__":
    run()
