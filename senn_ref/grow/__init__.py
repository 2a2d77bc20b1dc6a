"""Growth: function-preserving width and depth expansion, pruning, and the expansion gains.

Everything here sits above the core layers, curvature and optimisers and changes a
network only through explicit operations that return a :class:`Growth` record.
See ``derivations/14-growth-operations.md`` onwards and ``derivations/README.md``.
"""
# -- structure and records (lead) --
from .record import Growth
from .structure import HiddenPath, growable_layers, hidden_path

# -- operations (ops helper) --

# -- exact width gains (gains helper) --

# -- K-FAC proposal form (kfac-proposal helper) --

# -- depth gains (depth helper) --

# -- pruning scores (pruning helper) --

__all__ = [name for name in dir() if not name.startswith("_")]
