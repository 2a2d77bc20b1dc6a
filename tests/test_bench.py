"""The benchmarks run and report well-formed ratios (they assert no speed: that is for people to read)."""
import numpy as np

from senn_ref.bench import kernels, rational


def test_kernel_benchmark_rows(capsys):
    rows = kernels.run(quick=True)
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and len(rows) == len(kernels.CASES)
    for row, (label, kind, N, cin, cout, hw, k, pad) in zip(rows, kernels.CASES):
        assert row["case"] == label and row["numba_s"] > 0 and row["numpy_s"] > 0
        assert np.isclose(row["numpy_over_numba"], row["numpy_s"] / row["numba_s"])
        # forward + input gradient + weight gradient: three GEMM-shaped passes of 2 N O T C k^2
        # flops (stride 1, 'same' padding here, so T = hw^2); dense: 3 * 2 N in out
        expected = {"conv": lambda: 3 * 2.0 * N * cout * hw * hw * cin * k * k,
                    "dense": lambda: 3 * 2.0 * N * cin * cout, "pool": lambda: 0.0}[kind]()
        assert row["flops"] == expected
        if expected:
            assert np.isclose(row["numba_gflops"], expected / row["numba_s"] / 1e9)
            assert 0 < row["fraction_of_gemm"] < 2


def test_rational_benchmark_rows(capsys):
    rows = rational.run(quick=True)
    assert "numpy/numba" in capsys.readouterr().out
    for row in rows:
        for backend in ("numba", "numpy"):
            assert all(row[backend][k] > 0 for k in ("forward", "backward", "both"))
