"""teacher: does SENN stop near the right size?  A student grows from one unit on data from a
random rational teacher of known width (``datasets.teacher_student``: 4 inputs, 6 hidden units,
1000 training / 1000 test points, noise 0.01), MSE, full batch NGD-CG.

SENNConfig: the trainer's defaults except ``steps=1000`` (the loss has flattened by then in
trial runs).  Issue 8's target - final width within a factor 2 of the teacher's on at least 4 of
5 seeds - is a sweep: ``senn-ref sweep teacher --seeds 0-4``; one run reports its own ratio.
"""
from __future__ import annotations

from .. import losses
from ..architectures import mlp
from ..datasets import teacher_student
from ..trainer import SENNConfig
from .task import Task

NAME = "teacher"
SUMMARY = "teacher-student regression: does the width stop near the teacher's 6 units?"
OPTIONS = {"teacher_width": 6, "n_train": 1000}


def task(seed: int = 0, quick: bool = False, teacher_width: int = 6, n_train: int = 1000) -> Task:
    """The teacher-student task (module docstring)."""
    X, Y, Xt, Yt, _ = teacher_student(n_train=n_train, n_test=1000, n_in=4, width=teacher_width, seed=seed)
    return Task(X, Y, Xt, Yt, losses.mse(), False,
                start=lambda: mlp([4, 1, 1], activation="rational", seed=seed),
                build=lambda widths: mlp([4, *widths, 1], activation="rational", seed=seed),
                config=SENNConfig(steps=1000), quick_steps=150,
                config_notes={"steps": "1000: the training loss has flattened by then"},
                info={"teacher_width": teacher_width, "n_train": n_train, "n_test": 1000, "noise": 0.01})


def targets(summary) -> dict:
    """Final width / teacher width, and whether it is within a factor 2."""
    ratio = sum(summary["hidden_widths"]) / summary["info"]["teacher_width"]
    return {"width_over_teacher": ratio, "met": bool(0.5 <= ratio <= 2.0)}
