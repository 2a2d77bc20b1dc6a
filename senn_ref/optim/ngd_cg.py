"""Natural-gradient descent with CG on the damped exact GGN (the released MLP code's trainer).

One step at parameters theta on a batch (X, Y):

    g = grad L(theta) + wd * theta                       (P,)
    solve (F + delta I) u = g by CG, warm-started at the previous u
    theta <- theta - lr * u

with ``F`` the exact GGN for the chosen output metric, applied matrix-free
(:class:`senn_ref.fisher.FisherOperator`).  The only state is the warm start
``u``, stored per parameter key (shaped like the parameter) so that it survives
growth: ``pad_state(key, new_shape, old_index)`` embeds the old entries into a
larger zero array, like the other optimisers' state.
See ``derivations/09-fisher.md`` section 6; tests in ``tests/test_ngd_cg.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_positive_int, check_scalar
from ..fisher.exact import check_metric
from ..natural_gradient import natural_gradient


def pad_array(old: np.ndarray, new_shape, old_index) -> np.ndarray:
    """A zero array of ``new_shape`` with ``new[old_index] = old`` (old entries kept, new ones 0).

    ``old_index`` is any NumPy index (tuple of slices / integer arrays) that selects a
    block of exactly ``old.shape`` in the new array; ``None`` means the leading block
    ``tuple(slice(0, s) for s in old.shape)``.  Raises ValueError on a mismatch.
    """
    new_shape = tuple(int(s) for s in np.atleast_1d(new_shape)) if not isinstance(new_shape, tuple) \
        else tuple(int(s) for s in new_shape)
    if len(new_shape) != old.ndim:
        raise ValueError(f"pad_state: new shape {new_shape} has {len(new_shape)} axes, state has {old.ndim}")
    if old_index is None:
        if any(n < o for n, o in zip(new_shape, old.shape)):
            raise ValueError(f"pad_state: new shape {new_shape} is smaller than the old {old.shape}")
        old_index = tuple(slice(0, s) for s in old.shape)
    new = np.zeros(new_shape)
    try:
        target_shape = new[old_index].shape
    except IndexError as exc:
        raise ValueError(f"pad_state: index {old_index!r} does not fit new shape {new_shape}") from exc
    if target_shape != old.shape:
        raise ValueError(f"pad_state: index selects shape {target_shape} in the new array but the "
                         f"old state has shape {old.shape}")
    new[old_index] = old
    return new


class NaturalGradientCG:
    """``NaturalGradientCG(lr=0.1, damping=0.1, metric="euclidean", cg_tol=1e-6, cg_maxiter=100,
    weight_decay=0.0)``; ``step(net, X, Y, loss) -> float`` (mean loss before the step).

    After a step, ``last_info`` holds the CG outcome (:class:`senn_ref.natural_gradient.CGInfo`)
    and ``state[key]`` the natural-gradient direction of that parameter (its shape).
    A CG that stops early (``CGWarning``) still returns its best iterate: CG never
    increases the model ``1/2 u^T (F + delta I) u - g^T u`` below its warm-start value.
    See ``derivations/09-fisher.md`` section 6.
    """

    def __init__(self, lr: float = 0.1, damping: float = 0.1, metric: str = "euclidean",
                 cg_tol: float = 1e-6, cg_maxiter: int = 100, weight_decay: float = 0.0) -> None:
        self.lr = check_scalar(lr, "lr", minimum=0.0, strict=True)
        self.damping = check_scalar(damping, "damping", minimum=0.0)
        check_metric(metric, None if metric != "empirical" else "targets given at step()")
        self.metric = metric
        self.cg_tol = check_scalar(cg_tol, "cg_tol", minimum=0.0, strict=True)
        self.cg_maxiter = check_positive_int(cg_maxiter, "cg_maxiter")
        self.weight_decay = check_scalar(weight_decay, "weight_decay", minimum=0.0)
        self.state: dict[str, np.ndarray] = {}
        self.last_info = None

    def _warm_start(self, params: dict) -> np.ndarray | None:
        if not any(k in self.state and self.state[k].shape == p.shape for k, p in params.items()):
            return None
        parts = [self.state[k].ravel() if k in self.state and self.state[k].shape == p.shape
                 else np.zeros(p.size) for k, p in params.items()]
        return np.concatenate(parts)

    def step(self, net, X, Y, loss) -> float:
        """One natural-gradient step in place on ``net``; returns the mean loss before it."""
        params = net.named_params()
        theta = net.get_flat()
        extra = self.weight_decay * theta if self.weight_decay else None
        u, _, value, info = natural_gradient(net, X, Y, loss, damping=self.damping, metric=self.metric,
                                             tol=self.cg_tol, maxiter=self.cg_maxiter,
                                             x0=self._warm_start(params), extra_grad=extra)
        if not np.all(np.isfinite(u)):   # cannot happen for finite inputs; never write NaN
            raise FloatingPointError("NaturalGradientCG: non-finite natural gradient; parameters unchanged")
        net.set_flat(theta - self.lr * u)
        self.state = {k: v.copy() for k, v in net.unflatten(u).items()}
        self.last_info = info
        return value

    def pad_state(self, key: str, new_shape, old_index=None) -> None:
        """Grow the warm start of parameter ``key`` to ``new_shape``; old entries go to
        ``new[old_index]``, new entries are 0 (no state for a new unit).  Unknown keys are
        ignored (no state yet).  See :func:`pad_array`."""
        if key in self.state:
            self.state[key] = pad_array(self.state[key], new_shape, old_index)

    def reset(self) -> None:
        """Forget the warm start."""
        self.state = {}
