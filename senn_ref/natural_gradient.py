"""Natural gradient by conjugate gradient on the damped exact GGN:  (F + delta I) u = g.

``cg_solve`` is a plain conjugate-gradient solver for a symmetric PSD operator
given as a function; ``solve_fisher`` runs the same solver on a matrix-free
:class:`senn_ref.fisher.FisherOperator`, as one compiled call when the operator's products take
the compiled whole-network path; ``natural_gradient`` applies it to the gradient of the mean loss.
Neither ever returns NaN silently: non-convergence, a curvature ``p^T A p`` at or
below the floor ``CURVATURE_FLOOR * ||A||_est * ||p||^2`` along a search direction
(an indefinite or numerically singular operator, e.g. zero damping on a saturated
softmax), and an iterate or residual that stops being finite raise a ``CGWarning`` and
stop with the last finite iterate.  See ``derivations/09-fisher.md`` section 5;
tested in ``tests/test_score.py``, ``tests/test_ngd_cg.py`` and ``tests/test_cg_compiled.py``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ._validate import as_float_array, check_positive_int, check_scalar, check_shape
from .fallbacks import NumericalFallback, warn_fallback
from .fast_path_switch import FastPathSwitch
from .fisher.matvec import FisherOperator


#: relative curvature floor: CG stops at a direction with
#: ``p^T A p <= CURVATURE_FLOOR * a_est * ||p||^2``, where ``a_est = max_k ||A p_k|| / ||p_k||``
#: over the directions met so far (a lower bound on ``||A||_2``).  Below it the computed
#: ``p^T A p`` is within a few hundred rounding errors ``eps ||A|| ||p||^2`` of zero, so the
#: step ``alpha = r^T r / p^T A p`` is meaningless and may overflow (09-fisher.md section 5).
CURVATURE_FLOOR = 64 * np.finfo(np.float64).eps


_COMPILED_LOOP = FastPathSwitch("compiled CG loop")


@contextmanager
def python_loop():
    """Context manager: :func:`solve_fisher` runs the Python loop (``cg_solve(op.matvec, ...)``)
    even where the compiled one applies; the products still take the compiled GGN kernel.  For
    side-by-side benchmarks (``senn_ref.bench.cg``) and tests.  A process switch
    (:class:`senn_ref.fast_path_switch.FastPathSwitch`): overlapping blocks in several threads
    are safe."""
    with _COMPILED_LOOP.off():
        yield


class CGWarning(NumericalFallback):
    """CG stopped without reaching its tolerance and returned its last finite iterate: ``reason``
    "iteration cap", "curvature floor" or "non-finite"; ``value`` the relative residual
    (a :class:`senn_ref.fallbacks.NumericalFallback`, hence a RuntimeWarning)."""


@dataclass
class CGInfo:
    """Outcome of :func:`cg_solve`: ``iterations`` (matvecs after the initial residual),
    ``residual_norm`` ``||b - A x||`` (recursively updated), ``relative_residual``
    (``residual_norm / ||b||``), ``converged`` (relative residual <= tol),
    ``indefinite`` (a direction with ``p^T A p`` at or below the curvature floor was met) and
    ``nonfinite`` (the next iterate, residual or direction would not have been finite)."""
    iterations: int
    residual_norm: float
    relative_residual: float
    converged: bool
    indefinite: bool = False
    nonfinite: bool = False


def _prepare(b, tol, maxiter, x0):
    """Checked ``(b, tol, maxiter, x, ||b||)`` of a CG call (the start x a fresh copy)."""
    b = as_float_array(b, "b", ndim=1, allow_empty=True)
    P = b.shape[0]
    tol = check_scalar(tol, "tol", minimum=0.0, strict=True)
    maxiter = max(2 * P, 10) if maxiter is None else check_positive_int(maxiter, "maxiter", minimum=0)
    if x0 is None:
        x = np.zeros(P)
    else:
        x = as_float_array(x0, "x0", ndim=1, allow_empty=True).copy()
        if x.shape != (P,):
            raise ValueError(f"x0: expected shape ({P},), got {x.shape}")
    return b, tol, maxiter, x, float(np.linalg.norm(b))


def _finish(x, it, rr, indefinite, nonfinite, pAp, floor, tol, b_norm):
    """``(x, CGInfo)`` of a finished loop, raising the ``CGWarning`` of a fallback (attributed to
    the caller of the public solver)."""
    res = float(np.sqrt(rr))
    info = CGInfo(it, res, res / b_norm, res <= tol * b_norm, indefinite, nonfinite)
    if nonfinite:
        warn_fallback(CGWarning, f"CG stopped after {it} iterations: the next iterate, residual or operator "
                      f"product was not finite (overflow); returning the last finite iterate, relative "
                      f"residual {info.relative_residual:.3e}. Use damping > 0.", "non-finite",
                      info.relative_residual, stacklevel=3)
    elif indefinite:
        warn_fallback(CGWarning, f"CG met a direction with p^T A p = {pAp:.3e} <= floor {floor:.3e} after {it} "
                      f"iterations (operator singular or indefinite); returning the last iterate, "
                      f"relative residual {info.relative_residual:.3e}. Use damping > 0.",
                      "curvature floor", info.relative_residual, stacklevel=3)
    elif not info.converged:
        warn_fallback(CGWarning, f"CG did not converge in {it} iterations: relative residual "
                      f"{info.relative_residual:.3e} > tol {tol:.1e}", "iteration cap", info.relative_residual,
                      stacklevel=3)
    return x, info


def cg_solve(apply_A, b, tol: float = 1e-10, maxiter: int | None = None, x0=None):
    """Solve ``A x = b`` for symmetric PSD ``A`` (given as ``apply_A(v) -> A v``) by CG.

    b, x0 : (P,); tol : stop when ``||b - A x|| <= tol ||b||``; maxiter : cap on
    iterations (default ``max(2 P, 10)``).  Returns ``(x (P,), CGInfo)``.
    ``b = 0`` returns ``x = 0`` immediately.  If ``A`` is singular but ``b`` lies
    in its range (the GGN case, 10-expansion-score.md section 6), CG started at
    ``x0 = 0`` stays in the range and converges to the minimum-norm solution
    ``A^+ b`` in exact arithmetic.  The twin of the compiled loop of :func:`solve_fisher`.
    See ``derivations/09-fisher.md`` section 5.
    """
    b, tol, maxiter, x, b_norm = _prepare(b, tol, maxiter, x0)
    if b_norm == 0.0:
        return np.zeros(b.shape[0]), CGInfo(0, 0.0, 0.0, True)
    return _finish(*_loop(apply_A, b, x, x0 is not None, tol, b_norm, maxiter), tol, b_norm)


def _dot(a, b) -> float:
    """``a . b`` as NumPy's pairwise sum of the rounded products (``np.sum(a * b)``), not the
    BLAS ``ddot`` (whose order depends on the CPU's kernel): the compiled loop
    (``kernels/cg_numba._dot``) sums in this order too, so the two loops give the same bits."""
    return float(np.add.reduce(a * b))


def _loop(apply_A, b, x, warm, tol, b_norm, maxiter):
    """The CG iterations of :func:`cg_solve` in Python: ``(x, it, r.r, indefinite, nonfinite, pAp, floor)``."""
    r = b - apply_A(x) if warm else b.copy()
    p = r.copy()
    # overflow is detected below and reported as a CGWarning, not as numpy warnings
    with np.errstate(over="ignore", invalid="ignore"):
        rr = _dot(r, r)
    it, indefinite, nonfinite, a_est, floor, pAp = 0, False, not np.isfinite(rr), 0.0, 0.0, 0.0
    while not nonfinite and np.sqrt(rr) > tol * b_norm and it < maxiter:
        Ap = apply_A(p)
        with np.errstate(over="ignore", invalid="ignore"):
            pp = _dot(p, p)
            pAp = _dot(p, Ap)
            a_est = max(a_est, float(np.sqrt(_dot(Ap, Ap))) / np.sqrt(pp))
            floor = CURVATURE_FLOOR * a_est * pp
            if not np.all(np.isfinite(Ap)) or not np.isfinite(floor):
                nonfinite = True
                break
            if not pAp > floor:
                indefinite = True
                break
            alpha = rr / pAp
            x_new = x + alpha * p
            r_new = r - alpha * Ap
            rr_new = _dot(r_new, r_new)
            p_new = r_new + (rr_new / rr) * p
        if not (np.isfinite(rr_new) and np.all(np.isfinite(x_new)) and np.all(np.isfinite(p_new))):
            nonfinite = True
            break
        x, r, p, rr = x_new, r_new, p_new, rr_new
        it += 1
    return x, it, rr, indefinite, nonfinite, pAp, floor


def solve_fisher(op: FisherOperator, b, tol: float = 1e-10, maxiter: int | None = None, x0=None, *,
                 _plan_checked: bool = False):
    """``(x (P,), CGInfo)``: :func:`cg_solve` of ``(F + delta I) x = b`` for a
    :class:`~senn_ref.fisher.FisherOperator` ``op`` (arguments, defaults, result, warnings as
    ``cg_solve(op.matvec, b, tol, maxiter, x0)``).  When the operator's products take the
    compiled whole-network path (``op.compiled_ggn()``), the whole loop runs in one Numba call
    (``kernels/cg_numba.py``: the same operations in the same order, so the same bits as the
    Python loop), else it is the Python loop.  A non-finite value
    inside a compiled product reruns the Python loop from the start (whose operator then takes
    the layer-wise path and warns or raises as it does).
    See ``derivations/09-fisher.md`` section 5 and ``derivations/24-sequential-fast-path.md``
    section 7; tested in ``tests/test_cg_compiled.py``.  ``_plan_checked`` is internal
    (:func:`natural_gradient`, which built ``op`` itself: its compiled plan was matched against
    the network at construction and is not checked again).
    """
    b, tol, maxiter, x, b_norm = _prepare(b, tol, maxiter, x0)
    if b.shape[0] != op.P:
        raise ValueError(f"b: expected shape ({op.P},) (one entry per network parameter), got {b.shape}")
    if b_norm == 0.0:
        return np.zeros(b.shape[0]), CGInfo(0, 0.0, 0.0, True)
    args = op._compiled_ggn(_plan_checked) if _COMPILED_LOOP else None
    if args is not None:
        from .kernels import cg_numba as k
        if not b.flags.writeable:           # one kernel specialisation: writeable arrays
            b = b.copy()
        # the kernel works on a copy of x: x stays the start for a rerun below
        x_end, it, rr, status, pAp, floor, products = k.cg_ggn_numba(
            *args, float(op.damping), b, x, x0 is not None, tol, b_norm, maxiter, CURVATURE_FLOOR)
        op.n_products += products
        if status != k.BAIL:
            return _finish(x_end, it, rr, status == k.FLOOR, status == k.NONFINITE, pAp, floor, tol, b_norm)
    return _finish(*_loop(op.matvec, b, x, x0 is not None, tol, b_norm, maxiter), tol, b_norm)


def natural_gradient(net, X, Y, loss, damping: float = 0.0, metric: str = "euclidean",
                     tol: float = 1e-10, maxiter: int | None = None, x0=None, extra_grad=None):
    """``u = (F + delta I)^{-1} g`` by matrix-free CG; returns ``(u (P,), g (P,), L, CGInfo)``.

    ``g`` is the gradient of the mean loss ``L = (1/N) sum_n l_n`` (plus
    ``extra_grad`` (P,) if given, e.g. weight decay), ``F`` the exact GGN with
    the chosen output metric (:class:`senn_ref.fisher.FisherOperator`), ``x0`` a
    warm start (P,).  The network's layer caches end at the point X.
    See ``derivations/09-fisher.md`` section 5.
    """
    op = FisherOperator(net, X, loss, metric=metric, Y=Y if metric == "empirical" else None,
                        damping=damping)
    # op's forward just matched its compiled plan (if any) against net, and only the loss ran
    # since (on the outputs array): the vjp and the solve skip re-matching the plan
    # (derivations/24-sequential-fast-path.md section 7)
    value, E = loss.value_and_grad(op.outputs.reshape(op.outputs.shape[0], -1), Y)
    op._ensure_point()
    g = op._vjp(E.reshape(op.outputs.shape) / op.outputs.shape[0], plan_checked=True)
    if extra_grad is not None:
        extra = as_float_array(extra_grad, "extra_grad", ndim=1)
        check_shape(extra, g.shape, "extra_grad")
        g = g + extra
    u, info = solve_fisher(op, g, tol=tol, maxiter=maxiter, x0=x0, _plan_checked=True)
    return u, g, value, info
