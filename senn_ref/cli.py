"""Command line: ``senn-ref demo [NAME] | sweep NAME | verify | bench {kernels,rational,eta,optimizers,gain,senn,teacher,jacobian,peers,coldstart,cg} | warmup | info``."""
from __future__ import annotations

import argparse
import os
import sys


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line naming the flag (no usage block, never a traceback)."""

    def parse_known_args(self, args=None, namespace=None):
        self._seen = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        # a missing positional is reported before unknown flags are looked at: name the flag
        # the user mistyped (``senn-ref --bogus``, ``senn-ref bench --bogus``) instead
        if message.startswith("the following arguments are required"):
            unknown = [a for a in getattr(self, "_seen", []) if a.startswith("-") and a != "--"
                       and a.split("=")[0] not in self._option_string_actions]
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}"
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


_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


def _scheduler_address(text: str) -> str:
    """``--scheduler``: a Dask scheduler address ``[SCHEME://]HOST[:PORT]`` (checked for its form
    only; whether it answers is known when the sweep connects)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme not in _SCHEMES:
        raise argparse.ArgumentTypeError(f"unknown scheme {scheme!r} in {text!r}; expected one of "
                                         f"{', '.join(_SCHEMES)} (e.g. tcp://127.0.0.1:8786)")
    if not rest or any(c.isspace() for c in rest):
        raise argparse.ArgumentTypeError(f"expected an address such as tcp://127.0.0.1:8786, got {text!r}")
    if scheme != "inproc":
        if rest.startswith("["):                       # [IPv6]:port
            host, _, port = rest[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = rest.partition(":")
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise argparse.ArgumentTypeError(f"expected HOST[:PORT] with a port 1-65535, got {text!r}")
    return text


def _demo_inputs(args):
    """Overrides and options of ``demo`` / ``sweep`` from --config, --set and --data; errors name the flag."""
    from .demos.config_file import ConfigFileError, read_overrides
    overrides = {}
    if args.config:
        try:
            overrides = read_overrides(args.config)
        except ConfigFileError as exc:
            args.parser.error(f"argument --config: {exc}")
    options = {"data": args.data} if getattr(args, "data", None) else {}
    return overrides, options


def _flag_error(args, exc) -> None:
    """One line naming the flag a demo/sweep argument error came from."""
    from .datasets import IDXError
    text = str(exc)
    if isinstance(exc, IDXError):
        flag = "--data"
    elif text.startswith("--"):
        flag = text.split(":")[0]
    elif text.startswith("demo: unknown demo"):
        flag, text = "NAME", text.removeprefix("demo: ")
    else:
        flag = "--set/--config"
    args.parser.error(f"argument {flag}: {text.removeprefix(flag + ': ')}")


def _cmd_demo(args) -> int:
    from .demos import DEFAULT, demo_list
    from .demos.runner import prepare, run_demo
    from .demos.sweep import parse_sets, split_settings
    from .demo_regression import check_out_dir
    if args.list:
        for name, text in demo_list():
            print(f"{name:<14} {text}")
        return 0
    name = args.name or DEFAULT
    overrides, options = _demo_inputs(args)
    try:
        sets = parse_sets(args.set)
        if any(len(v) != 1 for v in sets.values()):
            raise ValueError("--set: demo takes one value per key (several values: senn-ref sweep)")
        cfg, opt = split_settings({k: v[0] for k, v in sets.items()})
        overrides, options = {**overrides, **cfg}, {**options, **opt}
        prepare(name, args.seed, args.steps, args.quick, args.quiet, overrides, options)
    except (TypeError, ValueError) as exc:
        _flag_error(args, exc)
    out = os.path.join(args.out, name)
    try:
        check_out_dir(out)          # before training, not after it
    except OSError as exc:
        args.parser.error(f"argument --out: {exc}")
    from .runstate import CheckpointError, NumericalFailure, RunInterrupted
    try:
        run_demo(name, out=out, seed=args.seed, steps=args.steps, quick=args.quick, quiet=args.quiet,
                 overrides=overrides, options=options, baselines=not args.no_baselines, resume=args.resume,
                 ctrl_c=True)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        import shlex
        saved = getattr(exc, "path", None)
        again = " ".join(shlex.quote(a) for a in args.argv if a != "--resume")
        print("\nsenn-ref demo: interrupted; " + (f"checkpoint {saved} written. " if saved else
              f"the checkpoints in {os.path.join(out, 'checkpoints')} are kept. ") +
              f"Continue with: senn-ref {again} --resume", file=sys.stderr)
        return 130
    except (CheckpointError, NumericalFailure, OSError) as exc:
        print(f"senn-ref demo: error: {exc}" + ("" if not isinstance(exc, OSError) else
              f" (the checkpoints in {os.path.join(out, 'checkpoints')} are kept; add --resume to "
              f"continue)"), file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args) -> int:
    from .demos.sweep import check_sweep, parse_seeds, parse_sets, run_sweep
    overrides, options = _demo_inputs(args)
    common = {"overrides": overrides, "options": options, "steps": args.steps, "quick": args.quick,
              "baselines": args.baselines}
    try:
        seeds = parse_seeds(args.seeds)
        sets = parse_sets(args.set)
        check_sweep(args.name, seeds, sets, common)
    except (TypeError, ValueError) as exc:
        _flag_error(args, exc)
    out = os.path.join(args.out, args.name)
    try:
        from .demo_regression import check_out_dir
        check_out_dir(out)
    except OSError as exc:
        args.parser.error(f"argument --out: {exc}")
    run_sweep(args.name, seeds, sets, out=out, jobs=args.jobs, scheduler=args.scheduler, common=common,
              progress=(lambda text: None) if args.quiet else (lambda text: print(text, flush=True)))
    if not args.quiet:
        with open(os.path.join(out, "sweep.md")) as fh:
            print(fh.read(), end="")
        print(f"wrote sweep.csv, sweep.md, sweep.png to {out}")
    return 0


def _demo_flags(p, out_default: str) -> None:
    """The flags ``demo`` and ``sweep`` share."""
    p.add_argument("--out", default=out_default,
                   help="parent folder; files go to OUT/NAME/ (default: %(default)s)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the data, the networks and the growth (default: %(default)s)")
    p.add_argument("--steps", type=_int_at_least(1), default=None,
                   help="optimiser steps (default: the demo's; --quick: its short run)")
    p.add_argument("--quick", action="store_true", help="a short run (CI): fewer steps and baselines")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no table")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of SENNConfig fields to override")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a SENNConfig field or a demo option (e.g. n_train=400); repeatable")
    p.add_argument("--data", metavar="DIR", help="folder with the MNIST / Fashion-MNIST IDX files (mnist)")


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


