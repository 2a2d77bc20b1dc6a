"""One expansion round: score every layer, apply the best accepted proposal, repeat.

Within a round the parameters are not trained, so ``lambda`` stays fixed (every addition
preserves the function).  Each iteration:

1. ``eta_c``: the current score under the decision's curvature model - the network's
   K-FAC score (``eta_c="network"``, gains "lower_bound"/"kfac") or the consuming layer's
   own K-FAC score (``"layer"``); with ``gain="exact"`` the exact damped score of the network
   (or of the consumer's parameter block);
2. the best width proposal of every growable hidden layer below ``max_width`` and the best
   depth proposal before every Dense/Conv2D that accepts an insertion (while fewer than ``max_layers`` Dense/Conv2D
   layers exist and depth is not cooling down);
3. each proposal's decision gain (its K-FAC lower bound, its exact K-FAC gain, or its exact
   gain eta(grown copy) - eta(net)) divided by ``depth_cost`` for depth, judged by
   :func:`senn_ref.grow.criterion.decide`;
4. the accepted proposal with the largest score is applied through ``add_neurons`` /
   ``insert_layer`` (optimiser state carried); without ``recursive`` the round ends here.

The round ends when nothing passes, after ``max_additions_per_round``, or when every layer is
at capacity; it records its additions next to the rate bound.

With ``config.score = "euclidean"`` (the GradMax-like baseline, width only) eta_c is
``||grad L||^2`` of the network or the consumer, the gain the Euclidean Delta_E, and the
absolute test's scale (``lambda`` in the round's record) the network's ``||grad L||^2`` at the
start of the round (``derivations/23-euclidean-gain.md`` section 4).
``derivations/19-criterion.md`` section 4; ``tests/test_expansion_round.py``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import score as _score
from .._validate import (check_batch, check_network, check_option, check_positive_int, check_rng, check_scalar,
                         check_target_rows)
from ..kfac import kfac_eta
from ..losses.base import METRICS
from .criterion import decide, rate_bound
from .euclidean_gain import euclidean_eta
from .proposals import Proposal, best_depth_proposal, best_width_proposal
from .structure import growable_layers, hidden_path, is_linear_map


@dataclass
class RoundState:
    """What carries from round to round: rounds left on the width / depth cooldowns."""
    width_wait: int = 0
    depth_wait: int = 0


@dataclass
class RoundResult:
    """additions (int), rate_bound, lambda, eta_before / eta_after (eta_c model, network-wide),
    events (list of dicts, one per judged proposal), growths (the Growth records applied),
    seconds spent scoring and searching."""
    additions: int
    rate_bound: float
    lam: float
    eta_before: float
    eta_after: float
    events: list = field(default_factory=list)
    growths: list = field(default_factory=list)
    seconds_score: float = 0.0
    seconds_search: float = 0.0


def architecture(net) -> list:
    """Units per hidden layer, in order (the producers' output widths), as a list of ints.
    ``derivations/19-criterion.md`` section 4."""
    check_network(net)
    return [int(net.layers[i].params["W"].shape[0]) for i in growable_layers(net)]


def num_linear_layers(net) -> int:
    """Number of Dense/Conv2D layers (what ``max_layers`` limits).  ``derivations/19-criterion.md``
    section 4."""
    check_network(net)
    return sum(1 for la in net.layers if is_linear_map(la))


def _block_eta(det, idx: np.ndarray, damping: float) -> float:
    """Exact score of a parameter block alone: ``g_c^T (F_cc + delta I)^+ g_c``."""
    F = det.F[np.ix_(idx, idx)] + damping * np.eye(idx.size)
    g = det.g[idx]
    return float(g @ np.linalg.lstsq(F, g, rcond=None)[0])


def _layer_indices(net, name: str) -> np.ndarray:
    sl = net.param_slices()
    return np.concatenate([np.arange(s.start, s.stop) for k, s in sl.items() if k.split(".")[0] == name])


def _check_proposal(proposal) -> None:
    if not isinstance(proposal, Proposal):
        raise TypeError(f"proposal: expected a senn_ref.grow.proposals.Proposal, got {type(proposal).__name__}")
    check_option(proposal.kind, ("width", "depth"), "proposal kind")
    need = ("W", "b", "act") if proposal.kind == "width" else ("B", "s")
    if not isinstance(proposal.params, dict) or any(k not in proposal.params for k in need):
        got = sorted(proposal.params) if isinstance(proposal.params, dict) else type(proposal.params).__name__
        raise ValueError(f"proposal.params: a {proposal.kind} proposal needs {list(need)}, got {got}")


def exact_gain_of(net, X, Y, loss, proposal, damping, metric, eta_before: float) -> float:
    """Exact gain ``Delta eta = eta(grown) - eta(net)`` of a proposal under the damped exact GGN
    (the definition; senn-math section 6), with ``eta(grown)`` evaluated on a copy of ``net``
    grown by the real operation and ``eta_before`` the current exact score.  (By block
    elimination this equals the Schur form ``r_p^T S_p^+ r_p`` of ``width_gain.gain_exact``; the
    difference serves width and depth alike and is the quantity the rate bound is about.)
    ``derivations/19-criterion.md`` section 4.  ``net`` is not changed."""
    check_network(net)
    _check_proposal(proposal)
    eta_before = check_scalar(eta_before, "eta_before")
    damping = check_scalar(damping, "damping", minimum=0.0)
    check_option(metric, METRICS, "metric")
    return _exact_gain(net, X, Y, loss, proposal, damping, metric, eta_before)[0]


def _exact_gain(net, X, Y, loss, proposal, damping, metric, eta_before):
    """:func:`exact_gain_of` without the checks; also returns the grown copy's exact details
    (``score.eta_exact_details``), which are those of ``net`` once the round applies this
    proposal (same operation, same parameters, bit for bit), so the next iteration reuses them."""
    trial = net.copy()
    apply_proposal(trial, proposal)
    det = _score.eta_exact_details(trial, X, Y, loss, damping=damping, metric=metric)
    return float(det.eta) - float(eta_before), det


def apply_proposal(net, proposal, optimizer=None):
    """Apply a :class:`Proposal` in place through ``add_neurons`` (width) or ``insert_layer``
    (depth), carrying ``optimizer``'s state; returns the Growth record.
    ``derivations/19-criterion.md`` section 4."""
    check_network(net)
    _check_proposal(proposal)
    p = proposal.params
    if proposal.kind == "width":
        from .add_neurons import add_neurons
        return add_neurons(net, proposal.index, p["W"], p["b"], p["act"], optimizer=optimizer)
    from .insert_layer import insert_layer
    return insert_layer(net, proposal.index, p["B"], p["s"], optimizer=optimizer)


def expansion_round(net, X, Y, loss, config, rng, optimizer=None, state: RoundState | None = None,
                    step: int = 0, round_index: int = 0) -> RoundResult:
    """Run one (recursive) expansion round on ``net`` in place; see the module docstring.

    X (N,) + in_shape, Y targets (the scoring batch); config a validated SENNConfig; rng a
    numpy Generator (candidates and Langevin noise).  Returns a :class:`RoundResult`.
    ``derivations/19-criterion.md`` section 4.  The arguments are checked (the network, the
    config's type, rng, X's shape and finiteness, Y's rows, optimizer, state, step and
    round_index here; Y's values and the loss by the first score) before the network, the optimiser, ``state`` or ``rng`` change.
    """
    from ..trainer.config import SENNConfig
    check_network(net)
    if not isinstance(config, SENNConfig):
        raise TypeError(f"config: expected a SENNConfig, got {type(config).__name__}")
    rng = check_rng(rng, "rng", allow_none=False)
    X = check_batch(X, net.in_shape, "X")
    Y = check_target_rows(Y, X.shape[0])
    if state is not None and not isinstance(state, RoundState):
        raise TypeError(f"state: expected a RoundState or None, got {type(state).__name__}")
    step = check_positive_int(step, "step", minimum=0)
    round_index = check_positive_int(round_index, "round_index", minimum=0)
    if optimizer is not None:
        from .carry_state import check_optimizers
        check_optimizers(optimizer)
    state = RoundState() if state is None else state
    damping, metric = config.scoring_damping, config.metric
    bound = rate_bound(config.tau, config.alpha_rel)
    euclid = config.score == "euclidean"
    current_E = None                        # euclidean_eta of the network as it is now, when known
    if euclid:      # no ceiling: the absolute test's scale is the network's E at the round's start
        current_E = euclidean_eta(net, X, Y, loss)          # also the first iteration's score
        lam = current_E[0]
    else:
        lam = _score.ceiling(net, X, Y, loss, metric=metric)
    result = RoundResult(0, bound, lam, float("nan"), float("nan"))
    width_ok = config.width and state.width_wait == 0
    depth_ok = config.depth and state.depth_wait == 0
    added_width = added_depth = False
    if not (width_ok or depth_ok):          # cooling down (or growth off): nothing to score
        state.width_wait = max(0, state.width_wait - 1)
        state.depth_wait = max(0, state.depth_wait - 1)
        return result
    current_det = None                      # exact details of the network as it is now, when known
    while result.additions < config.max_additions_per_round:
        t0 = time.perf_counter()
        if euclid:
            det = None
            if current_E is None:
                current_E = euclidean_eta(net, X, Y, loss)
            eta_net, per_layer = current_E
        elif config.gain == "exact":
            if current_det is None:
                current_det = _score.eta_exact_details(net, X, Y, loss, damping=damping, metric=metric)
            det = current_det
            eta_net, per_layer = det.eta, None
        else:
            det = None
            eta_net, per_layer = kfac_eta(net, X, Y, loss, damping=damping, metric=metric)
        scored_is_current = True            # eta_net is the score of the network as it is now
        if result.additions == 0:
            result.eta_before = float(eta_net)
        result.seconds_score += time.perf_counter() - t0
        proposals = []
        t1 = time.perf_counter()
        if width_ok:
            for i in growable_layers(net):
                if net.layers[i].params["W"].shape[0] >= config.max_width:
                    continue
                proposals.append(best_width_proposal(
                    net, X, Y, loss, i, n_candidates=config.n_candidates, rng=rng, method=config.search,
                    steps=config.search_steps, lr=config.search_lr, temperature=config.temperature,
                    damping=damping, metric=metric, search_batch=config.search_batch, score=config.score))
        if depth_ok and num_linear_layers(net) < config.max_layers:
            from .depth_gain import depth_supported
            for i, la in enumerate(net.layers):
                if is_linear_map(la) and depth_supported(net, i):
                    proposals.append(best_depth_proposal(
                        net, X, Y, loss, i, n_candidates=config.n_candidates, rng=rng,
                        method=config.search, steps=config.search_steps, lr=config.search_lr,
                        temperature=config.temperature, damping=damping, metric=metric,
                        search_batch=config.search_batch))
        result.seconds_search += time.perf_counter() - t1
        if not proposals:
            break
        t2 = time.perf_counter()
        decisions, trial_dets = [], []
        for p in proposals:
            consumer = hidden_path(net, p.index).consumer if p.kind == "width" else p.index
            consumer_name = net.layers[consumer].name
            if euclid:      # Delta_E against ||grad L||^2 of the network or the consumer
                gain = p.lower_bound
                eta_c = eta_net if config.eta_c == "network" else per_layer[consumer_name]
            elif config.gain == "exact":
                p.exact_gain, trial_det = _exact_gain(net, X, Y, loss, p, damping, metric, det.eta)
                trial_dets.append(trial_det)
                gain = p.exact_gain
                eta_c = eta_net if config.eta_c == "network" else \
                    _block_eta(det, _layer_indices(net, consumer_name), damping)
            else:
                gain = p.lower_bound if config.gain == "lower_bound" or p.kfac_gain is None else p.kfac_gain
                if config.eta_c == "layer":
                    eta_c = per_layer[consumer_name]
                else:       # depth lower bounds are exact-GGN quantities: judged against the exact eta
                    eta_c = eta_net if p.eta_network is None else p.eta_network
            cost = config.depth_cost if p.kind == "depth" else 1.0
            decisions.append(decide(gain, max(float(eta_c), 0.0), lam, config.tau, config.alpha_rel, cost))
        result.seconds_score += time.perf_counter() - t2
        passing = [j for j, d in enumerate(decisions) if d.accepted]
        chosen = max(passing, key=lambda j: decisions[j].score) if passing else None
        arch_before = architecture(net)
        growth = None
        iteration = result.additions
        if chosen is not None:
            growth = apply_proposal(net, proposals[chosen], optimizer)
            scored_is_current = False
            current_det = trial_dets[chosen] if trial_dets else None     # (exact gains only)
            current_E = None
            result.growths.append(growth)
            result.additions += 1
            added_width |= proposals[chosen].kind == "width"
            added_depth |= proposals[chosen].kind == "depth"
        for j, (p, d) in enumerate(zip(proposals, decisions)):
            ev = {"step": int(step), "round": int(round_index), "iteration": iteration,
                  **p.summary(), **d.to_dict(), "lambda": lam, "eta_network": float(eta_net),
                  "accepted": j == chosen, "passed": d.accepted, "score_kind": config.score,
                  "architecture_before": arch_before, "architecture": architecture(net)}
            if j == chosen:
                ev["growth"] = growth.to_dict()
            result.events.append(ev)
        if chosen is None or not config.recursive:
            break
        if proposals[chosen].kind == "depth" and config.depth_cooldown > 0:
            depth_ok = False                # no second insertion within the round
    if euclid:
        result.eta_after = float(eta_net) if scored_is_current else euclidean_eta(net, X, Y, loss)[0]
    elif config.gain == "exact":
        if current_det is None:
            current_det = _score.eta_exact_details(net, X, Y, loss, damping=damping, metric=metric)
        result.eta_after = float(current_det.eta)
    elif scored_is_current:                 # nothing added since the last K-FAC score: the same number
        result.eta_after = float(eta_net)
    else:
        result.eta_after = float(kfac_eta(net, X, Y, loss, damping=damping, metric=metric)[0])
    state.width_wait = config.width_cooldown if added_width else max(0, state.width_wait - 1)
    state.depth_wait = config.depth_cooldown if added_depth else max(0, state.depth_wait - 1)
    return result
