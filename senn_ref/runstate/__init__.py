"""Run checkpoints: save a whole SENN run (network, optimiser incl. K-FAC, trainer position and
random streams, log), resume it bit for bit, stop cleanly on Ctrl-C and on numerical failures.

``state.py`` what is stored besides the network; ``files.py`` the file format, atomic writes and
the last two kept; ``checkpoints.py`` what ``train_senn`` calls; ``interrupt.py`` Ctrl-C at a step
boundary.  ``derivations/22-run-checkpoints.md``; ``tests/test_run_state.py``,
``tests/test_resume.py``.
"""
from .checkpoints import CheckpointError, NumericalFailure, RunCheckpoints, fingerprint, non_finite
from .files import KEEP, RunFile, list_runs, read_run, run_path, write_run
from .interrupt import RunInterrupted, deferred_interrupt
from .state import TrainerState, optimizer_payload, restore_optimizer_state, restore_trainer

__all__ = ["KEEP", "CheckpointError", "NumericalFailure", "RunCheckpoints", "RunFile", "RunInterrupted", "TrainerState",
           "deferred_interrupt", "fingerprint", "list_runs", "non_finite", "optimizer_payload", "read_run",
           "restore_optimizer_state", "restore_trainer", "run_path", "write_run"]