def _cmd_warmup(args) -> int:
    import time

    from .kernels.warmup import PARTS, warm
    for part in args.parts:
        if part not in PARTS:
            args.parser.error(f"argument PART: invalid choice: {part!r} (choose from {', '.join(PARTS)})")
    t0 = time.perf_counter()
    report = warm(args.parts or None)
    for part, r in report.items():
        print(f"{part}: {r['compiled']} kernels compiled, {r['loaded']} loaded from the cache, {r['seconds']:.1f} s")
    print(f"Numba kernels ready in {time.perf_counter() - t0:.1f} s; later runs load them from the cache")
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
    p = sub.add_parser("demo", help="run a demo: SENN grows a network on one of the paper's experiments")
    p.add_argument("name", nargs="?", default=None,
                   help="regression1d (default), moons, digits, teacher, digits-conv, width-vs-data, mnist")
    p.add_argument("--list", action="store_true", help="list the demos and exit")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline runs")
    p.add_argument("--resume", action="store_true",
                   help="continue the run from OUT/NAME/checkpoints (from the start if it holds none)")
    _demo_flags(p, "senn-ref-demo")
    p.set_defaults(func=_cmd_demo, parser=p)
    p = sub.add_parser("sweep", help="run a demo over seeds and settings in parallel (joblib or Dask)")
    p.add_argument("name", help="a demo name (senn-ref demo --list)")
    p.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-4 or 0,3 (default: %(default)s)")
    p.add_argument("--jobs", type=_int_at_least(1), default=2, help="parallel processes (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS", type=_scheduler_address,
                   help="send the runs to this Dask scheduler instead (e.g. tcp://127.0.0.1:8786)")
    p.add_argument("--baselines", action="store_true", help="also run each demo's baselines")
    _demo_flags(p, "senn-ref-sweep")
    p.set_defaults(func=_cmd_sweep, parser=p)
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
    p.add_argument("what", choices=("kernels", "rational", "eta", "optimizers", "gain", "senn",
                                            "teacher", "jacobian", "peers", "coldstart", "cg"))
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    p.set_defaults(func=_cmd_bench)
    p = sub.add_parser("warmup", help="compile the Numba kernels now (or load them from the cache) so "
                                      "that the first training step does not wait for them")
    p.add_argument("parts", nargs="*", metavar="PART",
                   help="dense (MLPs: the rational kernels and the compiled whole-network passes) "
                        "and/or conv (unfold, fold, pooling, conv-shaped rational); default: both")
    p.set_defaults(func=_cmd_warmup, parser=p)
    p = sub.add_parser("info", help="versions and the active kernel backend")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from .datasets import MissingExtraError
    try:
        return args.func(args)
    except MissingExtraError as exc:      # an optional dependency: one line, no traceback
        print(f"senn-ref {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
