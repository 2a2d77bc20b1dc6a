"""K-FAC against Adam on the bundled digits, per step, same budget.

Same as ``senn-ref bench optimizers``; the code lives in ``senn_ref/bench/optimizers.py``.
Usage: ``python demos/compare_optimizers.py [--quick]``.
"""
import argparse

from senn_ref.bench.optimizers import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two epochs instead of five")
    run(quick=parser.parse_args().quick)
