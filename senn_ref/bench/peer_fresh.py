"""The first training step of the 1-D task in a fresh process: senn-ref, JAX and PyTorch.

One row of ``senn-ref bench peers``.  Every number is seconds from just before a new Python
process is started to the end of its first training step on ``regression1d``'s task (50
points, the starting network ``mlp([1, 1, 1])``, seed 0), interpreter start-up, imports
and compilation included:

* ``senn-ref, empty Numba cache`` - :func:`senn_ref.bench.coldstart.run_child` with a new
  empty ``NUMBA_CACHE_DIR``: ``train_senn`` until its first (NGD-CG) step is done, every
  kernel compiled (what a fresh install without the warm-up pays);
* ``senn-ref after senn-ref warmup dense`` - a new empty folder filled by
  ``warm("dense")`` in a process before (the README's install line), then the same child;
* ``jax.jit`` / ``torch`` - a child that imports NumPy and the framework, loads the same
  data and starting parameters (written by the parent to an ``.npz``), builds the network
  from the same formulas as :mod:`senn_ref.bench.peer_jax` / :mod:`senn_ref.bench.peer_torch`
  and takes one SGD step (lr 0.1, MSE ``0.5 sum(R^2) / N``; jax's step jitted, its compile
  time included).  The parent checks the child's loss and updated parameters against
  senn-ref's ``loss_and_grad`` and ``p - lr g`` (relative 1e-10) before using its time.

senn-ref's first step is the trainer's NGD-CG step (a CG solve, more work than one SGD
step); the peers' is a plain SGD step, as a user of those frameworks would start.  Rounds
are interleaved (every contender once per round); :func:`measure` returns the times.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import coldstart

LR = 0.1

# The peers' child.  argv: framework, npz path.  Prints one JSON line of absolute stamps.
_CHILD = r"""
import json, sys, time
import numpy as np
which, path = sys.argv[1], sys.argv[2]
if which == "torch":
    import torch as fw
    lib = fw
else:
    import jax as fw
    fw.config.update("jax_enable_x64", True)
    lib = fw.numpy
stamps = {"import": time.time()}
d = np.load(path)
kinds, N, lr = [str(k) for k in d["kinds"]], d["X"].shape[0], float(d["lr"])
names = sorted(k for k in d.files if k.startswith("p"))
conv = fw.from_numpy if which == "torch" else lib.asarray
params, X, Y = [conv(d[k].copy()) for k in names], conv(d["X"]), conv(d["Y"])

def f(ps, X):
    i = 0
    for kind in kinds:
        if kind == "dense":
            X = X @ ps[i].T + ps[i + 1]
            i += 2
        elif kind == "tanh":
            X = lib.tanh(X)
        else:
            v, c, l = ps[i:i + 3]
            i += 3
            X = ((2.0 * v * X + c) / (1.0 + X * X) + l * X) / lib.sqrt(v * v + c * c + l * l + float(d["eps"]))
    return X

def value(ps):
    R = f(ps, X) - Y
    return 0.5 * (R * R).sum() / N

if which == "torch":
    for p in params:
        p.requires_grad_(True)
    loss = value(params)
    loss.backward()
    with fw.no_grad():
        for p in params:
            p -= lr * p.grad
    loss, new = float(loss), [p.detach().numpy() for p in params]
else:
    @fw.jit
    def step(ps):
        out, g = fw.value_and_grad(value)(ps)
        return out, [p - lr * gp for p, gp in zip(ps, g)]
    loss, new = step(params)
    fw.block_until_ready(new)
    loss, new = float(loss), [np.asarray(p) for p in new]
