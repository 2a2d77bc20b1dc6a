"""NumPy twin of :mod:`senn_ref.kernels.search_numba`: the width search by the existing NumPy code.

The compiled kernels fuse the proposal search's objective, its gradient and the Adam loop;
their twin is the code the proposal search runs without them: the lower bound and its
gradients of :meth:`WidthProposals.score_unchecked <senn_ref.grow.kfac_proposal.WidthProposals.score_unchecked>`
(``CandidatePath.forward``/``backward`` and ``_width_scores``) and the Adam ascent of
:func:`senn_ref.grow.search.search`.  Tests compare the two at 1e-12
(``tests/test_compiled_search.py``); ``derivations/25-compiled-search.md`` section 2.
"""
from __future__ import annotations

import numpy as np


def width_objective_numpy(ctx, params: dict, grad: bool):
    """``(lower_bound (C,), grads or None)`` of the candidates ``params`` (``"W"`` (C, k) + w_shape,
    ``"b"`` (C, k), ``"act.<name>"`` (C, k)) in the width context ``ctx``: the proposal search's
    objective, ``grads`` name -> array shaped like ``params[name]``.  No argument checks (the
    search's arrays).  ``derivations/16-kfac-proposal.md`` sections 2-5."""
    act = {key[4:]: v for key, v in params.items() if key.startswith("act.")}
    sc = ctx.score_unchecked(params["W"], params["b"], act, grad, False)
    if not grad:
        return sc.lower_bound, None
    return sc.lower_bound, {"W": sc.grad_W, "b": sc.grad_b,
                            **{f"act.{name}": g for name, g in (sc.grad_act or {}).items()}}


def width_search_numpy(ctx, params: dict, steps: int, lr: float, beta1: float = 0.9, beta2: float = 0.999):
    """Twin of ``width_search_numba``: :func:`senn_ref.grow.search.search` (``"ascent"``) of
    :func:`width_objective_numpy`; returns its ``SearchResult``."""
    from ..grow.search import search
    return search(lambda p, g: width_objective_numpy(ctx, p, g), params, method="ascent", steps=steps,
                  lr=lr, beta1=beta1, beta2=beta2)
