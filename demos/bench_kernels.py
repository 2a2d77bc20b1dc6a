"""Conv and dense forward+backward: Numba path vs NumPy twin vs PyTorch CPU (float64).

Same as ``senn-ref bench kernels``; the code lives in the package (see ``senn_ref/cli.py``).
Usage: ``python demos/bench_kernels.py [--quick]``.
"""
import sys

from senn_ref.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "kernels", *sys.argv[1:]]))
