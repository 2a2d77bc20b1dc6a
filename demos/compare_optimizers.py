"""K-FAC against Adam on the bundled digits, per step, same budget.

Same as ``senn-ref bench optimizers``; the code lives in the package (see ``senn_ref/cli.py``).
Usage: ``python demos/compare_optimizers.py [--quick]``.
"""
import sys

from senn_ref.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "optimizers", *sys.argv[1:]]))
