"""The main demo: the paper's Figure-2 experiment with growth (regression1d).

Same as ``senn-ref demo``; the code lives in the package (see ``senn_ref/cli.py``).
Usage: ``python demos/regression_demo.py [NAME] [--quick]`` (NAME: see ``senn-ref demo --list``).
"""
import sys

from senn_ref.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
