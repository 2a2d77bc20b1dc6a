"""The benchmarks report well-formed side-by-side ratios (they assert no speed: that is for
people to read).  Issue 11 item 3: no row compares code with itself, rows are printed as
they are measured, after a progress line."""
from pathlib import Path

import numpy as np

from senn_ref.bench import eta, kernels, rational

SMALL_CASES = [("conv 2->3 6x6", "conv", 8, 2, 3, 6, 3, 1),
               ("dense 20->5", "dense", 16, 20, 5, None, None, None),
               ("maxpool 2x2 3x6x6", "pool", 8, 3, 3, 6, 2, 0)]


def test_kernel_benchmark_rows(capsys, monkeypatch):
    monkeypatch.setattr(kernels, "CASES", SMALL_CASES)
    monkeypatch.setattr(kernels, "_settings", lambda quick: dict(min_rounds=2, max_rounds=3))
    # no jax in this process: it starts threads, and later tests fork (test_conv2d); the jax
    # column is tested in a subprocess below
    monkeypatch.setattr(kernels, "_jax_step", lambda *args: None)
    rows = kernels.run(quick=True)
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert "GFLOP/s" in lines[1] and len(lines) == 3 + len(SMALL_CASES)
    assert cap.err.count("[") >= len(SMALL_CASES) and "[3/3] maxpool 2x2 3x6x6" in cap.err
    for row, line, (label, kind, N, cin, cout, hw, k, pad) in zip(rows, lines[3:], SMALL_CASES):
        assert row["case"] == label and line.startswith(label) and row["ours_s"] > 0
        t = row["timings"]
        # dense layers have no twin kernel: no numpy contender (it would time the same BLAS call)
        assert ("numpy" in t) == (kind != "dense") and ("numpy_over_ours" in row) == (kind != "dense")
        if kind != "dense":
            assert row["numpy_over_ours"] == t["numpy"].ratio and row["numpy_spread"] >= 0
        expected = {"conv": lambda: 3 * 2.0 * N * cout * hw * hw * cin * k * k,
                    "dense": lambda: 3 * 2.0 * N * cin * cout, "pool": lambda: 0.0}[kind]()
        assert row["flops"] == expected and ("gemm" in t) == (expected > 0)
        if expected:
            assert np.isclose(row["ours_gflops"], expected / row["ours_s"] / 1e9)
            # fraction of GEMM from the paired ratio of the same rounds
            assert np.isclose(row["fraction_of_gemm"], expected / (2.0 * 512 ** 3) * t["gemm"].ratio)
            assert 0 < row["fraction_of_gemm"] < 5


def test_rational_benchmark_rows(capsys, monkeypatch):
    monkeypatch.setattr(rational, "SHAPES", ((4, 3, 2, 2), (64, 16, 8, 8), (8, 5)))   # quick: 1st and 3rd
    monkeypatch.setattr(rational, "_settings", lambda quick: dict(min_rounds=2, max_rounds=3))
    rows = rational.run(quick=True)
    cap = capsys.readouterr()
    assert "numpy/numba" in cap.out and "[2/2] rational (8, 5)" in cap.err
    assert len(cap.out.splitlines()) == 2 + 2
    for row in rows:
        for part in rational.PARTS:
            c = row[part]
            assert c.baseline == "numba" and c["numba"].ratio == 1.0 and c["numpy"].seconds > 0
            assert c["numpy"].ratio > 0 and c.rounds >= 2


def test_eta_benchmark_ratios_are_to_kfac_at_the_same_width(capsys, monkeypatch):
    monkeypatch.setattr(eta, "N", 32)
    rows = eta.run(widths=(2, 3), repeats=2)
    cap = capsys.readouterr()
    assert "[2/2] eta width 3" in cap.err and len(cap.out.splitlines()) == 2 + 2
    by = {(r["width"], r["method"]): r for r in rows}
    for w in (2, 3):
        assert by[(w, "kfac")]["ratio"] == 1.0
        for m in ("exact", "cg"):
            assert np.isclose(by[(w, m)]["ratio"], by[(w, m)]["ratio"]) and by[(w, m)]["ratio"] > 0
        assert np.isclose(by[(w, "cg")]["eta"], by[(w, "exact")]["eta"], rtol=1e-6)


