"""Optimisers whose per-parameter state can be padded when the network grows.

``SGD`` and ``Adam`` update a dict of parameter arrays in place from a dict of
gradients with the same keys; ``pad_state`` / ``drop_state`` / ``rename_state(s)``
keep the state aligned with widened, inserted or removed parameters (see
:mod:`senn_ref.optim.state`).  Derivations: ``derivations/08-optimisers.md``.
"""
from .adam import Adam
from .sgd import SGD
from .state import Optimizer

__all__ = ["Adam", "Optimizer", "SGD"]
