"""``RunCheckpoints``: everything ``train_senn`` does about checkpoints, resuming, Ctrl-C and
numerical failures, so that the trainer only calls it at four places.

    run = RunCheckpoints(checkpoint_dir, checkpoint_every, checkpoint_seconds, resume)   # checks args
    run.identify(config, seed, net, X, Y, X_val, Y_val)     # fingerprints of this run
    saved = run.resume_from()                               # RunFile or None (says which)
    if saved: state, log = run.restore(saved, net, opt, rngs, N)
    ... after every step:  run.step_done(step, round_ran, capture)
    ... on a non-finite loss / parameter / factor:  raise run.failure(step, what, log)
    run.finish(next_step, capture)                          # the final state, for a later resume

``capture(next_step)`` returns ``(net, opt, TrainerState, log[, callback])`` and is only called when a checkpoint is
due: every ``every`` steps, after every step that ran an expansion round (``after_rounds``),
when ``seconds`` have passed since the last save, and when Ctrl-C was pressed inside
:func:`interrupt.deferred_interrupt`.  Which of these fire never changes the run: a checkpoint
only reads the state (``derivations/22-run-checkpoints.md`` section 1).
Resuming checks that the folder's newest checkpoint belongs to the same run - equal config
(``quiet`` aside), seed, data and starting network - and refuses it otherwise, naming the file
and the differing fields.  ``tests/test_resume.py``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np

from .._validate import check_flag, check_positive_int, check_scalar
from ..checkpoint import NPZ_TMP_SUFFIX, TMP_PREFIX
from ..demo_regression import check_out_dir
from ..optim.kfac import KFAC
from . import interrupt
from .files import list_runs, read_run, write_run
from .state import restore_callback, restore_log, restore_optimizer_state, restore_trainer


class CheckpointError(ValueError):
    """A run checkpoint cannot be resumed: unreadable, corrupt, of another version or of another
    run.  The message starts with the file's path."""


class NumericalFailure(FloatingPointError):
    """A non-finite loss, parameter, gradient or curvature factor stopped the run.  ``step``: where;
    ``checkpoint``: the last good checkpoint (None without a folder); ``log``: the run's log, whose
    last event (kind ``"numerical_failure"``) records this."""

    def __init__(self, message: str, step: int, checkpoint, log) -> None:
        super().__init__(message)
        self.step, self.checkpoint, self.log = step, checkpoint, log


