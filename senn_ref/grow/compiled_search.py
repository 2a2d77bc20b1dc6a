"""The proposal search of a dense hidden layer in one compiled call, where it applies.

:func:`compiled_width_search` runs what ``search.search(objective, params, "ascent", ...)``
runs for the K-FAC lower bound of a :class:`~senn_ref.grow.kfac_proposal.WidthProposals`
context - every candidate's lower bound, its gradient by the candidate path's adjoint, and
Adam's update, for all ``steps`` - inside one call of
:func:`senn_ref.kernels.search_numba.width_search_numba`, instead of ``steps + 1`` objective
calls of a dozen NumPy operations each (``derivations/25-compiled-search.md``).  It applies
(:func:`search_layout`) to one-unit candidates (``k = 1``) of a hidden layer
``Dense -> Rational (dense) | Tanh -> Dense`` under the ``"numba"`` backend, outside
:func:`numpy_search`, up to :data:`MAX_SEARCH_WORK`; otherwise it returns None and the caller
runs the NumPy search (the kernel's twin, :mod:`senn_ref.kernels.search_numpy`).
Tests: ``tests/test_compiled_search.py``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .. import backend as _backend
from .._validate import as_float_array, check_flag, check_positive_int, check_scalar, check_shape
from ..fast_path_switch import FastPathSwitch
from ..kfac.damping import zero_tolerance
from ..layers.activations import Tanh
from ..layers.rational import Rational
from .search import SearchResult, _step_sizes

#: the compiled search is taken while ``C N (F + m)`` (candidates x rows x (producer inputs +
#: consumer outputs), the multiply-adds of one objective evaluation's products) is at most this;
#: above it NumPy's BLAS products win (derivations/25-compiled-search.md section 4)
MAX_SEARCH_WORK = 1 << 21

_ENABLED = FastPathSwitch("compiled search")


@contextmanager
def numpy_search():
    """Within this block the proposal search never takes the compiled path (benchmarks, tests:
    the NumPy search, the kernel's twin, runs instead).  ``derivations/25-compiled-search.md``
    sections 2-3.  A process switch (:class:`senn_ref.fast_path_switch.FastPathSwitch`):
    overlapping blocks in several threads are safe."""
    with _ENABLED.off():
        yield


@dataclass(frozen=True)
class SearchLayout:
    """What the kernels read from a context: the producer's inputs ``xT`` (F, N) and the residual
    cotangents ``RT`` (m, N) transposed, ``G_inv`` (m, m), ``shift = sqrt(damping)``, the relative cut ``tol``
    of ``A_h~`` (``zero_tolerance(1)``), the activation ``kind`` (``search_numba.RATIONAL`` /
    ``TANH``), the rational ``eps``, the parameter names in column order and the per-unit kernel
    shape ``w_shape`` (``(F,)``)."""
    xT: np.ndarray
    RT: np.ndarray
    G_inv: np.ndarray
    shift: float
    tol: float
    kind: int
    eps: float
    names: tuple
    w_shape: tuple


def search_layout(ctx, C: int | None = None):
    """The :class:`SearchLayout` of a width context ``ctx`` when the compiled search applies
    (module docstring; ``C`` candidates for the work limit, unchecked if None), else None.
    ``derivations/25-compiled-search.md`` sections 1 and 4."""
    from .kfac_proposal import WidthProposals
    if not _ENABLED or _backend.get_backend() != "numba" or type(ctx) is not WidthProposals:
        return None
    path = ctx.candidates
    if path.conv_producer or path.conv_consumer or path.q != 1 or path.T != 1 or len(path.stages) != 1:
        return None
    la = path.stages[0]
    if type(la) is Rational and la.spatial == () and la.backend in (None, "numba"):
        kind, eps = 0, float(la.EPS)
    elif type(la) is Tanh:
        kind, eps = 1, 0.0
    else:
        return None
    N, F = path.x_rows.shape
    m = ctx.R.shape[2]
    if C is not None and C * N * (F + m) > MAX_SEARCH_WORK:
        return None
    names = ("W", "b") + tuple(f"act.{name}" for name in path.act_names)
    return SearchLayout(np.ascontiguousarray(path.x_rows.T), np.ascontiguousarray(ctx.R.reshape(N, m).T),
                        ctx.G_inv, float(ctx.shift), float(zero_tolerance(1)), kind, eps, names,
                        tuple(path.w_shape))


def _pack(layout: SearchLayout, params, name: str = "params"):
    """Checked ``params`` (``layout.names``: "W" (C, 1) + w_shape, the others (C, 1)) as rows
    (C, P) and W's shape."""
    if not isinstance(params, dict) or set(params) != set(layout.names):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name}: expected the keys {sorted(layout.names)}, got {got}")
    F = layout.xT.shape[0]
    W = as_float_array(params["W"], f"{name}['W']", ndim=2 + len(layout.w_shape))
    check_shape(W, (None, 1) + layout.w_shape, f"{name}['W']")
    C = W.shape[0]
    cols = [W.reshape(C, F)]
    for key in layout.names[1:]:
        a = as_float_array(params[key], f"{name}[{key!r}]", ndim=2)
        check_shape(a, (C, 1), f"{name}[{key!r}]")
        cols.append(a)
    theta = np.ascontiguousarray(np.concatenate(cols, axis=1))
    if not np.isfinite(theta).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return theta, W.shape


