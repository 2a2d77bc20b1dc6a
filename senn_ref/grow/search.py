"""Vectorised proposal search: improve many candidates at once on a fixed batch.

A *candidate* is one proposal's free parameters (a new unit's incoming weights, bias and
activation parameters, or an inserted layer's ``(B, s)``).  ``C`` candidates are stored
together: ``params[name]`` has shape ``(C, ...)``.  The objective returns one score per
candidate (``(C,)``, the K-FAC lower bound by default) and, on request, its gradient
with respect to every array (same shapes), and is evaluated for all candidates at once.

Methods (``derivations/20-proposal-search.md``):

``"ascent"`` (default)
    Adam ascent, one independent Adam state per entry: ``m <- b1 m + (1-b1) grad``,
    ``v <- b2 v + (1-b2) grad^2``, ``theta <- theta + step * m_hat / (sqrt(v_hat) + tiny)``.
    Adam's step is invariant to the scale of the objective, and ``step`` is set per array
    to ``lr`` times the root-mean-square of the array's initial values (so LeCun-scaled
    weights of a 64-input layer move by about 0.1/8, a bias drawn from N(0, 1) by 0.1):
    the rule needs no tuning per task.  Each candidate keeps its best point so far, so a
    candidate never ends below its starting score.
``"langevin"``
    Metropolis-adjusted Langevin (MALA) on ``pi(theta) ~ exp(score(theta) / T)`` with the
    diagonal preconditioner ``M = diag(eps^2)`` (per-array ``eps`` as ``step`` above):
    ``theta' = theta + (1/2) M grad log pi(theta) + M^(1/2) xi``, accepted with probability
    ``min(1, pi(theta') q(theta | theta') / (pi(theta) q(theta' | theta)))``,
    ``q(a | b) = N(a; b + (1/2) M grad log pi(b), M)``.  The drift points *up* the score
    (the released code's drift has the opposite sign; senn-math section 6).  ``T`` is
    ``temperature`` times the median absolute initial score, so it is relative to the task's
    scale (the median of the non-zero ones if that is 0, and 1 if all are 0: ``_score_scale``).
    During the first half of the steps each candidate's ``eps`` is adapted towards an
    acceptance rate of 0.574 (Roberts & Rosenthal's optimum for MALA); the second half is a
    plain MALA chain with fixed ``eps`` (detailed balance holds there).  Best point kept.
``"random"``
    No optimisation: the initial candidates as drawn.

Deterministic for a given ``rng`` state.  Tests: ``tests/test_search.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, check_option, check_positive_int, check_rng, check_scalar, check_shape

SEARCH_METHODS = ("ascent", "langevin", "random")


@dataclass
class SearchResult:
    """Outcome of :func:`search`.

    params  : name -> (C, ...) each candidate's best point found
    values  : (C,) score at that point;  initial : (C,) score of the initial candidates
    best    : index of the best candidate;  evaluations : objective calls
    accept_rate : mean acceptance rate of the fixed-step half (Langevin only, else None)
    """
    params: dict
    values: np.ndarray
    initial: np.ndarray
    best: int
    evaluations: int
    accept_rate: float | None = None

    def best_params(self) -> dict:
        """name -> array of the best candidate alone (leading axis removed)."""
        return {k: v[self.best].copy() for k, v in self.params.items()}


def _finite_scores(values: np.ndarray) -> np.ndarray:
    """Non-finite scores (a degenerate candidate) count as -inf: never kept, never accepted."""
    v = np.asarray(values, dtype=np.float64).copy()
    v[~np.isfinite(v)] = -np.inf
    return v


def _call(objective, params: dict, grad: bool, C: int):
    """The first call of ``objective``: its values (non-finite -> -inf) and gradients after
    checking that it returned ``(C,)`` values and, with ``grad``, one gradient per array of
    ``params`` shaped like it (later calls are not re-checked: the search's hot loop)."""
    out = objective(params, grad)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"objective: expected it to return (values, grads), got {type(out).__name__}")
    values, grads = out
    v = np.asarray(values)
    if v.shape != (C,) or v.dtype.kind not in "fi":
        raise ValueError(f"objective: expected values of shape ({C},) (one real score per candidate), "
                         f"got shape {v.shape} dtype {v.dtype}")
    if grad:
        if not isinstance(grads, dict) or set(grads) != set(params):
            got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise ValueError(f"objective: expected gradients for {sorted(params)}, got {got}")
        for k, g in grads.items():
            if np.shape(g) != params[k].shape:
                raise ValueError(f"objective: gradient of {k!r} has shape {np.shape(g)}, "
                                 f"the array has {params[k].shape}")
    return _finite_scores(v), grads


