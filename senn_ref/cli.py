"""Command line: ``senn-ref demo | verify | bench {kernels,rational,eta,optimizers,gain,senn} | info``."""
from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line naming the flag (no usage block, never a traceback)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _cmd_demo(args) -> int:
    from .demo_regression import check_out_dir, run
    try:
        check_out_dir(args.out)          # before training, not after it
    except OSError as exc:
        args.parser.error(f"argument --out: {exc}")
    run(out_dir=args.out, quick=args.quick, width=args.width, seed=args.seed)
    return 0


def _cmd_verify(args) -> int:
    from .verify import run, select
    try:
        select(args.claim)
    except ValueError as exc:
        args.parser.error(f"argument --claim: {exc}")
    rows = run(seed=args.seed, trials=args.trials, claims=args.claim, as_json=args.json)
    return 0 if all(r["passed"] for r in rows) else 1


def _cmd_bench(args) -> int:
    import importlib
    importlib.import_module(f".bench.{args.what}", __package__).run(quick=args.quick)
    return 0


def _cmd_info(args) -> int:
    import numba
    import numpy as np

    from . import __version__, backend
    print(f"senn-ref {__version__}; numpy {np.__version__}; numba {numba.__version__}; "
          f"default kernel backend: {backend.get_backend()} (set SENN_REF_BACKEND=numpy|numba)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = _Parser(prog="senn-ref", description="Self-Expanding Neural Networks, reference code")
    parser.add_argument("--version", action="version", version=f"senn-ref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("demo", help="train a rational MLP on the Figure-2 regression task, tracking eta")
    p.add_argument("--out", default="senn-ref-demo", help="folder for the figure (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer steps")
    p.add_argument("--width", type=_int_at_least(1), default=4,
                   help="hidden width of the student (default: %(default)s)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the teacher, the data and the student's initialisation (default: %(default)s)")
    p.set_defaults(func=_cmd_demo, parser=p)
    p = sub.add_parser("verify", help="check every numerical claim of the specification on fresh random instances")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the random networks, data, dampings and proposals (default: %(default)s)")
    p.add_argument("--trials", type=_int_at_least(1), default=8,
                   help="random instances per claim (default: %(default)s)")
    p.add_argument("--claim", nargs="+", metavar="NAME",
                   help="only these claims (numbers 1-11 or names such as rate-bound; default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    p.set_defaults(func=_cmd_verify, parser=p)
    p = sub.add_parser("bench", help="benchmarks, printed as ratios measured side by side")
    p.add_argument("what", choices=("kernels", "rational", "eta", "optimizers", "gain", "senn"))
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    p.set_defaults(func=_cmd_bench)
    p = sub.add_parser("info", help="versions and the active kernel backend")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .datasets import MissingExtraError
    try:
        return args.func(args)
    except MissingExtraError as exc:      # an optional dependency: one line, no traceback
        print(f"senn-ref {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
