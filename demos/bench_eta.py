"""Cost of the natural expansion score against layer width (exact, CG, K-FAC).

Same as ``senn-ref bench eta``; the code lives in ``senn_ref/bench/eta.py``.
Usage: ``python demos/bench_eta.py [--quick]``.
"""
import argparse

from senn_ref.bench.eta import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths up to 64, one repetition")
    run(quick=parser.parse_args().quick)
