"""``train_senn``: train a network while it grows - the whole SENN method in one call.

Loop (``derivations/21-trainer.md``):

    for step = 0 .. steps-1:
        if step >= warmup and step > 0 and step % expand_every == 0:
            expansion round on the scoring batch (senn_ref.grow.expansion_round),
            optimiser state carried through every change; optional pruning round
        one optimiser step on a batch (full batch, or a reshuffled mini-batch)
        every history_every steps: train / validation loss (and accuracy)

Randomness: one ``numpy.random.SeedSequence(seed)`` is split into independent streams for
the batches, the proposal search and the scoring subset, so the same seed gives the same
log and the same weights.  ``tests/test_trainer.py``.

Checkpoints (``senn_ref/runstate/``, ``derivations/22-run-checkpoints.md``): with
``checkpoint_dir`` the whole run state is saved between steps (every ``checkpoint_every`` steps,
after every expansion round with ``checkpoint_rounds``, every ``checkpoint_seconds``, on Ctrl-C
inside ``runstate.deferred_interrupt`` and at the end); ``resume=True`` continues from the newest
one and ends bit for bit where the uninterrupted run ends.  A non-finite loss, parameter,
gradient or curvature factor raises ``runstate.NumericalFailure`` and keeps the last good
checkpoint.  ``tests/test_resume.py``.

Numerical fallbacks (CG stopped early, an ill-conditioned or pseudo-inverted curvature inverse;
``senn_ref/fallbacks.py``) met during a step or a round are recorded in ``log.events`` (kind
``"fallback"``, consecutive repeats merged) and counted in ``log.final["numerical_fallbacks"]``;
the warnings themselves still go through the ``warnings`` filters.
``derivations/22-run-checkpoints.md`` section 5; ``tests/test_fallbacks.py``.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .._validate import check_network, check_positive_int
from ..fallbacks import count_fallbacks, log_fallbacks, recording
from ..grow.criterion import rate_bound
from ..grow.expansion_round import RoundState, architecture, expansion_round, num_linear_layers
from ..grow.structure import growable_layers, is_linear_map
from ..losses.base import check_loss
from ..optim import SGD, Adam, KFAC, NaturalGradientCG
from ..runstate import RunCheckpoints, TrainerState, non_finite
from ..train import check_training_data, evaluate
from .config import SENNConfig
from .log import SENNLog
from .lr_schedule import scheduled_lr

#: scoring uses at most this many examples (a fixed random subset) unless score_batch says
SCORE_BATCH_DEFAULT = 512


def make_optimizer(config: SENNConfig):
    """The optimiser named by ``config.optimizer`` with the config's lr, damping, weight decay
    (``config`` a :class:`SENNConfig`, validated first)."""
    if not isinstance(config, SENNConfig):
        raise TypeError(f"config: expected a SENNConfig, got {type(config).__name__}")
    config.validate()
    if config.optimizer == "ngd-cg":
        return NaturalGradientCG(lr=config.lr, damping=config.damping, metric=config.metric,
                                 cg_maxiter=config.cg_maxiter, weight_decay=config.weight_decay)
    if config.optimizer == "kfac":
        return KFAC(lr=config.lr, damping=config.damping, weight_decay=config.weight_decay,
                    metric=config.metric)
    if config.optimizer == "adam":
        return Adam(lr=config.lr, weight_decay=config.weight_decay)
    return SGD(lr=config.lr)


def _check_network(net, config) -> None:
    """Refuse a network that cannot grow under ``config`` (before anything is trained)."""
    check_network(net)
    hidden = growable_layers(net)
    if config.width or config.depth:
        can_widen = config.width and bool(hidden)
        can_deepen = config.depth and bool(_depth_positions(net))
        if not (can_widen or can_deepen):
            raise ValueError(f"net: nothing can grow - {len(hidden)} growable hidden layers (a Dense/Conv2D "
                             f"followed by another; width={config.width}) and "
                             f"{'no' if config.depth else 'depth=False, so no'} position to insert a layer")
    for i in hidden:
        w = net.layers[i].params["W"].shape[0]
        if w > config.max_width:
            raise ValueError(f"max_width: {config.max_width} is below the current width {w} of "
                             f"{net.layers[i].name}")
    n_lin = num_linear_layers(net)
    if n_lin > config.max_layers:
        raise ValueError(f"max_layers: {config.max_layers} is below the current {n_lin} Dense/Conv2D layers")


def _depth_positions(net) -> list:
    """Consumers before which a layer can be inserted (empty until Growth I's depth_gain lands)."""
    try:
        from ..grow.depth_gain import depth_supported
    except ImportError:
        return []
    return [i for i, la in enumerate(net.layers) if is_linear_map(la) and depth_supported(net, i)]


def _progress(config, step, loss_value, net, log) -> None:
    if config.quiet:
        return
    widths = architecture(net)
    sys.stderr.write(f"\rstep {step:>6}/{config.steps}  loss {loss_value:.4e}  widths {widths}  "
                     f"accepted {log.count()}   ")
    sys.stderr.flush()


def _optimizer_step(run, step, opt, uses_curvature, net, Xb, Yb, loss, log) -> float:
    """One optimiser step; a non-finite loss, gradient, parameter or curvature state raises
    ``run.failure`` (the error of a step that failed is classified by the same checks).
    Fallbacks met in the step are logged first (also when the step then fails)."""
    error, value = None, None
    with recording() as found:
        try:
            if uses_curvature:
                value = opt.step(net, Xb, Yb, loss)
            else:
                value, grads = net.loss_and_grad(Xb, Yb, loss)
                if all(np.isfinite(g).all() for g in grads.grads.values()):
                    opt.step(net.named_params(), grads.grads)
                else:
                    error = f"the gradient is not finite (loss {value})"
        except (FloatingPointError, ValueError, np.linalg.LinAlgError) as exc:
            error = exc
        finally:
            log_fallbacks(log.events, found, step, "optimizer step")
    if isinstance(error, str):
        raise run.failure(step, error, log)
    if error is not None:
        bad = non_finite(net, opt)
        if bad is None and np.isfinite(evaluate(net, Xb, Yb, loss)[0]):
            raise error
        raise run.failure(step, f"{type(error).__name__} in the optimiser step ({error})", log) from error
    bad = non_finite(net, opt)
    if not np.isfinite(value) or bad is not None:
        raise run.failure(step, f"the training loss is {value}" if bad is None else f"{bad} is not finite "
                          f"after the step", log)
    return value


def train_senn(net, X, Y, loss, config: SENNConfig | None = None, X_val=None, Y_val=None, seed: int = 0,
               callback=None, checkpoint_dir=None, checkpoint_every=None, checkpoint_seconds=None,
               checkpoint_rounds: bool = False, resume: bool = False):
    """Train ``net`` in place with growth; returns ``(net, log)`` (a :class:`SENNLog`).

    X (N,) + net.in_shape, Y targets for ``loss``; X_val/Y_val optional validation data;
    config a :class:`SENNConfig` (None = defaults); seed an integer >= 0;
    ``callback(step, net, log)`` after each step, returning True stops the run.
    checkpoint_dir : None or a folder for run checkpoints (``run-<step>.npz``, the last two kept);
    checkpoint_every : None or k >= 1 (a checkpoint every k steps); checkpoint_seconds : None or
    t > 0 (one at least every t seconds); checkpoint_rounds : one after every expansion round;
    resume : continue from the folder's newest checkpoint (from step 0 when it has none); ``net``
    then receives the saved layers, and a checkpoint of a different run (config, seed, data or
    starting network) is refused.  A callback with ``state_dict()`` / ``load_state_dict(d)`` has
    its state saved and restored too (``senn_ref/runstate/state.py``).  Everything is validated before the first step.
    ``derivations/21-trainer.md``, ``derivations/22-run-checkpoints.md``.
    """
    config = SENNConfig() if config is None else config
    if not isinstance(config, SENNConfig):
        raise TypeError(f"config: expected a SENNConfig, got {type(config).__name__}")
    config.validate()
    check_loss(loss)
    _check_network(net, config)
    X, Y, X_val, Y_val = check_training_data(net, X, Y, loss, X_val, Y_val)
    N = X.shape[0]
    seed = check_positive_int(seed, "seed", minimum=0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
    run = RunCheckpoints(checkpoint_dir, checkpoint_every, checkpoint_seconds, resume, checkpoint_rounds,
                         quiet=config.quiet)
    run.identify(config, seed, net, X, Y, X_val, Y_val)

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    batch_rng, search_rng, subset_rng = rngs
    cap = config.score_batch or SCORE_BATCH_DEFAULT
    score_idx = np.sort(subset_rng.choice(N, cap, replace=False)) if N > cap else np.arange(N)
    Xs, Ys = X[score_idx], Y[score_idx]
    bs = N if config.batch_size is None else min(config.batch_size, N)
    opt = make_optimizer(config)
    uses_curvature = getattr(opt, "uses_curvature", False)
    log = SENNLog(config=config.to_dict())
    log.config["rate_bound"] = rate_bound(config.tau, config.alpha_rel)
    state = RoundState()
    order, cursor, round_index, start = np.arange(N), N, 0, 0
    saved = run.resume_from()
    if saved is not None:
        position, log = run.restore(saved, net, opt, rngs, N, callback)
        start, order, cursor, round_index = position.step, position.order, position.cursor, position.round_index
        state = RoundState(position.width_wait, position.depth_wait)
    t_start = time.perf_counter()

    def capture(next_step):
        position = TrainerState(next_step, order, cursor, round_index, state.width_wait, state.depth_wait,
                                [r.bit_generator.state for r in rngs])
        return net, opt, position, log, callback

    def record(step):
        tl, ta = evaluate(net, X, Y, loss)
        row = {"step": int(step), "train_loss": tl, "train_acc": ta, "widths": architecture(net),
               "num_layers": num_linear_layers(net), "num_params": net.num_params()}
        if X_val is not None:
            row["val_loss"], row["val_acc"] = evaluate(net, X_val, Y_val, loss)
        log.history.append(row)
        return tl

    step = start - 1
    for step in range(start, config.steps):
        round_ran = False
        if (config.width or config.depth) and step > 0 and step >= config.warmup \
                and step % config.expand_every == 0:
            with recording() as found:
                res = expansion_round(net, Xs, Ys, loss, config, search_rng, optimizer=opt, state=state,
                                      step=step, round_index=round_index)
            log.events.extend(res.events)
            log_fallbacks(log.events, found, step, "expansion round")
            log.rounds.append({"step": step, "round": round_index, "additions": res.additions,
                               "rate_bound": res.rate_bound, "lambda": res.lam, "score_kind": config.score,
                               "eta_before": res.eta_before,
                               "eta_after": res.eta_after, "architecture": architecture(net),
                               "seconds_score": res.seconds_score, "seconds_search": res.seconds_search})
            log.timing["score"] += res.seconds_score
            log.timing["search"] += res.seconds_search
            if config.prune:
                from ..grow.pruning_round import pruning_round
                with recording() as found:
                    pruned = pruning_round(net, Xs, Ys, loss, config, optimizer=opt, step=step,
                                           round_index=round_index)
                log.events.extend(pruned)
                log_fallbacks(log.events, found, step, "pruning round")
            round_index += 1
            round_ran = True
        # the previous step's _optimizer_step already checked net and opt; only the first step,
        # a round or the callback can have changed them since (derivations/22 section 4)
        bad = non_finite(net, opt) if (step == start or round_ran or callback is not None) else None
        if bad is not None:
            raise run.failure(step, f"{bad} is not finite before the step", log)
        t0 = time.perf_counter()
        if bs < N:
            if cursor + bs > N:
                order, cursor = batch_rng.permutation(N), 0
            idx = order[cursor:cursor + bs]
            cursor += bs
            Xb, Yb = X[idx], Y[idx]
        else:
            Xb, Yb = X, Y
        if config.lr_schedule != "constant":     # constant: lr untouched, runs bit-identical
            opt.lr = scheduled_lr(config, step)
        value = _optimizer_step(run, step, opt, uses_curvature, net, Xb, Yb, loss, log)
        log.timing["train"] += time.perf_counter() - t0
        if step % config.history_every == 0:
            record(step)
            _progress(config, step, value, net, log)
        stop = callback is not None and callback(step, net, log)
        run.step_done(step, round_ran, capture)      # after the callback, whose state it may save
        if stop:
            break
    run.finish(step + 1, capture)
    final_loss = record(config.steps)
    log.timing["total"] = time.perf_counter() - t_start
    log.final = {"train_loss": final_loss, "widths": architecture(net), "num_params": net.num_params(),
                 "num_layers": num_linear_layers(net),
                 "expansions_accepted": log.count("width") + log.count("depth"),
                 "expansions_rejected": log.count("width", False) + log.count("depth", False),
                 "units_pruned": log.count("prune"),
                 "rate_bound_violations": log.rate_bound_violations(),
                 "numerical_fallbacks": count_fallbacks(log.events)}
    if X_val is not None:
        log.final["val_loss"], log.final["val_acc"] = log.history[-1]["val_loss"], log.history[-1]["val_acc"]
    if not config.quiet:
        n = log.final["numerical_fallbacks"]
        sys.stderr.write("\n" + (f"train_senn: {n} numerical fallback(s), see the log's events of kind "
                                 f"'fallback'\n" if n else ""))
    return net, log
