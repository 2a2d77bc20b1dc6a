"""Optimisers whose per-parameter state can be padded when the network grows.

First-order: ``SGD`` and ``Adam`` update a dict of parameter arrays in place from a dict of
gradients with the same keys (``step(params, grads)``).  Curvature-based: ``KFAC`` and
``NaturalGradientCG`` need the network and the batch (``step(net, X, Y, loss)``; they set
``uses_curvature = True``, which :func:`senn_ref.train.fit` reads).  ``pad_state`` /
``drop_state`` / ``rename_state(s)`` keep the state aligned with widened, inserted or removed
parameters (see :mod:`senn_ref.optim.state`).  Derivations: ``derivations/08-optimisers.md``.
"""
from .adam import Adam
from .kfac import KFAC
from .ngd_cg import NaturalGradientCG
from .sgd import SGD
from .state import Optimizer

__all__ = ["Adam", "KFAC", "NaturalGradientCG", "Optimizer", "SGD"]
