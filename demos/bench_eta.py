"""Cost of the natural expansion score against layer width (exact, CG, K-FAC).

Same as ``senn-ref bench eta``; the code lives in the package (see ``senn_ref/cli.py``).
Usage: ``python demos/bench_eta.py [--quick]``.
"""
import sys

from senn_ref.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "eta", *sys.argv[1:]]))
