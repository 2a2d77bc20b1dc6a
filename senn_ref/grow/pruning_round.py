"""One pruning round: remove hidden units that neither help now nor would be missed.

senn-math section 9 (paper v3: growth and pruning share one criterion).  For every hidden
layer with more than ``min_width`` units, with the scores of :func:`senn_ref.grow.pruning.pruning_scores`
(curvature "kfac", the consumer's block, when decisions use K-FAC gains; "exact", the whole
network, with ``gain="exact"``) a unit ``u`` is **pruned** iff

    freeze_u < prune_tau * eta_c    and    removal_u < prune_tau * eta_c,

``eta_c`` being the score of the same curvature's scope (``PruningScores.eta``): freezing its
outgoing weights loses almost none of the current score, and after removing it (with the
Optimal-Brain-Surgeon compensation of the rest, :func:`senn_ref.grow.pruning.obs_compensation`)
re-enabling it would gain almost nothing.  Units are removed one at a time, the one with the
smallest ``max(freeze, removal)`` first, and the layer is re-scored after each removal
(scores of single units do not add up); with ``recursive=False`` at most one unit per layer
and round.  ``derivations/21-trainer.md`` section 3; ``tests/test_trainer.py``.
"""
from __future__ import annotations

import numpy as np

from .structure import growable_layers


def pruning_round(net, X, Y, loss, config, optimizer=None, step: int = 0, round_index: int = 0) -> list:
    """Prune ``net`` in place (module docstring); returns one event dict per removed unit and one
    per layer whose best candidate was kept (kind "prune", accepted True / False).

    X (N,) + in_shape, Y the targets of the scoring batch; config a validated SENNConfig
    (``prune_tau``, ``min_width``, ``gain``, ``scoring_damping``, ``metric``, ``recursive``);
    optimizer: its state is shrunk alongside (``prune_neurons``).
    Every argument is checked before anything is scored or removed (TypeError/ValueError
    naming it).  ``derivations/18-pruning.md`` section 7."""
    from .._validate import check_network, check_positive_int
    from ..train import check_loss, check_training_data
    from ..trainer.config import SENNConfig
    from .carry_state import check_optimizers
    from .prune_neurons import prune_neurons
    from .pruning import scores_and_compensation
    check_network(net)
    if not isinstance(config, SENNConfig):
        raise TypeError(f"config: expected a SENNConfig, got {type(config).__name__}")
    config.validate()
    check_loss(loss)
    X, Y, _, _ = check_training_data(net, X, Y, loss)
    check_optimizers(optimizer)
    step = check_positive_int(step, "step", minimum=0)
    round_index = check_positive_int(round_index, "round_index", minimum=0)
    curvature = "exact" if config.gain == "exact" else "kfac"
    damping, metric = config.scoring_damping, config.metric
    events = []
    for layer in growable_layers(net):
        while True:
            width = int(net.layers[layer].params["W"].shape[0])
            if width <= config.min_width:
                break
            # one curvature setup for the scores and (if accepted) the OBS compensation
            sc, compensation = scores_and_compensation(net, X, Y, loss, layer, damping=damping,
                                                       metric=metric, curvature=curvature)
            worst = np.maximum(sc.freeze, sc.removal)
            u = int(np.argmin(worst))
            limit = config.prune_tau * max(float(sc.eta), 0.0)
            accept = bool(sc.freeze[u] < limit and sc.removal[u] < limit)
            ev = {"step": int(step), "round": int(round_index), "kind": "prune", "index": int(layer),
                  "layer": net.layers[layer].name, "unit": u, "freeze": float(sc.freeze[u]),
                  "removal": float(sc.removal[u]), "eta_c": float(sc.eta), "threshold": limit,
                  "curvature": curvature, "accepted": accept, "width_before": width}
            if accept:
                prune_neurons(net, layer, [u], compensation=compensation([u]), optimizer=optimizer)
            ev["width_after"] = int(net.layers[layer].params["W"].shape[0])
            events.append(ev)
            if not accept or not config.recursive:
                break
    return events
