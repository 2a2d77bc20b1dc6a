"""Fault injection against ``senn-ref demo``: kill, interrupt and damage runs, resume them, compare.

``python -m senn_ref.runstate.faults [--demo regression1d] [--out DIR]`` runs the demo once
uninterrupted, then once per fault in a subprocess (SIGKILL at several moments, SIGKILL twice
in a row, SIGKILL between a checkpoint's fsync and its rename, Ctrl-C, a double Ctrl-C, a failing
disk write, the newest checkpoint truncated or byte-flipped after a kill, NaN written into the
weights), resumes each with ``--resume`` until it finishes, and prints a Markdown table: the
fault, what the run did, runs lost (a run is lost when no resume can finish it) and whether the
resumed run equals the uninterrupted one - network bit for bit, ``events.json`` and
``summary.json`` apart from wall times.  The README's fault-injection table is its output.
``derivations/22-run-checkpoints.md``; the same faults on tiny runs: ``tests/test_resume.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

#: python code run before the CLI in the faulty subprocesses; FAULT selects the injection
PRELUDE = r"""
import os, signal, sys
# Ctrl-C is injected with SIGINT: take it even when this tool runs in the background, where the
# children inherit SIGINT ignored (and the demo's checkpoint handler would keep ignoring it)
signal.signal(signal.SIGINT, signal.default_int_handler)
fault, calls = os.environ.get("SENN_REF_FAULT", ""), []
real_replace = os.replace
def replace(a, b):
    if os.path.basename(str(b)).startswith("run-"):
        calls.append(b)
        if len(calls) == 4 and fault == "kill-in-write":
            os.kill(os.getpid(), signal.SIGKILL)
        if len(calls) == 4 and fault == "disk-error":
            raise OSError(28, "No space left on device (injected)")
    return real_replace(a, b)
os.replace = replace
if fault == "nan":
    import senn_ref.demos.runner as runner
    real = runner.train_senn
    def poisoned(*a, callback=None, **kw):
        def cb(step, net, log):
            if step == 700:
                net.layers[0].params["W"][0, 0] = float("nan")
            return callback(step, net, log) if callback else False
        if hasattr(callback, "state_dict"):
            cb.state_dict, cb.load_state_dict = callback.state_dict, callback.load_state_dict
        return real(*a, callback=cb, **kw)
    runner.train_senn = poisoned
from senn_ref.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(out, demo, resume=False, fault=""):
    argv = [sys.executable, "-c", PRELUDE, "demo", demo, "--out", out, "--no-baselines", "--quiet"]
    env = dict(os.environ, SENN_REF_FAULT=fault)
    return subprocess.Popen(argv + (["--resume"] if resume else []), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_after(proc, seconds, folder=None, sig=signal.SIGKILL, twice=False) -> int:
    """Send ``sig`` ``seconds`` after the first checkpoint appeared in ``folder`` (after the start
    without a folder); returns the exit code."""
    deadline = time.monotonic() + 120
    while folder is not None and _newest(folder) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(seconds)
    proc.send_signal(sig)
    if twice:
        time.sleep(0.05)
        proc.send_signal(sig)
    proc.wait()
    return proc.returncode


def _newest(folder):
    from . import list_runs
    runs = list_runs(folder)
    return runs[-1][1] if runs else None


def _finish(out, demo, notes, max_resumes=4) -> bool:
    """Resume until the run finishes; a newest checkpoint that is refused is moved away once."""
    for _ in range(max_resumes):
        p = _cli(out, demo, resume=True)
        _, err = p.communicate()
        if p.returncode == 0:
            return True
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}"
        notes.append(f"resume refused: {last[:160]}")
        if "move" in last and "away" in last:
            bad = _newest(os.path.join(out, demo, "checkpoints"))
            shutil.move(bad, bad + ".refused")
    return False


def _same(a, b) -> str:
    from ..checkpoint import load
    x, y = load(os.path.join(a, "network.npz")), load(os.path.join(b, "network.npz"))
    same_net = [la.name for la in x.layers] == [la.name for la in y.layers] and np.array_equal(x.get_flat(), y.get_flat())
    logs = []
    for d in (a, b):
        e = json.load(open(os.path.join(d, "events.json")))
        e.pop("timing")
        for r in e["rounds"]:
            r.pop("seconds_score"), r.pop("seconds_search")
        s = json.load(open(os.path.join(d, "summary.json")))
        for k in ("wall_seconds", "total_seconds"):
            s.pop(k, None)
        s["senn"].pop("wall_seconds", None)
        logs.append((e, s))
    return "yes" if same_net and logs[0] == logs[1] else \
        f"NO (network {same_net}, events {logs[0][0] == logs[1][0]}, summary {logs[0][1] == logs[1][1]})"


