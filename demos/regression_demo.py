"""The main demo: a rational MLP on the paper's Figure-2 regression task, tracking eta.

Same as ``senn-ref demo``; the code lives in ``senn_ref/demo_regression.py``.
Usage: ``python demos/regression_demo.py [--quick] [--out DIR]``.
"""
import argparse

from senn_ref.demo_regression import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--out", default="senn-ref-demo", help="folder for the figure")
    args = parser.parse_args()
    run(out_dir=args.out, quick=args.quick)
