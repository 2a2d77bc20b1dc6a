"""Growth: function-preserving width and depth expansion, pruning, and the expansion gains.

Everything here sits above the core layers, curvature and optimisers and changes a
network only through explicit operations that return a :class:`Growth` record.
See ``derivations/14-growth-operations.md`` onwards and ``derivations/README.md``.
"""
# -- structure and records (lead) --
from .record import Growth
from .structure import HiddenPath, growable_layers, hidden_path

# -- operations (ops helper) --
from .add_neurons import add_neurons
from .carry_state import AxisMap, StateChange, carry_state, check_carry, check_optimizers

# -- exact width gains (gains helper) --
from .residual import residual_gradient
from .width_gain import WidthGains, gain_exact, gain_lower_bound, layer_flat_index, width_gains

# -- K-FAC proposal form (kfac-proposal helper) --
from .candidate_path import CandidatePath
from .kfac_proposal import ActivationScore, WidthProposals, WidthScore, kfac_width_gain

# -- Euclidean (GradMax-like) width gain, the baseline of the natural one --
from .euclidean_gain import EuclideanWidthProposals, euclidean_eta, project_units

# -- depth gains (depth helper) --
from .depth_exact import depth_gain_closed, depth_gain_exact
from .depth_gain import DepthProposals, DepthScore
from .insert_layer import depth_supported, insert_layer

# -- pruning scores (pruning helper) --
from .prune_neurons import prune_neurons
from .pruning import (PruningScores, incoming_index, obs_compensation, outgoing_index, pruning_candidates,
                      pruning_scores)

__all__ = [name for name in dir() if not name.startswith("_")]