def _unpack(layout: SearchLayout, theta: np.ndarray, w_shape: tuple) -> dict:
    F = layout.xT.shape[0]
    out = {"W": np.ascontiguousarray(theta[:, :F]).reshape(w_shape)}
    for j, key in enumerate(layout.names[1:]):
        out[key] = np.ascontiguousarray(theta[:, F + j:F + j + 1])
    return out


def _kernels():
    from ..kernels import search_numba
    return search_numba


def width_objective(ctx, params, grad: bool = True):
    """The compiled proposal-search objective: ``(lower_bound (C,), grads or None)`` of the
    candidates ``params`` ("W" (C, 1) + w_shape, "b" (C, 1), "act.<name>" (C, 1)) in ``ctx``, as
    :func:`senn_ref.kernels.search_numpy.width_objective_numpy` computes them (non-finite scores
    -> -inf with a zero gradient row; a non-finite gradient entry zeroes that candidate's row of
    its own array only, as the search treats them).  ValueError when the
    compiled search does not apply to ``ctx``.  ``derivations/25-compiled-search.md`` section 1."""
    layout = search_layout(ctx)
    if layout is None:
        raise ValueError("ctx: the compiled search does not apply to this context (search_layout)")
    grad = check_flag(grad, "grad")
    theta, w_shape = _pack(layout, params)
    values, g = _kernels().width_objective_numba(layout.xT, layout.RT, layout.G_inv, layout.shift, layout.tol,
                                                 layout.kind, layout.eps, theta, grad)
    return values, (_unpack(layout, g, w_shape) if grad else None)


def compiled_width_search(ctx, params, steps: int, lr: float, beta1: float = 0.9, beta2: float = 0.999):
    """``search.search(objective, params, "ascent", steps, lr=lr, beta1=beta1, beta2=beta2)`` of
    the lower bound of width context ``ctx``, compiled (module docstring), as a
    :class:`~senn_ref.grow.search.SearchResult`; None when it does not apply (:func:`search_layout`,
    or candidates of more than one unit; then nothing was computed).  ``params`` as :func:`width_objective`; ``steps >= 1``.
    ``derivations/25-compiled-search.md`` sections 1-3."""
    steps = check_positive_int(steps, "search steps")
    lr = check_scalar(lr, "search lr", minimum=0.0, strict=True)
    for name, b in (("beta1", beta1), ("beta2", beta2)):
        if check_scalar(b, name, minimum=0.0) >= 1.0:
            raise ValueError(f"{name}: must be in [0, 1), got {b}")
    shape = np.shape(params["W"]) if isinstance(params, dict) and "W" in params else ()
    if len(shape) >= 2 and shape[1] != 1:
        return None                                  # k > 1 units per candidate: A_h is k x k
    layout = search_layout(ctx, int(shape[0]) if shape else None)
    if layout is None:
        return None
    theta, w_shape = _pack(layout, params)
    start = _unpack(layout, theta, w_shape)
    step = _step_sizes(start, lr)
    step_col = np.concatenate([np.full(1 if key != "W" else theta.shape[1] - len(layout.names) + 1, step[key])
                               for key in layout.names])
    bias1 = np.array([1.0 - beta1 ** t for t in range(steps + 1)])
    bias2 = np.array([1.0 - beta2 ** t for t in range(steps + 1)])
    best, best_v, initial = _kernels().width_search_numba(layout.xT, layout.RT, layout.G_inv, layout.shift,
                                                          layout.tol, layout.kind, layout.eps, theta, step_col,
                                                          bias1, bias2, float(beta1), float(beta2))
    return SearchResult(_unpack(layout, best, w_shape), best_v, initial, int(np.argmax(best_v)), steps + 1)
