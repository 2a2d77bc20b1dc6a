"""The baselines every demo's summary compares SENN with (issue 8, item 4).

* ``final_from_scratch`` - SENN's final architecture, freshly initialised, trained with the same
  optimiser and number of steps (growth off);
* ``fixed_start`` - the starting architecture, never grown;
* ``random_proposals`` - growth with unoptimised candidates (``SENNConfig.search="random"``);
* ``fixed_width_sweep`` - one fixed network per width in ``Task.fixed_widths`` (regression1d,
  digits), so that "SENN finds a good size without being told" is measured;
* ``gradmax`` - GradMax-like growth: the same start, config, seed, steps and tau with proposals
  and eta_c scored by the Euclidean gradient norm instead of the natural score
  (``SENNConfig.score="euclidean"``, width only; ``derivations/23-euclidean-gain.md`` section 5);
  a demo whose start has no hidden layer to widen (``moons``) reports it as not applicable.

Every run goes through :func:`senn_ref.trainer.train_senn` (growth off is plain training through
the same loop), with the demo's seed.
"""
from __future__ import annotations

import time

from ..train import evaluate
from ..trainer import train_senn
from ..trainer.teacher_experiment import mse_of

#: the ``gradmax`` entry of a demo whose start has no hidden layer (width growth has nothing to widen)
GRADMAX_NOT_APPLICABLE = ("not applicable: the starting network has no hidden layer to widen (this demo "
                          "grows by depth only, which the Euclidean score does not cover)")


def measure(task, net, seconds: float) -> dict:
    """Train / test loss (and accuracy), widths, parameters and seconds of a trained ``net``."""
    from ..grow.expansion_round import architecture, num_linear_layers
    train_loss, _ = evaluate(net, task.X, task.Y, task.loss)
    test_loss, test_acc = evaluate(net, task.X_test, task.Y_test, task.loss)
    row = {"train_loss": train_loss, "test_loss": test_loss, "hidden_widths": architecture(net),
           "num_layers": num_linear_layers(net), "num_params": int(net.num_params()),
           "wall_seconds": round(seconds, 3)}
    if task.classification:
        row["test_accuracy"] = test_acc
        row["accuracy_per_kparam"] = test_acc / (net.num_params() / 1000.0)
    else:
        row["test_mse"] = mse_of(net, task.X_test, task.Y_test)
    return row


def train_fixed(task, net, config, seed: int) -> dict:
    """Train ``net`` without growth (same loop, optimiser and steps as ``config``); :func:`measure`."""
    t0 = time.perf_counter()
    net, _ = train_senn(net, task.X, task.Y, task.loss,
                        config.replace(width=False, depth=False, prune=False, quiet=True),
                        seed=seed)
    return measure(task, net, time.perf_counter() - t0)


def gradmax_baseline(task, config, seed: int) -> dict:
    """The GradMax-like run (module docstring): :func:`measure` of SENN trained from the demo's
    start with ``score="euclidean"`` and ``depth=False``, plus its accepted/rejected width
    proposals; ``{"status": GRADMAX_NOT_APPLICABLE}`` when the start has no hidden layer."""
    from ..grow.structure import growable_layers
    start = task.start()
    if not growable_layers(start):
        return {"status": GRADMAX_NOT_APPLICABLE}
    t0 = time.perf_counter()
    net, log = train_senn(start, task.X, task.Y, task.loss,
                          config.replace(score="euclidean", depth=False, gain="lower_bound", quiet=True),
                          seed=seed)
    row = measure(task, net, time.perf_counter() - t0)
    row["expansions_accepted"] = log.count("width")
    row["expansions_rejected"] = log.count("width", False)
    return row


def run_baselines(task, config, seed: int, final_widths, progress=print) -> dict:
    """All baselines (module docstring) as {name: measurement dict}; ``progress`` gets one line each."""
    out = {}
    progress(f"baseline: final architecture {final_widths} from scratch")
    out["final_from_scratch"] = train_fixed(task, task.build(list(final_widths)), config, seed)
    progress("baseline: starting architecture kept fixed")
    out["fixed_start"] = train_fixed(task, task.start(), config, seed)
    progress("baseline: growth with random (unoptimised) proposals")
    t0 = time.perf_counter()
    net, _ = train_senn(task.start(), task.X, task.Y, task.loss, config.replace(search="random", quiet=True), seed=seed)
    out["random_proposals"] = measure(task, net, time.perf_counter() - t0)
    if task.fixed_widths:
        out["fixed_width_sweep"] = {}
        for w in task.fixed_widths:
            progress(f"baseline: fixed width {w}")
            out["fixed_width_sweep"][str(w)] = train_fixed(task, task.build([w]), config, seed)
    for name, make in task.extra_baselines.items():
        progress(f"baseline: {name}")
        out[name] = train_fixed(task, make(), config, seed)
    progress("baseline: GradMax-like growth (Euclidean gradient-norm scoring)")
    out["gradmax"] = gradmax_baseline(task, config, seed)
    return out