JAX_ROW = r"""
import json, numpy as np
from senn_ref.bench import kernels
kernels._settings = lambda quick: dict(min_rounds=2, max_rounds=3)
row = kernels.measure_case(("conv 2->3 6x6", "conv", 8, 2, 3, 6, 3, 1), np.random.default_rng(0), quick=True)
print(json.dumps({k: row[k] for k in ("jax_over_ours", "jax_s", "ours_s")}))
"""


def test_kernel_benchmark_jax_column():
    """The jax.jit column (conv): checked against our layer's pass, then timed (subprocess)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    import pytest
    pytest.importorskip("jax")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", JAX_ROW], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["jax_over_ours"] > 0 and row["jax_s"] > 0 and row["ours_s"] > 0, row


def test_release_run_child_runs_the_named_checkout():
    """bench.release: a short SENN run in a fresh process with this checkout's senn_ref; the same
    checkout as 'previous' is refused (it would compare code with itself)."""
    from pathlib import Path
    import pytest
    from senn_ref.bench import release
    root = str(Path(__file__).resolve().parents[1])
    rep = release.run_child(root, "regression1d", steps=31)           # one expansion round at 30
    assert Path(rep["tree"]).resolve().is_relative_to(Path(root).resolve())
    assert rep["wall"] > 0 and len(rep["widths"]) == 1 and rep["widths"][0] >= 1
    assert 0 < rep["metric"] < 1, rep                                # test MSE of the 1-D task
    with pytest.raises(ValueError, match="previous"):
        release.compare_trees(root, root + "/.", rounds=1)


def test_release_main_refuses_bad_arguments_before_any_run(capsys, monkeypatch, tmp_path):
    """--rounds 0 gave a NaN median, an unknown demo or a folder that is no checkout a traceback
    from the first child; each is now one argparse error naming the argument, before any run."""
    import pytest
    from senn_ref.bench import release
    runs = []
    monkeypatch.setattr(release, "run_child", lambda *a, **kw: runs.append(a))
    root = str(Path(__file__).resolve().parents[1])
    for argv, word in (([root, "--rounds", "0"], "--rounds"), ([root, "mnist"], "names"),
                       ([str(tmp_path)], "previous")):
        with pytest.raises(SystemExit) as info:
            release.main(argv)
        assert info.value.code == 2 and word in capsys.readouterr().err, argv
    assert runs == []


def test_cg_benchmark_rows_check_the_numbers_first(capsys, monkeypatch):
    """``bench cg``: four rows, the compiled loop the baseline, the Python loop and the BLAS-dot
    loop ("before") timed against it; a Python loop that does not give the compiled loop's bits
    is refused before anything is timed."""
    import pytest

    from senn_ref import backend, natural_gradient
    from senn_ref.bench import cg
    monkeypatch.setattr(cg, "_settings", lambda quick: dict(min_rounds=2, max_rounds=2, target_seconds=0.002))
    with backend.using("numba"):
        rows = cg.run(quick=True)
        cap = capsys.readouterr()
        assert len(rows) == 4 and len(cap.out.splitlines()) == 4 + len(rows) and "[4/4] NGD-CG step" in cap.err
        for row in rows:
            assert row["compiled_s"] > 0 and row["python_loop_ratio"] > 0 and row["python_loop_spread"] >= 0
            assert ("before_ratio" in row) == (not row["row"].startswith("CG solve alone"))
        monkeypatch.setattr(natural_gradient, "_dot", lambda a, b: float(a @ b))     # ddot order
        with pytest.raises(AssertionError, match="differ"):
            cg.eta_contenders("CG eta")

