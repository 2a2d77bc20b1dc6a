"""Cold start (issue 12 item 4): ``senn_ref.kernels.warmup.warm`` leaves nothing for a run to
compile, and ``senn-ref bench coldstart`` measures what it says (its child runs a real first
step and reports it).  Run in fresh processes: the kernels a process has loaded decide what
it would compile next."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from senn_ref.bench import coldstart
from senn_ref.kernels import warmup

ROOT = str(Path(__file__).resolve().parents[1])

# In a fresh process: warm(), then the passes of real growing runs (an MLP and a conv net with
# depth growth: candidate paths, K-FAC proposals, pooling) must add no Numba specialisation.
AFTER_WARM = r"""
import json, numpy as np
from senn_ref import losses, mlp, convnet, SENNConfig, train_senn
from senn_ref.kernels import warmup
warmup.warm()
before = warmup.counts()
rng = np.random.default_rng(0)
X = rng.standard_normal((20, 2)); Y = np.sin(X[:, :1])
cfg = SENNConfig(steps=3, expand_every=2, n_candidates=4, search_steps=2, max_additions_per_round=1, max_width=3,
                 quiet=True, tau=1e-6, alpha_rel=1e-12)
train_senn(mlp([2, 1, 1], seed=0), X, Y, losses.mse(), cfg, seed=0)
Xc = rng.standard_normal((12, 1, 8, 8)); yc = rng.integers(0, 3, 12)
for pool, opt in (("avg", "ngd-cg"), ("max", "ngd-cg"), ("avg", "kfac")):
    net = convnet(8, channels=(2, 2), n_classes=3, pool=pool, seed=0)
    train_senn(net, Xc, yc, losses.softmax_cross_entropy(), cfg.replace(depth=True, optimizer=opt), seed=0)
after = warmup.counts()
print(json.dumps({"before": before, "after": after}))
"""


def _python(code, *args, env=None):
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_warm_covers_every_kernel_a_growing_run_calls():
    res = json.loads(_python(AFTER_WARM).splitlines()[-1])
    before, after = res["before"], res["after"]
    new = {k: sorted(set(after["signatures"].get(k, [])) - set(before["signatures"].get(k, [])))
           for k in after["signatures"]}
    new = {k: v for k, v in new.items() if v}
    assert not new, f"specialisations compiled after warm(): {new}"
    assert after["compiled"] == before["compiled"], (before["compiled"], after["compiled"])
    # warm() reached every kernel module (the three layer families, the whole-network passes
    # the proposal search, the buffered pass's loops and the compiled CG loop), each kernel with
    # one specialisation
    families = {k.split(".")[0] for k, v in before["signatures"].items() if v}
    assert families == {"rational", "unfold", "pool", "sequential", "search", "buffered", "cg"}, families
    assert all(len(v) <= 1 for v in before["signatures"].values()), before["signatures"]


def test_warm_refuses_unknown_parts():
    with pytest.raises(ValueError, match="parts"):
        warmup.warm(["dense", "lstm"])


@pytest.mark.parametrize("case", ["regression1d", "digits-tanh"])
def test_coldstart_child_reports_a_real_first_step(case, tmp_path):
    """The child of the benchmark, on the NumPy backend (no compilation, about a second):
    it trains one step of the named case and says which kernels it used."""
    if case == "digits-tanh":
        pytest.importorskip("sklearn")
    rep = coldstart.run_child(case, "numpy", cache_dir=str(tmp_path))
    assert rep["case"] == case and rep["backend"] == "numpy"
    assert 0 < rep["import_s"] < rep["ready_s"] < rep["first_step_s"] <= rep["total_s"], rep
    assert rep["numba_imported"] is False and rep["compiled"] == 0
    assert np.isfinite(rep["loss"]) and rep["loss"] > 0
    assert not list(tmp_path.iterdir())          # nothing was written to the Numba cache


def test_every_numba_function_is_compiled_with_cache_true():
    """Every ``@numba.<decorator>`` in the package (the package spells them so), helpers called only from other kernels included,
    carries ``cache=True`` (developers' guide: compiled kernels are cached), so a fresh process
    finds each of them on disk.  Read from the source: the decorators' keyword arguments."""
    import ast
    missing = []
    for path in sorted(Path(ROOT, "senn_ref").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id == "numba"):
                    continue                    # jax.jit (benchmark peers) is not Numba
                keywords = {k.arg: k.value for k in dec.keywords} if isinstance(dec, ast.Call) else {}
                cache = keywords.get("cache")
                if not (isinstance(cache, ast.Constant) and cache.value is True):
                    missing.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name}")
    assert not missing, "numba functions without cache=True:\n" + "\n".join(missing)