def _zero_bad_rows(g: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """In place on ``g`` (C, P), one array's gradients of C candidates (or a view of its columns):
    zero row ``c`` where it has a non-finite entry or the candidate's score is not finite
    (``ok[c]`` False).  The one rule of both :func:`_finite_grads` and ``_Packed.finite_grads``."""
    g[~np.all(np.isfinite(g), axis=1) | ~ok] = 0.0
    return g


def _finite_grads(grads: dict, ok: np.ndarray) -> dict:
    """name -> float64 copy of each gradient with :func:`_zero_bad_rows` applied per array."""
    out = {}
    for k, g in grads.items():
        g = np.array(g, dtype=np.float64)
        _zero_bad_rows(g.reshape(g.shape[0], -1), ok)
        out[k] = g
    return out


def _step_sizes(params: dict, lr: float) -> dict:
    """Per-array step ``lr * rms(initial array)`` (floor 1e-3 lr for an all-zero array)."""
    return {k: lr * max(float(np.sqrt(np.mean(v * v))) if v.size else 0.0, 1e-3) for k, v in params.items()}


def _check_params(params, name: str = "params") -> tuple[dict, int]:
    if not isinstance(params, dict) or not params:
        raise TypeError(f"{name}: expected a non-empty dict name -> (C, ...) array, got {type(params).__name__}")
    out, C = {}, None
    for k, v in params.items():
        a = as_float_array(v, f"{name}[{k!r}]", allow_empty=True)
        if a.ndim < 1 or a.shape[0] == 0:
            raise ValueError(f"{name}[{k!r}]: expected a (C, ...) array with C >= 1, got shape {a.shape}")
        if C is None:
            C = a.shape[0]
        elif a.shape[0] != C:
            raise ValueError(f"{name}[{k!r}]: {a.shape[0]} candidates, other arrays have {C}")
        out[k] = a.copy() if a is v else a
    return out, C


def _projected(project, params: dict) -> dict:
    """The first call of ``project``: its result must be a dict with the keys of ``params`` and
    real floating arrays of the same shapes (non-finite entries allowed: a degenerate candidate
    scores -inf); later calls are not re-checked (the search's hot loop)."""
    out = project(params)
    if not isinstance(out, dict) or set(out) != set(params):
        raise TypeError(f"project: expected it to return a dict with the keys {sorted(params)}, got "
                        f"{sorted(out) if isinstance(out, dict) else type(out).__name__}")
    for k, v in out.items():
        a = np.asarray(v)
        if a.dtype.kind != "f" or a.shape != params[k].shape:
            raise ValueError(f"project: returned {k!r} of shape {a.shape} dtype {a.dtype}; expected a real "
                             f"floating array of shape {params[k].shape}")
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def search(objective, params, method: str = "ascent", steps: int = 20, rng=None, lr: float = 0.1,
           temperature: float = 0.05, beta1: float = 0.9, beta2: float = 0.999,
           project=None) -> SearchResult:
    """Improve ``C`` candidates at once; see the module docstring for the methods.

    objective(params, grad: bool) -> (values (C,), grads dict or None): the score to maximise.
    params : name -> (C, ...) initial candidates (copied, never modified).
    steps  : iterations (>= 0; 0 or ``method="random"`` returns the initial candidates).
    rng    : ``numpy.random.Generator`` (Langevin needs one).
    lr     : relative step (Adam step / Langevin eps = lr * rms of each initial array).
    temperature : Langevin T relative to the median |initial score|.
    project : optional ``f(params) -> params`` applied after every move (e.g. keep an
        inserted layer's B invertible); its result is what gets scored.
    ``derivations/20-proposal-search.md``.
    """
    if not callable(objective):
        raise TypeError(f"objective: expected a callable (params, grad) -> (values, grads), "
                        f"got {type(objective).__name__}")
    check_option(method, SEARCH_METHODS, "search method")
    steps = check_positive_int(steps, "search steps", minimum=0)
    lr = check_scalar(lr, "search lr", minimum=0.0, strict=True)
    temperature = check_scalar(temperature, "temperature", minimum=0.0, strict=True)
    for name, b in (("beta1", beta1), ("beta2", beta2)):
        if check_scalar(b, name, minimum=0.0) >= 1.0:
            raise ValueError(f"{name}: must be in [0, 1), got {b}")
    rng = check_rng(rng, "search rng")
    if method == "langevin" and rng is None:
        raise ValueError("search method 'langevin' needs rng=np.random.Generator")
    if project is not None and not callable(project):
        raise TypeError("project: expected a callable or None")
    if method == "langevin" and project is not None and steps > 0:
        raise ValueError("search method 'langevin' does not support project= (a projection would "
                         "break detailed balance); use 'ascent'")
    params, C = _check_params(params)
    if project is not None:
        params = _projected(project, params)
    if method == "random" or steps == 0:
        values, _ = _call(objective, params, False, C)
        return SearchResult(params, values, values.copy(), int(np.argmax(values)), 1)
    if method == "ascent":
        return _adam_ascent(objective, params, steps, lr, beta1, beta2, project)
    return _mala(objective, params, steps, lr, temperature, rng, project)


class _Packed:
    """The candidates' arrays side by side in one (C, P) array, so that Adam's elementwise
    update is a few whole-array operations instead of a few per array (the same operations on
    every entry, so the same numbers); ``views(flat)`` gives name -> (C, ...) views back."""

    def __init__(self, params: dict) -> None:
        self.names = list(params)
        self.shapes = {k: v.shape for k, v in params.items()}
        sizes = [int(np.prod(v.shape[1:], dtype=np.int64)) for v in params.values()]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.C = next(iter(params.values())).shape[0]

    def pack(self, d: dict) -> np.ndarray:
        return np.concatenate([np.asarray(d[k], dtype=np.float64).reshape(self.C, -1) for k in self.names], axis=1)

    def views(self, flat: np.ndarray) -> dict:
        """name -> C-contiguous (C, ...) copies of the columns of ``flat`` (what the objective sees
        is laid out as before, so BLAS takes the same path)."""
        return {k: np.ascontiguousarray(flat[:, self.bounds[i]:self.bounds[i + 1]]).reshape(self.shapes[k])
                for i, k in enumerate(self.names)}

    def per_column(self, values: dict) -> np.ndarray:
        """(P,) with every column of array ``k`` holding the scalar ``values[k]``."""
        return np.concatenate([np.full(self.bounds[i + 1] - self.bounds[i], float(values[k]))
                               for i, k in enumerate(self.names)])

    def finite_grads(self, grads: dict, ok: np.ndarray) -> np.ndarray:
        """:func:`_finite_grads` packed: :func:`_zero_bad_rows` on each array's columns (one
        whole-array test first: when every entry is finite only the rows of non-finite scores go)."""
        g = self.pack(grads)
        if np.isfinite(g).all():
            g[~ok] = 0.0
            return g
        for i in range(len(self.names)):
            _zero_bad_rows(g[:, self.bounds[i]:self.bounds[i + 1]], ok)
        return g


def _adam_ascent(objective, params, steps, lr, beta1, beta2, project) -> SearchResult:
    step = _step_sizes(params, lr)
    pk = _Packed(params)
    step_col = pk.per_column(step)
    values, grads = _call(objective, params, True, pk.C)
    initial = values.copy()
    cur = pk.pack(params)
    best = cur.copy()
    best_v = values.copy()
    m = np.zeros_like(cur)
    s = np.zeros_like(cur)
    evals = 1
    for t in range(1, steps + 1):
        g = pk.finite_grads(grads, np.isfinite(values))
        m = beta1 * m + (1.0 - beta1) * g
        s = beta2 * s + (1.0 - beta2) * g * g
        m_hat = m / (1.0 - beta1 ** t)
        s_hat = s / (1.0 - beta2 ** t)
        cur = cur + step_col * m_hat / (np.sqrt(s_hat) + 1e-300)
        if project is not None:
            cur = pk.pack(project(pk.views(cur)))
        values, grads = objective(pk.views(cur), t < steps)
        values = _finite_scores(values)
        evals += 1
        better = values > best_v
        best[better] = cur[better]
        best_v = np.where(better, values, best_v)
        if grads is None:
            break
    best_p = pk.views(best)
    return SearchResult(best_p, best_v, initial, int(np.argmax(best_v)), evals)


def _log_q(to: dict, frm: dict, drift: dict, eps: dict) -> np.ndarray:
    """``log N(to; frm + drift, diag(eps^2))`` per candidate, without the normalising constant
    (``eps`` is the same for both directions of one step, so it cancels in the ratio)."""
    out = 0.0
    for k in to:
        d = (to[k] - frm[k] - drift[k]).reshape(to[k].shape[0], -1)
        out = out - 0.5 * np.sum((d / eps[k].reshape(-1, 1)) ** 2, axis=1)
    return out


def _bcast(e: np.ndarray, like: np.ndarray) -> np.ndarray:
    return e.reshape((-1,) + (1,) * (like.ndim - 1))


def mala_step(objective, cur: dict, values: np.ndarray, grads: dict, eps: dict, T: float, rng):
    """One Metropolis-adjusted Langevin step for every candidate at once.

    Target ``pi ~ exp(score / T)``; proposal ``theta' = theta + (1/2) eps^2 grad score / T
    + eps xi`` (``eps[name]`` (C,) per candidate and array); accept with the Metropolis-Hastings
    ratio of the two Gaussian proposal densities.  ``cur``/``grads``: name -> (C, ...);
    ``values`` (C,).  Returns ``(cur, values, grads, accepted (C,) bool)`` (new arrays).
    ``derivations/20-proposal-search.md`` section 2; ``tests/test_search.py``.  Every argument is
    checked (shapes, finiteness, ``T > 0``, a Generator) before ``rng`` is drawn from;
    ``values`` may hold -inf (a degenerate candidate), not NaN or +inf.
    """
    if not callable(objective):
        raise TypeError(f"objective: expected a callable, got {type(objective).__name__}")
    cur, C = _check_params(cur, "cur")
    v = np.asarray(values)
    if v.dtype.kind != "f":
        raise TypeError(f"values: expected a real floating-point array, got dtype {v.dtype}")
    if v.shape != (C,):
        raise ValueError(f"values: expected shape ({C},), got shape {v.shape}")
    if np.isnan(v).any() or (v == np.inf).any():
        raise ValueError("values: contains NaN or +inf (a degenerate candidate's score is -inf)")
    if not isinstance(grads, dict) or set(grads) != set(cur):
        raise ValueError(f"grads: expected the keys {sorted(cur)}, got "
                         f"{sorted(grads) if isinstance(grads, dict) else type(grads).__name__}")
    grads = {k: as_float_array(g, f"grads[{k!r}]") for k, g in grads.items()}
    for k, g in grads.items():
        check_shape(g, cur[k].shape, f"grads[{k!r}]")
    if not isinstance(eps, dict) or set(eps) != set(cur):
        raise ValueError(f"eps: expected the keys {sorted(cur)}, got "
                         f"{sorted(eps) if isinstance(eps, dict) else type(eps).__name__}")
    eps = {k: as_float_array(e, f"eps[{k!r}]", ndim=1) for k, e in eps.items()}
    for k, e in eps.items():
        check_shape(e, (C,), f"eps[{k!r}]")
        if not (e > 0).all():
            raise ValueError(f"eps[{k!r}]: every step size must be > 0, got min {e.min()}")
    T = check_scalar(T, "T (temperature)", minimum=0.0, strict=True)
    rng = check_rng(rng, "rng", allow_none=False)
    return _mala_step(objective, cur, v.astype(np.float64), grads, eps, T, rng)


def _mala_step(objective, cur: dict, values: np.ndarray, grads: dict, eps: dict, T: float, rng):
    """:func:`mala_step` without the checks (the search's loop)."""
    C = values.shape[0]
    d_cur = {k: 0.5 * _bcast(eps[k], g) ** 2 * g / T for k, g in grads.items()}
    prop = {k: cur[k] + d_cur[k] + _bcast(eps[k], cur[k]) * rng.standard_normal(cur[k].shape) for k in cur}
    v_new, g_new = objective(prop, True)
    v_new = _finite_scores(v_new)
    g_new = _finite_grads(g_new, np.isfinite(v_new))
    d_new = {k: 0.5 * _bcast(eps[k], g) ** 2 * g / T for k, g in g_new.items()}
    with np.errstate(invalid="ignore", over="ignore"):
        log_ratio = (v_new - values) / T + _log_q(cur, prop, d_new, eps) - _log_q(prop, cur, d_cur, eps)
    log_ratio = np.where(np.isfinite(v_new), np.nan_to_num(log_ratio, nan=-np.inf), -np.inf)
    accept = np.log(rng.uniform(size=C)) < log_ratio
    new_cur = {k: np.where(_bcast(accept, cur[k]), prop[k], cur[k]) for k in cur}
    new_g = {k: np.where(_bcast(accept, grads[k]), g_new[k], grads[k]) for k in grads}
    return new_cur, np.where(accept, v_new, values), new_g, accept


def _score_scale(initial: np.ndarray) -> float:
    """The scale Langevin's ``T`` is relative to: the median |score| of the finite initial
    scores; when that is 0 (half or more of them exactly 0, e.g. clipped lower bounds) the
    median of the non-zero ones; 1 when every finite score is 0 or none is finite (there is no
    scale to follow; before, T collapsed to ~1e-300 and no move was ever accepted)."""
    a = np.abs(initial[np.isfinite(initial)])
    med = float(np.median(a)) if a.size else 0.0
    if med > 0.0:
        return med
    nz = a[a > 0.0]
    return float(np.median(nz)) if nz.size else 1.0


#: acceptance rate the adaptive phase of the Langevin search aims for (optimal for MALA)
MALA_TARGET = 0.574


def _mala(objective, params, steps, lr, temperature, rng, project) -> SearchResult:
    C = next(iter(params.values())).shape[0]
    base = _step_sizes(params, lr)
    eps = {k: np.full(C, base[k]) for k in params}
    values, grads = _call(objective, params, True, C)
    grads = _finite_grads(grads, np.isfinite(values))
    initial = values.copy()
    T = temperature * _score_scale(initial)
    cur = {k: v.copy() for k, v in params.items()}
    best_p = {k: v.copy() for k, v in params.items()}
    best_v = values.copy()
    adapt_until, accepted_fixed, proposed_fixed = steps // 2, 0, 0
    # multiplicative adaptation, stationary where the acceptance rate equals MALA_TARGET
    up, down = 1.1, 1.1 ** (-MALA_TARGET / (1.0 - MALA_TARGET))
    for t in range(steps):
        cur, values, grads, accept = _mala_step(objective, cur, values, grads, eps, T, rng)
        better = values > best_v
        for k in cur:
            best_p[k][better] = cur[k][better]
        best_v = np.where(better, values, best_v)
        if t < adapt_until:
            factor = np.where(accept, up, down)
            eps = {k: e * factor for k, e in eps.items()}
        else:
            accepted_fixed += int(accept.sum())
            proposed_fixed += C
    rate = accepted_fixed / proposed_fixed if proposed_fixed else None
    return SearchResult(best_p, best_v, initial, int(np.argmax(best_v)), 1 + steps, rate)