def fingerprint(*arrays) -> str:
    """SHA-256 (hex) of arrays' dtypes, shapes and bytes (None entries count as absent)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"\0none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"\0{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def non_finite(net, opt) -> str | None:
    """Name of the first non-finite parameter or optimiser/curvature state array, else None."""
    for key, p in net.named_params().items():
        if not np.isfinite(p).all():
            return f"parameter {key}"
    if isinstance(opt, KFAC):
        for name, f in opt.factors.items():
            if not (np.isfinite(f.A).all() and np.isfinite(f.G).all()):
                return f"K-FAC factor of {name}"
        for name, b in opt.blocks.items():
            if not np.isfinite(b).all():
                return f"K-FAC block of {name}"
    elif hasattr(opt, "_state"):
        for key, slots in opt._state.items():
            for slot, a in slots.items():
                if a.dtype.kind == "f" and not np.isfinite(a).all():
                    return f"optimiser state {key}/{slot}"
    return None


class RunCheckpoints:
    """See the module docstring.  Arguments are checked here, before any state changes:
    folder None (no checkpoints; Ctrl-C still stops at a step boundary) or a path (created);
    every None or an int >= 1; seconds None or a number > 0; resume a bool (needs a folder)."""

    def __init__(self, folder=None, every=None, seconds=None, resume=False, after_rounds=False,
                 quiet=True) -> None:
        if folder is not None and not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"checkpoint_dir: expected a path, got {type(folder).__name__}")
        if every is not None:
            check_positive_int(every, "checkpoint_every")
        if seconds is not None:
            if not isinstance(seconds, (int, float, np.integer, np.floating)):
                raise TypeError(f"checkpoint_seconds: expected a number of seconds, got {type(seconds).__name__}")
            seconds = check_scalar(seconds, "checkpoint_seconds", minimum=0.0, strict=True)
        for name, flag in (("resume", resume), ("checkpoint_rounds", after_rounds)):
            check_flag(flag, name)
        if folder is None and (resume or every is not None or seconds is not None):
            raise ValueError("checkpoint_dir: resume, checkpoint_every and checkpoint_seconds need a "
                             "checkpoint folder")
        self.folder = None if folder is None else os.fspath(folder)
        self.every, self.seconds, self.resume, self.after_rounds = every, seconds, bool(resume), bool(after_rounds)
        self.quiet, self.identity, self.last_path, self.last_step = quiet, None, None, None
        self.last_time = time.monotonic()

    def _say(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(text + "\n")

    def identify(self, config, seed, net, X, Y, X_val=None, Y_val=None) -> None:
        """Record what makes this run this run (checked on resume); creates the folder."""
        from ..checkpoint import network_payload
        meta, arrays = network_payload(net)
        start = fingerprint(np.frombuffer(repr(meta).encode(), np.uint8), *[arrays[k] for k in sorted(arrays)])
        cfg = {k: v for k, v in config.to_dict().items() if k != "quiet"}
        if cfg.get("lr_schedule") == "constant":   # the default: checkpoints from before the field resume
            cfg.pop("lr_schedule")
        self.identity = {"config": cfg, "seed": int(seed), "data": fingerprint(X, Y, X_val, Y_val),
                         "start_network": start}
        if self.folder is not None:
            try:
                check_out_dir(self.folder)
            except OSError as exc:
                raise OSError(f"checkpoint_dir: {exc}".replace("out_dir: ", "")) from exc

    def resume_from(self):
        """The newest checkpoint of this run (a :class:`files.RunFile`), or None to start afresh.
        Temporary files of writes that a kill interrupted are deleted first."""
        if not self.resume:
            return None
        for name in os.listdir(self.folder):      # torn writes of a killed run: never read, removed
            if name.startswith(TMP_PREFIX) and name.endswith(NPZ_TMP_SUFFIX):
                os.remove(os.path.join(self.folder, name))
        runs = list_runs(self.folder)
        if not runs:
            self._say(f"resume: no checkpoint in {self.folder} yet; starting from step 0")
            return None
        step, path = runs[-1]
        try:
            saved = read_run(path)
        except ValueError as exc:
            older = f"; the previous checkpoint {runs[-2][1]} may be loadable: move {path} away " \
                    f"to resume from it" if len(runs) > 1 else ""
            raise CheckpointError(f"{exc}{older}") from exc
        diff = [k for k in ("seed", "data", "start_network") if saved.identity.get(k) != self.identity[k]]
        old_cfg = saved.identity.get("config", {})
        diff += [f"config.{k} ({old_cfg.get(k)!r} in the file, {v!r} now)"
                 for k, v in self.identity["config"].items() if old_cfg.get(k) != v]
        if diff:
            raise CheckpointError(f"{path}: belongs to a different run (differs in {', '.join(diff)}); "
                                  f"resume with the original settings or use another checkpoint_dir")
        self._say(f"resume: continuing from {path} (step {step})")
        return saved

    def restore(self, saved, net, opt, rngs, n_examples, callback=None):
        """Load ``saved`` into the fresh optimiser ``opt``, the random streams ``rngs``, ``net``
        (whose layers are replaced by the saved ones) and a callback with ``load_state_dict``;
        returns ``(TrainerState, SENNLog)``.  Everything is checked before anything is changed
        (:class:`CheckpointError` otherwise)."""
        try:
            return self._restore(saved, net, opt, rngs, n_examples, callback)
        except ValueError as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(str(exc)) from exc

    def _restore(self, saved, net, opt, rngs, n_examples, callback):
        state = restore_trainer(saved.trainer, saved.arrays, n_examples, len(rngs), saved.path)
        log = restore_log(saved.log, saved.path)
        opt_state = restore_optimizer_state(saved.optimizer, saved.arrays, opt, saved.path)
        cb_state = restore_callback(saved.callback, saved.arrays, saved.path)
        if (cb_state is not None) != hasattr(callback, "load_state_dict"):
            raise ValueError(f"{saved.path}: the checkpoint {'holds' if cb_state is not None else 'has no'} "
                             f"callback state but the callback {'has no' if cb_state is not None else 'has a'} "
                             f"load_state_dict")
        used = {"trainer/order"} | {k for k in saved.arrays if k.startswith(("opt/", "callback/"))}
        if set(saved.arrays) != used:
            raise ValueError(f"{saved.path}: arrays {sorted(set(saved.arrays) - used)} belong to nothing")
        try:
            opt.load_state_dict(opt_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{saved.path}: optimiser state: {exc}") from exc
        if cb_state is not None:
            callback.load_state_dict(cb_state)
        for rng, s in zip(rngs, state.rng_states):
            rng.bit_generator.state = s
        net.layers, net._name_counts = saved.net.layers, saved.net._name_counts
        self.last_path, self.last_step = saved.path, state.step
        return state, log

    def step_done(self, step: int, round_ran: bool, capture) -> None:
        """After step ``step``: write a checkpoint if one is due; on Ctrl-C write one and raise
        :class:`interrupt.RunInterrupted`."""
        stop = interrupt.requested()
        if self.folder is not None:
            due = (stop or (self.every is not None and (step + 1) % self.every == 0)
                   or (self.after_rounds and round_ran)
                   or (self.seconds is not None and time.monotonic() - self.last_time >= self.seconds))
            if due:
                self.save(step + 1, capture)
        if stop:
            interrupt.clear()
            raise interrupt.RunInterrupted(step + 1, self.last_path if self.folder else None)

    def save(self, next_step: int, capture) -> str | None:
        """Write the checkpoint whose next step is ``next_step`` (nothing without a folder)."""
        if self.folder is None:
            return None
        net, opt, state, log, *callback = capture(next_step)
        bad = non_finite(net, opt)
        if bad is not None:
            raise self.failure(next_step - 1, f"{bad} is not finite", log)
        self.last_path = write_run(self.folder, next_step, net, opt, state, log, self.identity,
                                   callback[0] if callback else None)
        self.last_time, self.last_step = time.monotonic(), next_step
        return self.last_path

    def finish(self, next_step: int, capture) -> None:
        """The checkpoint of the run's last state (unless that one is already on disk), so that a
        resume after training only redoes what followed it."""
        if self.folder is not None and self.last_step != next_step:
            self.save(next_step, capture)

    def failure(self, step: int, what: str, log) -> NumericalFailure:
        """The error to raise for a numerical failure at ``step``; records it in ``log`` (and, with a
        folder, in ``failure-log.json`` there).  The checkpoints on disk are left as they are."""
        keep = self.last_path or (list_runs(self.folder)[-1][1] if self.folder and list_runs(self.folder) else None)
        where = (f"the last good checkpoint is {keep}; resume=True continues from it (lower lr or raise "
                 f"damping first)" if keep else "no checkpoint was written")
        message = f"train_senn: numerical failure at step {step}: {what}; {where}"
        log.events.append({"kind": "numerical_failure", "step": int(step), "accepted": False,
                           "what": what, "checkpoint": keep})
        if self.folder is not None:
            log.to_json(os.path.join(self.folder, "failure-log.json"))
        return NumericalFailure(message, step, keep, log)
