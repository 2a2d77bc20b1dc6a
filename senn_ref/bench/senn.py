"""Overhead of growth: a SENN run against training its final architecture from scratch.

For each task, :func:`overhead` first runs :func:`senn_ref.train_senn` once to learn the final
architecture, then times side by side (:func:`senn_ref.bench.timing.compare`: warm-up,
interleaved rounds until the ratio is stable) two contenders:

* ``senn``  - ``train_senn`` from the small start network with the task's config;
* ``fixed`` - the same loop (``train_senn`` with ``width=False, depth=False``: same optimiser,
  same steps, same batches, same history evaluations) on a freshly initialised network of the
  final architecture, so that the ratio isolates what growth costs: scoring, proposal search,
  the growth operations and the optimiser's work on a network that changes under it.

Tasks: ``"teacher"`` (the paper's 1-D regression, from one hidden unit, 2000 full-batch
NGD-CG steps; ``quick``: 300) and ``"digits"`` (an MLP [64, 4, 10] on scikit-learn's 8x8
digits, softmax cross-entropy, NGD-CG on batches of 256, 600 steps, tau = 0.1: with the 1-D
task's tau = 1 it grows one unit in 600 steps; the paper's MNIST runs use tau = 0.007).  It prints the ratio, the SENN run's
split of time (train / score / search, from its log) and the final architecture.  Target:
ratio <= 1.5 (issue 7); ``derivations/21-trainer.md`` section 5 has the numbers.

``run(quick)`` is ``senn-ref bench senn``; it also prints the rate-bound and search tables of
:mod:`senn_ref.bench.senn_rounds`.  The fixed widths against SENN on the teacher task (test MSE,
not time) are ``senn-ref bench teacher`` (:mod:`senn_ref.bench.teacher`).
"""
from __future__ import annotations

from .. import losses
from .._validate import check_option
from ..architectures import mlp
from .timing import compare, progress, ratio_cell

TASKS = ("teacher", "digits")


def make_task(task: str, quick: bool = False, seed: int = 0):
    """``(start_net, X, Y, loss, config, build)`` of a task (module docstring); ``build(widths)``
    returns a freshly initialised network of those hidden widths.  ``derivations/21-trainer.md``
    section 5."""
    from ..trainer.config import SENNConfig
    check_option(task, TASKS, "task")
    if task == "teacher":
        from ..datasets import teacher_regression
        X, Y, _, _, _ = teacher_regression(seed=seed)
        cfg = SENNConfig(steps=300 if quick else 2000, quiet=True)
        return mlp([1, 1, 1], seed=seed), X, Y, losses.mse(), cfg, \
            (lambda widths: mlp([1, *widths, 1], seed=seed))
    from ..datasets import digits
    X, y, _, _ = digits(seed=seed, flat=True)
    cfg = SENNConfig(steps=120 if quick else 600, batch_size=256, expand_every=30, tau=0.1, quiet=True)
    return mlp([64, 4, 10], seed=seed), X, y, losses.softmax_cross_entropy(), cfg, \
        (lambda widths: mlp([64, *widths, 10], seed=seed))


def overhead(task: str, quick: bool = False, seed: int = 0, budget_seconds: float = 120.0,
             steps: int | None = None) -> dict:
    """Time ``senn`` against ``fixed`` (module docstring).  Returns {task, ratio, spread, stable,
    rounds, senn_seconds, fixed_seconds, widths, timing (the SENN run's log.timing)}.
    ``steps`` overrides the task's number of steps.  ``derivations/21-trainer.md`` section 5;
    ``tests/test_trainer.py::test_overhead_benchmark_times_senn_against_its_final_architecture``."""
    from ..grow.expansion_round import architecture
    from ..trainer.train_senn import train_senn
    start, X, Y, loss, cfg, build = make_task(task, quick, seed)
    if steps is not None:
        cfg = cfg.replace(steps=steps)
    _, log = train_senn(start.copy(), X, Y, loss, cfg, seed=seed)
    widths = log.final["widths"]
    fixed_cfg = cfg.replace(width=False, depth=False)

    def senn():
        train_senn(start.copy(), X, Y, loss, cfg, seed=seed)

    def fixed():
        net, _ = train_senn(build(widths), X, Y, loss, fixed_cfg, seed=seed)
        assert architecture(net) == widths

    res = compare({"senn": senn, "fixed": fixed}, baseline="fixed", warmup=1, min_rounds=5,
                  max_rounds=10, rtol=0.05, budget_seconds=budget_seconds, label=f"senn overhead, {task}")
    return {"task": task, "ratio": res["senn"].ratio, "cell": ratio_cell(res["senn"]), "stable": res.stable,
            "rounds": res.rounds, "senn_seconds": res["senn"].seconds, "fixed_seconds": res["fixed"].seconds,
            "widths": widths, "timing": dict(log.timing), "steps": cfg.steps}


def run(quick: bool = False) -> list[dict]:
    """``senn-ref bench senn``: the overhead table, then the rate-bound and search tables
    (``derivations/21-trainer.md`` section 5, ``19-criterion.md`` section 2, ``20`` section 1)."""
    rows = []
    for i, task in enumerate(TASKS, 1):
        progress(i, len(TASKS), f"senn overhead, {task}")
        rows.append(overhead(task, quick))
    print("SENN run / training its final architecture from scratch (same loop, optimiser, steps)")
    print(f"{'task':>8} {'steps':>5} {'final widths':>14} {'senn s':>7} {'fixed s':>7} {'ratio':>12} "
          f"{'stable':>6}  SENN time: train / score / search")
    for r in rows:
        t = r["timing"]
        print(f"{r['task']:>8} {r['steps']:>5} {str(r['widths']):>14} {r['senn_seconds']:7.2f} "
              f"{r['fixed_seconds']:7.2f} {r['cell']:>12} {str(r['stable']):>6}  "
              f"{t['train']:.2f} / {t['score']:.2f} / {t['search']:.2f} of {t['total']:.2f} s")
    print()
    from .senn_rounds import run as run_rounds
    run_rounds(quick)
    return rows