stamps["first_step"] = time.time()
print(json.dumps({"stamps": stamps, "loss": loss, "params": [p.ravel().tolist() for p in new]}))
"""


def task_arrays():
    """``(net, X, Y, loss)`` of ``regression1d`` as :func:`coldstart.child_setup` builds them."""
    net, X, Y, loss, _ = coldstart.child_setup("regression1d")
    return net, X, Y, loss


def write_task(path: str):
    """Write the task's data and starting parameters for the peers' child; returns senn-ref's
    loss and parameters after one SGD step ``p - lr g`` (the numbers the child must give)."""
    from ..layers.activations import Tanh
    from ..layers.dense import Dense
    net, X, Y, loss = task_arrays()
    kinds = ["dense" if isinstance(l, Dense) else "tanh" if isinstance(l, Tanh) else "rational"
             for l in net.layers]
    params = list(net.named_params().values())
    np.savez(path, X=X, Y=Y, kinds=np.array(kinds), lr=LR, eps=1e-8,
             **{f"p{i:03d}": p for i, p in enumerate(params)})
    value, grads = net.loss_and_grad(X, Y, loss)
    return value, [p - LR * g for p, g in zip(params, grads.grads.values())]


def run_peer(which: str, path: str) -> tuple[float, dict]:
    """``(seconds, report)``: seconds from spawn to the end of the first step of a fresh
    ``which`` ("jax" or "torch") child on the task in ``path``; the report has its ``loss``
    and updated ``params`` (lists, named_params order) for :func:`check_peer`, and
    ``import_s`` (seconds from spawn to NumPy and the framework imported)."""
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", _CHILD, which, path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"peers: the {which} fresh-process child failed:\n{out.stderr[-2000:]}")
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    rep["import_s"] = rep["stamps"]["import"] - t0
    return rep["stamps"]["first_step"] - t0, rep


def check_peer(which: str, rep: dict, expected) -> None:
    """AssertionError unless the child's loss and parameters equal ``expected = (loss,
    params)`` from :func:`write_task` (relative 1e-10; parameters relative to each array's
    largest entry)."""
    loss, params = expected
    err = max(np.max(np.abs(np.ravel(a) - b.ravel())) / max(np.max(np.abs(b)), 1e-300)
              for a, b in zip(rep["params"], params))
    if not (len(rep["params"]) == len(params) and abs(rep["loss"] - loss) <= 1e-10 * abs(loss)
            and err <= 1e-10):
        raise AssertionError(f"peers fresh process: {which}'s first step differs from senn-ref's "
                             f"(loss {rep['loss']!r} vs {loss!r}, parameters {err:.2e})")


def measure(rounds: int, peers) -> dict:
    """``{"cold": [...], "warmup": [...], "warmup_s": [...], peer: [...], "import_s": {name:
    [...]}}``: seconds per round (module docstring) for each name in ``peers`` (a subset of
    "jax.jit", "torch"); ``import_s`` has the seconds to the imports done ("senn-ref": both
    of its children per round)."""
    res = {"cold": [], "warmup": [], "warmup_s": [], "import_s": {"senn-ref": []}}
    res.update({p: [] for p in peers})
    res["import_s"].update({p: [] for p in peers})
    with tempfile.TemporaryDirectory(prefix="senn-peers-fresh-") as tmp:
        path = os.path.join(tmp, "task.npz")
        expected = write_task(path)
        for r in range(rounds):
            cold, installed = os.path.join(tmp, f"cold{r}"), os.path.join(tmp, f"warmup{r}")
            os.mkdir(cold)
            os.mkdir(installed)
            rep = coldstart.run_child("regression1d", "numba", cold)
            res["cold"].append(rep["first_step_s"])
            res["import_s"]["senn-ref"].append(rep["import_s"])
            for p in peers:
                which = "jax" if p == "jax.jit" else "torch"
                seconds, rep = run_peer(which, path)
                check_peer(which, rep, expected)
                res[p].append(seconds)
                res["import_s"][p].append(rep["import_s"])
            res["warmup_s"].append(coldstart.run_warmup(installed, parts=("dense",)))
            rep = coldstart.run_child("regression1d", "numba", installed)
            if rep["compiled"]:
                raise AssertionError(f"peers fresh process: {rep['compiled']} kernels compiled after warm-up")
            res["warmup"].append(rep["first_step_s"])
            res["import_s"]["senn-ref"].append(rep["import_s"])
    return res
