"""Natural-gradient descent with CG on the damped exact GGN (the released MLP code's trainer).

One step at parameters theta on a batch (X, Y):

    g = grad L(theta) + wd * theta                       (P,)
    solve (F + delta I) u = g by CG, warm-started at the previous u
    theta <- theta - lr * u

with ``F`` the exact GGN for the chosen output metric, applied matrix-free
(:class:`senn_ref.fisher.FisherOperator`).  The only state is the warm start
``u``, stored per parameter key as one slot ``"u"`` shaped like the parameter,
in the shared :class:`senn_ref.optim.state.Optimizer` bookkeeping: so
``pad_state(key, new_shape, old_index)``, ``drop_state``, ``rename_state(s)``,
``state_dict`` and ``load_state_dict`` behave exactly as for SGD and Adam.  A
parameter without state (new, or dropped) starts CG from 0 in its coordinates.
See ``derivations/09-fisher.md`` section 6; tests in ``tests/test_ngd_cg.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_network, check_positive_int, check_scalar
from ..fisher.exact import check_metric
from ..natural_gradient import natural_gradient
from .state import Optimizer


class NaturalGradientCG(Optimizer):
    """``NaturalGradientCG(lr=0.1, damping=0.1, metric="euclidean", cg_tol=1e-6, cg_maxiter=100,
    weight_decay=0.0)``; ``step(net, X, Y, loss) -> float`` (mean loss before the step).

    Unlike SGD/Adam, ``step`` takes the network and the batch, because the
    preconditioner needs forward and backward passes.  After a step,
    ``last_info`` holds the CG outcome (:class:`senn_ref.natural_gradient.CGInfo`)
    and the slot ``"u"`` of every key the natural-gradient direction (P-vector
    split by key).  A CG that stops early (``CGWarning``) still returns its last
    iterate; CG iterates never raise the model ``1/2 u^T (F + delta I) u - g^T u``
    above its value at the warm start.
    See ``derivations/09-fisher.md`` section 6.
    """

    slots = {"u": np.float64}
    #: ``senn_ref.train.fit`` calls ``step(net, X, Y, loss)`` for optimisers with this flag
    uses_curvature = True

    def __init__(self, lr: float = 0.1, damping: float = 0.1, metric: str = "euclidean",
                 cg_tol: float = 1e-6, cg_maxiter: int = 100, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.damping = check_scalar(damping, "damping", minimum=0.0)
        check_metric(metric, "targets are given to step()")
        self.metric = metric
        self.cg_tol = check_scalar(cg_tol, "cg_tol", minimum=0.0, strict=True)
        self.cg_maxiter = check_positive_int(cg_maxiter, "cg_maxiter")
        self.weight_decay = check_scalar(weight_decay, "weight_decay", minimum=0.0)
        self.last_info = None

    def _warm_start(self, params: dict) -> np.ndarray | None:
        """Flat warm start (P,) from the slots; zeros for keys without state; None if no state."""
        for key, p in params.items():
            if key in self._shapes and self._shapes[key] != p.shape:
                raise ValueError(f"optimiser state for {key!r} has shape {self._shapes[key]} but the "
                                 f"parameter has shape {p.shape}; call pad_state (or drop_state) after growing it")
        if not any(key in self._shapes for key in params):
            return None
        return np.concatenate([self._state[k]["u"].ravel() if k in self._shapes else np.zeros(p.size)
                               for k, p in params.items()])

    def step(self, net, X, Y, loss) -> float:
        """One natural-gradient step in place on ``net``; returns the mean loss before it.

        Everything is validated (inputs, targets, state shapes) before the parameters change.
        """
        params = check_network(net).named_params()
        x0 = self._warm_start(params)
        theta = net.get_flat()
        extra = self.weight_decay * theta if self.weight_decay else None
        u, _, value, info = natural_gradient(net, X, Y, loss, damping=self.damping, metric=self.metric,
                                             tol=self.cg_tol, maxiter=self.cg_maxiter, x0=x0,
                                             extra_grad=extra)
        if not np.all(np.isfinite(u)):   # defensive: never write NaN into the parameters
            raise FloatingPointError("NaturalGradientCG: non-finite natural gradient; parameters unchanged")
        net.set_flat(theta - self.lr * u)
        for key, part in net.unflatten(u).items():
            self._state[key] = {"u": part.copy()}
            self._shapes[key] = part.shape
        self.last_info = info
        return value
