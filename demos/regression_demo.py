"""The main demo: a rational MLP on the paper's Figure-2 regression task, tracking eta.

Same as ``senn-ref demo``; the code lives in the package (see ``senn_ref/cli.py``).
Usage: ``python demos/regression_demo.py [--quick]``.
"""
import sys

from senn_ref.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
