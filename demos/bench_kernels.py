"""Conv and dense forward+backward: Numba path vs NumPy twin vs PyTorch CPU (float64).

Same as ``senn-ref bench kernels``; the code lives in ``senn_ref/bench/kernels.py``.
Usage: ``python demos/bench_kernels.py [--quick]``.
"""
import argparse

from senn_ref.bench.kernels import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    run(quick=parser.parse_args().quick)
