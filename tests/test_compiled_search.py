"""The compiled proposal search (grow/compiled_search.py, kernels/search_numba.py) against its
NumPy twin (kernels/search_numpy.py: WidthProposals.score_unchecked and search.search):
objective, gradient, the whole Adam ascent, the proposal, and where the compiled path is taken.
derivations/25-compiled-search.md."""
import subprocess
import sys

import numpy as np
import pytest
from grow_cases import fd_check_candidates, make_case

from senn_ref import backend, losses
from senn_ref.architectures import mlp
from senn_ref.grow import compiled_search
from senn_ref.grow.compiled_search import compiled_width_search, numpy_search, search_layout, width_objective
from senn_ref.grow.kfac_proposal import WidthProposals
from senn_ref.grow.proposals import best_width_proposal
from senn_ref.kernels.search_numpy import width_objective_numpy, width_search_numpy
from senn_ref.testing import assert_close, assert_rel_error


def _teacher_like(activation="rational", N=50, seed=0):
    """A 1-D regression hidden layer like the teacher task's (N = 50, one input, one output)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 1))
    return mlp([1, 5, 1], activation=activation, seed=seed), X, np.sin(2 * X), losses.mse()


#: (label, net, X, Y, loss, hidden layer): one input and N = 50 (the teacher task), two inputs
#: and N = 12 (not a multiple of the kernel's 4-way sums), two consumer outputs, a deep net's
#: second hidden layer, a softmax consumer
def _cases():
    out = [("teacher_rational", *_teacher_like(), 0), ("teacher_tanh", *_teacher_like("tanh"), 0)]
    for name, layer in (("mlp_rational", 0), ("mlp_tanh", 0), ("mlp_deep", 2), ("mlp_softmax", 0)):
        c = make_case(name, 0)
        out.append((name, c.net, c.X, c.Y, c.loss, layer))
    return out


CASES = {c[0]: c[1:] for c in _cases()}


def _context(name, damping):
    net, X, Y, loss, layer = CASES[name]
    return WidthProposals(net, X, Y, loss, layer, damping=damping)


def _params(ctx, C, seed=1):
    W, b, act = ctx.random_candidates(C, np.random.default_rng(seed))
    return {"W": W, "b": b, **{f"act.{k}": v for k, v in act.items()}}


def test_cases_take_the_compiled_path():
    for name in CASES:
        assert search_layout(_context(name, 0.1), 10) is not None, name


@pytest.mark.parametrize("damping", [0.0, 0.1])
@pytest.mark.parametrize("name", sorted(CASES))
def test_objective_equals_numpy_twin(name, damping):
    """Lower bound (C,) and its gradient for every array, compiled against WidthProposals'
    NumPy code: 1e-12 relative (the same sums in another order; tanh a few ulp apart)."""
    ctx = _context(name, damping)
    params = _params(ctx, 40)
    v, g = width_objective(ctx, params, True)
    v_ref, g_ref = width_objective_numpy(ctx, params, True)
    assert np.all(np.isfinite(v_ref)) and np.all(v_ref >= 0) and np.max(v_ref) > 0
    assert_close(v, v_ref, 1e-12, atol=1e-12 * np.abs(v_ref).max(), name=f"{name} lower bound")
    assert set(g) == set(g_ref) == set(params)
    for key in params:
        assert g[key].shape == params[key].shape
        assert_rel_error(g[key], g_ref[key], 1e-12, name=f"{name} d/d{key}")
    v2, none = width_objective(ctx, params, False)
    assert none is None and np.array_equal(v2, v)


@pytest.mark.parametrize("name", ["teacher_rational", "teacher_tanh", "mlp_deep", "mlp_softmax"])
def test_compiled_gradient_matches_finite_differences(name):
    ctx = _context(name, 0.01)
    params = _params(ctx, 3, seed=2)
    W, b = params["W"], params["b"]
    act = {k[4:]: v for k, v in params.items() if k.startswith("act.")}

    def value(W_, b_, a_):
        return width_objective(ctx, {"W": W_, "b": b_, **{f"act.{k}": v for k, v in a_.items()}}, False)[0]

    v, g = width_objective(ctx, params, True)
    assert np.all(v > 1e-8)

    class Grads:
        grad_W, grad_b = g["W"], g["b"]
        grad_act = {k[4:]: v for k, v in g.items() if k.startswith("act.")}
    fd_check_candidates(value, W, b, act, Grads, f"{name} compiled dLB")


@pytest.mark.parametrize("name", sorted(CASES))
def test_search_equals_numpy_search(name):
    """The whole Adam ascent (20 steps, 30 candidates): every candidate's best point, its score,
    the initial scores, the best index and the evaluation count as search.search gives them."""
    ctx = _context(name, 0.1)
    params = _params(ctx, 30)
    res = compiled_width_search(ctx, params, 20, 0.1)
    ref = width_search_numpy(ctx, params, 20, 0.1)
    assert res.best == ref.best and res.evaluations == ref.evaluations == 21
    assert np.all(res.values >= res.initial) and np.max(res.values) > np.max(res.initial)
    assert_close(res.initial, ref.initial, 1e-12, atol=1e-12 * np.abs(ref.initial).max(), name="initial")
    assert_close(res.values, ref.values, 1e-12, atol=1e-12 * np.abs(ref.values).max(), name="values")
    assert set(res.params) == set(ref.params)
    for key in ref.params:
        assert res.params[key].shape == ref.params[key].shape
        assert_rel_error(res.params[key], ref.params[key], 1e-12, name=f"{name} best {key}")
    for key, v in params.items():        # the caller's arrays are not modified
        assert np.array_equal(v, _params(ctx, 30)[key])


def test_non_finite_candidates_score_minus_inf_as_in_the_search(monkeypatch):
    """A candidate whose score overflows is -inf with a zero gradient row (the search's rule),
    never moves and never wins; the others are unaffected.  (Both searches' step sizes are taken
    from the finite candidates here: the rms of a 1e300 entry would overflow.)"""
    from senn_ref.grow import search as search_module

    def steps_of_finite_rows(p, lr):
        return {k: lr * float(np.sqrt(np.mean(np.delete(v, 2, axis=0) ** 2))) for k, v in p.items()}
    monkeypatch.setattr(search_module, "_step_sizes", steps_of_finite_rows)
    monkeypatch.setattr(compiled_search, "_step_sizes", steps_of_finite_rows)
    ctx = _context("teacher_rational", 0.1)
    params = _params(ctx, 6)
    params["W"][2] = 1e300             # h ~ 1e300: A_h overflows, the lower bound is NaN
    v, g = width_objective(ctx, params, True)
    assert v[2] == -np.inf and all(np.all(g[k][2] == 0) for k in g)
    assert np.all(np.isfinite(np.delete(v, 2)))
    res = compiled_width_search(ctx, params, 5, 0.1)
    with np.errstate(all="ignore"):
        ref = width_search_numpy(ctx, params, 5, 0.1)
    assert res.values[2] == ref.values[2] == -np.inf and res.best != 2
    assert np.array_equal(res.params["W"][2], params["W"][2])
    keep = np.arange(6) != 2
    assert_close(res.values[keep], ref.values[keep], 1e-12, name="finite candidates")


def test_a_non_finite_gradient_array_is_zeroed_alone_as_in_the_search():
    """A finite score whose W gradient overflows (a producer input column of +-1e306 that neither
    the net nor the candidates use, residuals ~1e4): the search zeroes that candidate's W
    gradient only (``search._zero_bad_rows`` per array), b, v, c, l keep theirs and still move.
    The kernel zeroed the whole row before (b's gradient 0 against ~1e6, the search stuck at the
    initial scores, 3.9e5 against 1.2e6 for candidate 0)."""
    from senn_ref.grow.search import _finite_grads
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 2))
    X[:, 1] = 1e306 * np.sign(rng.standard_normal(20))
    net = mlp([2, 4, 1], activation="rational", seed=0)
    net.layers[0].params["W"][:, 1] = 0.0
    with np.errstate(over="ignore"):        # the net's own gradient of that column overflows too
        ctx = WidthProposals(net, X, 1e4 * np.sin(X[:, :1]), losses.mse(), 0, damping=0.1)
    params = _params(ctx, 4)
    params["W"][:, :, 1] = 0.0
    v, g = width_objective(ctx, params, True)
    with np.errstate(all="ignore"):
        v_ref, g_raw = width_objective_numpy(ctx, params, True)
        g_ref = _finite_grads(g_raw, np.isfinite(v_ref))
    assert np.all(np.isfinite(v_ref)) and not np.all(np.isfinite(g_raw["W"]))
    assert_close(v, v_ref, 1e-12, name="lower bound")
    assert np.all(g["W"] == 0) and np.all(g_ref["W"] == 0)
    for key in ("b", "act.v", "act.c", "act.l"):
        assert np.all(g_ref[key] != 0), key
        assert_rel_error(g[key], g_ref[key], 1e-12, name=f"d/d{key}")
    res = compiled_width_search(ctx, params, 5, 0.1)
    with np.errstate(all="ignore"):
        ref = width_search_numpy(ctx, params, 5, 0.1)
    assert np.all(ref.values > ref.initial)
    assert_close(res.values, ref.values, 1e-12, name="searched lower bounds")
    for key in ref.params:
        assert_rel_error(res.params[key], ref.params[key], 1e-12, name=f"best {key}")


def test_best_width_proposal_is_the_same_either_way():
    """The proposal of best_width_proposal (compiled search) and under numpy_search()."""
    net, X, Y, loss, layer = CASES["teacher_rational"]
    kw = dict(n_candidates=20, steps=10, damping=0.1)
    got = best_width_proposal(net, X, Y, loss, layer, rng=np.random.default_rng(5), **kw)
    with numpy_search():
        ref = best_width_proposal(net, X, Y, loss, layer, rng=np.random.default_rng(5), **kw)
    assert got.evaluations == ref.evaluations == 11
    for field in ("lower_bound", "kfac_gain", "initial_best"):
        assert_close(getattr(got, field), getattr(ref, field), 1e-12, name=field)
    assert_rel_error(got.params["W"], ref.params["W"], 1e-12, name="W")
    assert_rel_error(got.params["b"], ref.params["b"], 1e-12, name="b")
    for key in ref.params["act"]:
        assert_rel_error(got.params["act"][key], ref.params["act"][key], 1e-12, name=key)


def test_taken_only_where_it_applies(monkeypatch):
    ctx = _context("teacher_rational", 0.1)
    params = _params(ctx, 8)
    assert search_layout(ctx, 8) is not None
    with numpy_search():
        assert search_layout(ctx) is None and compiled_width_search(ctx, params, 3, 0.1) is None
    with backend.using("numpy"):
        assert search_layout(ctx) is None
    with pytest.raises(ValueError, match="ctx"):
        with numpy_search():
            width_objective(ctx, params, True)
    monkeypatch.setattr(compiled_search, "MAX_SEARCH_WORK", 8 * 50 * 2 - 1)
    assert search_layout(ctx, 8) is None and search_layout(ctx, 7) is not None
    monkeypatch.undo()
    k2 = WidthProposals(*CASES["teacher_rational"][:4], 0, damping=0.1)
    W, b, act = k2.random_candidates(4, np.random.default_rng(0), k=2)   # two units: A_h is 2 x 2
    res = compiled_width_search(k2, {"W": W, "b": b, **{f"act.{k}": v for k, v in act.items()}}, 3, 0.1)
    assert res is None
    for name, layer in (("mlp_silu", 0), ("conv_flatten", 0), ("conv_flatten", 3)):
        c = make_case(name, 0)
        assert search_layout(WidthProposals(c.net, c.X, c.Y, c.loss, layer, damping=0.1)) is None, name


def test_bad_input_is_refused_before_anything_runs():
    ctx = _context("teacher_rational", 0.1)
    params = _params(ctx, 4)
    with pytest.raises(ValueError, match="keys"):
        compiled_width_search(ctx, {k: v for k, v in params.items() if k != "b"}, 3, 0.1)
    with pytest.raises(ValueError, match=r"params\['act.v'\]"):
        compiled_width_search(ctx, {**params, "act.v": params["act.v"][:3]}, 3, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        compiled_width_search(ctx, {**params, "b": np.full_like(params["b"], np.nan)}, 3, 0.1)
    with pytest.raises(ValueError, match=r"params\['W'\]"):
        width_objective(ctx, {**params, "W": params["W"][:, :, None]}, True)
    with pytest.raises(TypeError, match=r"params\['b'\]"):
        width_objective(ctx, {**params, "b": params["b"].astype(int)}, True)
    with pytest.raises(ValueError, match="search steps"):
        compiled_width_search(ctx, params, 0, 0.1)
    with pytest.raises(ValueError, match="search lr"):
        compiled_width_search(ctx, params, 3, -0.1)
    with pytest.raises(ValueError, match="beta2"):
        compiled_width_search(ctx, params, 3, 0.1, beta2=1.0)
    with pytest.raises(TypeError, match="grad"):
        width_objective(ctx, params, 1)


def test_numpy_backend_process_never_imports_numba():
    """A proposal search under SENN_REF_BACKEND=numpy runs the NumPy search, without Numba."""
    code = ("import sys, numpy as np\n"
            "from senn_ref import losses, mlp\n"
            "from senn_ref.grow.proposals import best_width_proposal\n"
            "X = np.linspace(-2, 2, 20)[:, None]\n"
            "p = best_width_proposal(mlp([1, 2, 1]), X, np.sin(X), losses.mse(), 0, n_candidates=5,\n"
            "                        rng=np.random.default_rng(0), steps=3, damping=0.1)\n"
            "assert p.evaluations == 4 and p.lower_bound > 0\n"
            "assert 'numba' not in sys.modules, sorted(m for m in sys.modules if 'numba' in m)\n")
    import os
    env = dict(os.environ, SENN_REF_BACKEND="numpy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
