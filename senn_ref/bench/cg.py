"""``senn-ref bench cg``: the CG solve in one compiled call against the Python CG loop.

Both contenders use the same operator products (the compiled GGN kernel of
:mod:`senn_ref.network_plan`) and give the same bits (``tests/test_cg_compiled.py``); they
differ only in where the CG iterations run: ``compiled`` is
:func:`senn_ref.natural_gradient.solve_fisher` (one Numba call, ``kernels/cg_numba.py``),
``python loop`` the same call under :func:`senn_ref.natural_gradient.python_loop`
(``cg_solve(op.matvec, ...)``), and ``before``: the Python loop with its dot products by the BLAS
``ddot`` (``a @ b``), as every CG ran before the compiled loop (the pairwise dot products of
09-fisher.md section 5 cost a little more in Python; ``before`` agrees with the other two to
rounding, checked to 1e-8 relative).  Rows, on the 1-D task's data
(``datasets.teacher_regression``, N = 50, or issue 12's ``bench peers`` data for the eta row):

* ``CG eta``: ``score.eta(curvature="cg", damping=0.1, tol=1e-10)`` on rational 1-16-1, the
  ``CG eta`` row of ``senn-ref bench peers`` (forward, gradient and CG);
* ``CG solve``: ``solve_fisher(op, g, tol=1e-10)`` on the same net at a fixed operator (the loop
  alone);
* ``NGD-CG step``: one :class:`~senn_ref.optim.NaturalGradientCG` step of the 1-D SENN demo's
  optimiser (lr 0.1, damping 0.1, cg_tol 1e-6, cg_maxiter 100, warm-started from the previous
  step's direction) on rational 1-12-1 (the default demo run's final width) and 1-4-1; each call
  first restores the parameters and the warm start (the same work every call).

Every row checks first that the contenders return the same numbers.  Timed with
:func:`senn_ref.bench.timing.compare` (ratios ``python loop`` / ``compiled`` and ``before`` /
``compiled``: > 1 means the compiled loop is faster).  24-sequential-fast-path.md section 7 has the numbers.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..architectures import mlp
from ..datasets import teacher_regression
from ..fisher.matvec import FisherOperator
from ..losses import mse
from .. import natural_gradient as _ng
from ..natural_gradient import cg_solve, python_loop, solve_fisher
from ..optim.ngd_cg import NaturalGradientCG
from ..score import eta
from ..testing import relative_error
from .timing import compare, machine, progress, ratio_cell


def _same(label: str, a, b, before=None) -> None:
    if not np.array_equal(np.asarray(a), np.asarray(b)):
        raise AssertionError(f"{label}: the compiled and the Python loop differ: {a} vs {b}")
    if before is not None and relative_error(before, a) > 1e-8:
        raise AssertionError(f"{label}: the BLAS-dot loop differs: {before} vs {a}")


@contextmanager
def blas_dot():
    """The Python loop's dot products by ``a @ b`` (BLAS ddot), as before the pairwise order."""
    saved = _ng._dot
    _ng._dot = lambda a, b: float(a @ b)
    try:
        with python_loop():
            yield
    finally:
        _ng._dot = saved


def eta_contenders(label: str) -> dict:
    X = np.random.default_rng(3).standard_normal((50, 1))
    Y, net = np.sin(3.0 * X), mlp([1, 16, 1], seed=0)

    def compiled():
        return eta(net, X, Y, mse(), curvature="cg", damping=0.1, tol=1e-10)

    def loop():
        with python_loop():
            return eta(net, X, Y, mse(), curvature="cg", damping=0.1, tol=1e-10)

    def before():
        with blas_dot():
            return eta(net, X, Y, mse(), curvature="cg", damping=0.1, tol=1e-10)
    _same(label, compiled(), loop(), before())
    return {"compiled": compiled, "python loop": loop, "before": before}


def solve_contenders(label: str) -> dict:
    X, Y, _, _, _ = teacher_regression(seed=0)
    op = FisherOperator(mlp([1, 16, 1], seed=0), X, mse(), damping=0.1)
    _, E = mse().value_and_grad(op.outputs, Y)
    g = op.vjp(E / X.shape[0])
    _same(label, solve_fisher(op, g, tol=1e-10)[0], cg_solve(op.matvec, g, tol=1e-10)[0])
    return {"compiled": lambda: solve_fisher(op, g, tol=1e-10), "python loop": lambda: cg_solve(op.matvec, g, tol=1e-10)}


@contextmanager
def _nothing():
    yield


def step_contenders(label: str, width: int) -> dict:
    X, Y, _, _, _ = teacher_regression(seed=0)
    out, results = {}, []
    for name in ("compiled", "python loop", "before"):
        net, opt = mlp([1, width, 1], seed=0), NaturalGradientCG(lr=0.1, damping=0.1, cg_tol=1e-6, cg_maxiter=100)
        for _ in range(3):                       # a few steps in: a warm start, as in a run
            opt.step(net, X, Y, mse())
        theta, state = net.get_flat(), opt.state_dict()

        def step(net=net, opt=opt, theta=theta, state=state,
                 context={"compiled": _nothing, "python loop": python_loop, "before": blas_dot}[name]):
            net.set_flat(theta)
            opt.load_state_dict(state)
            with context():
                opt.step(net, X, Y, mse())
            return net.get_flat()
        results.append(step())
        out[name] = step
    _same(label, *results)
    return out


def _settings(quick: bool) -> dict:
    return (dict(min_rounds=3, max_rounds=10, budget_seconds=6.0) if quick
            else dict(min_rounds=5, max_rounds=30, budget_seconds=20.0))


def run(quick: bool = False) -> list[dict]:
    """Print the table (module docstring); returns one dict per row: ``row``, ``compiled_s``,
    ``stable``, and per other contender (``python_loop``, ``before``; the solve row has no
    ``before``) ``{name}_s``, ``{name}_ratio`` (its time / compiled), ``{name}_spread``."""
    settings = _settings(quick)
    print(f"compiled CG loop vs the Python CG loop (same products, same bits); {machine()}\n")
    print("| row | compiled | python loop | before | python loop / compiled | before / compiled |\n"
          "| --- | --- | --- | --- | --- | --- |")
    rows = [("CG eta, rational 1-16-1, N=50, damping 0.1, tol 1e-10", eta_contenders),
            ("CG solve alone, rational 1-16-1, N=50, damping 0.1, tol 1e-10", solve_contenders),
            ("NGD-CG step, 1-D demo, rational 1-12-1, N=50", lambda L: step_contenders(L, 12)),
            ("NGD-CG step, 1-D demo, rational 1-4-1, N=50", lambda L: step_contenders(L, 4))]
    out = []
    for i, (label, make) in enumerate(rows, 1):
        progress(i, len(rows), label)
        res = compare(make(label), baseline="compiled", label=label, **settings)
        c, star = res["compiled"], "" if res.stable else "*"
        cells = [f"{res[n].seconds * 1e6:.3g} us" if n in res.timings else "-" for n in ("compiled", "python loop", "before")]
        cells += [ratio_cell(res[n]) + star if n in res.timings else "-" for n in ("python loop", "before")]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
        row = {"row": label, "compiled_s": c.seconds, "stable": res.stable}
        for n in ("python loop", "before"):
            if n in res.timings:
                key = n.replace(" ", "_")
                row.update({f"{key}_s": res[n].seconds, f"{key}_ratio": res[n].ratio, f"{key}_spread": res[n].spread})
        out.append(row)
    return out
