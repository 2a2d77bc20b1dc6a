"""The paper's first experiment as a table: fixed widths 1-32 against SENN on the teacher task.

Not a timing benchmark: ``senn-ref bench teacher`` prints
:func:`senn_ref.trainer.teacher_experiment.teacher_table` - per seed the whole-set test MSE,
the test MSE inside the training inputs' range and the share of the error from outside it,
for every fixed width and for SENN with the default config, then the issue-7 targets on both
(``derivations/21-trainer.md`` section 4 quotes it).  Full: seeds 0-4, 2000 steps (about a
minute per seed on one core); ``--quick``: seeds 0-1, 400 steps.
"""
from __future__ import annotations


def run(quick: bool = False, seeds=None, steps: int | None = None) -> dict:
    """``senn-ref bench teacher``: the table of the module docstring; returns teacher_table's dict.
    ``derivations/21-trainer.md`` section 4."""
    from ..trainer.teacher_experiment import STEPS, teacher_table
    if seeds is None:
        seeds = range(2) if quick else range(5)
    if steps is None:
        steps = 400 if quick else STEPS
    return teacher_table(seeds=seeds, steps=steps)