def run(demo="regression1d", out="senn-ref-faults") -> list:
    os.makedirs(out, exist_ok=True)
    ref = os.path.join(out, "reference")
    p = _cli(ref, demo)
    p.communicate()
    rows = []

    def case(name, start):
        folder = os.path.join(out, f"fault{len(rows)}")
        notes = [start(folder)]
        ok = _finish(folder, demo, notes)
        rows.append((name, "; ".join(n for n in notes if n), 0 if ok else 1,
                     _same(os.path.join(folder, demo), os.path.join(ref, demo)) if ok else "-"))

    def ck(f):
        return os.path.join(f, demo, "checkpoints")
    for t in (0.0, 1.5, 3.5):
        case(f"SIGKILL {t} s after the first checkpoint",
             lambda f, t=t: f"killed (exit {_kill_after(_cli(f, demo), t, ck(f))}) after "
             f"{os.path.basename(_newest(ck(f)) or 'none')}")

    def twice(f):
        a = _kill_after(_cli(f, demo), 1.0, ck(f))
        first = os.path.basename(_newest(ck(f)))
        b = _kill_after(_cli(f, demo, resume=True), 1.5)
        return f"killed after {first} (exit {a}), resumed, killed again after " \
               f"{os.path.basename(_newest(ck(f)))} (exit {b})"
    case("SIGKILL, resume, SIGKILL again", twice)

    def in_write(f):
        p = _cli(f, demo, fault="kill-in-write")
        p.communicate()
        tmp = [n for n in os.listdir(os.path.join(f, demo, "checkpoints")) if n.endswith(".tmp")]
        return f"killed inside the 4th checkpoint write (exit {p.returncode}, {len(tmp)} torn temporary file left)"
    case("SIGKILL between fsync and rename", in_write)

    def ctrl_c(f, twice=False):
        p = _cli(f, demo)
        _kill_after(p, 1.0, ck(f), signal.SIGINT, twice)
        _, err = p.communicate()
        return f"exit {p.returncode}: " + (err.strip().splitlines()[-1][:150] if err.strip() else "")
    case("Ctrl-C", ctrl_c)
    case("Ctrl-C twice", lambda f: ctrl_c(f, twice=True))

    def disk(f):
        p = _cli(f, demo, fault="disk-error")
        _, err = p.communicate()
        return f"exit {p.returncode}: {err.strip().splitlines()[-1][:120]}"
    case("disk error during the 4th checkpoint write", disk)

    def damage(f, how):
        _kill_after(_cli(f, demo), 1.0, ck(f))
        newest = _newest(ck(f))
        raw = bytearray(open(newest, "rb").read())
        if how == "truncate":
            raw = raw[: len(raw) // 2]
        else:
            raw[len(raw) // 3] ^= 0x10
        open(newest, "wb").write(bytes(raw))
        return f"SIGKILL, then {os.path.basename(newest)} {'truncated' if how == 'truncate' else 'byte-flipped'}"
    case("newest checkpoint truncated", lambda f: damage(f, "truncate"))
    case("newest checkpoint byte-flipped", lambda f: damage(f, "flip"))

    def nan(f):
        p = _cli(f, demo, fault="nan")
        _, err = p.communicate()
        return f"exit {p.returncode}: {err.strip().splitlines()[-1][:200]}"
    case("NaN written into a weight at step 700", nan)
    return rows


def table(rows, out: str) -> str:
    lines = ["| fault | what happened | runs lost | resumed run equal |", "|---|---|---|---|"]
    lines += [f"| {a} | {b.replace('|', '/')} | {c} | {d} |" for a, b, c, d in rows]
    lines = [line.replace(out, "OUT") for line in lines]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m senn_ref.runstate.faults")
    p.add_argument("--demo", default="regression1d")
    p.add_argument("--out", default="senn-ref-faults")
    args = p.parse_args(argv)
    print(table(run(args.demo, args.out), args.out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
