"""The benchmarks run and report well-formed ratios (they assert no speed: that is for people to read)."""
import numpy as np

from senn_ref.bench import kernels, rational


def test_kernel_benchmark_rows(capsys):
    rows = kernels.run(quick=True)
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and len(rows) == len(kernels.CASES)
    for row in rows:
        assert row["numba_s"] > 0 and row["numpy_s"] > 0
        assert np.isclose(row["numpy_over_numba"], row["numpy_s"] / row["numba_s"])
        if row["flops"]:
            assert 0 < row["fraction_of_gemm"] == row["numba_gflops"] / row["gemm_gflops"]


def test_rational_benchmark_rows(capsys):
    rows = rational.run(quick=True)
    assert "numpy/numba" in capsys.readouterr().out
    for row in rows:
        for backend in ("numba", "numpy"):
            assert all(row[backend][k] > 0 for k in ("forward", "backward", "both"))
