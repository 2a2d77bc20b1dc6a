"""The fused rational-activation kernel against its NumPy twin.

Same as ``senn-ref bench rational``; the code lives in the package (see ``senn_ref/cli.py``).
Usage: ``python demos/bench_rational.py [--quick]``.
"""
import sys

from senn_ref.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "rational", *sys.argv[1:]]))
