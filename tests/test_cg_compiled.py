"""The CG solve in one compiled call (natural_gradient.solve_fisher, kernels/cg_numba.py) against
its twin, the Python loop ``cg_solve(op.matvec, ...)`` over the same operator:
derivations/09-fisher.md section 5, derivations/24-sequential-fast-path.md section 7.

Both make the same operator products (the same GGN kernel), the same elementwise updates, and sum
every dot product in the same order (NumPy's pairwise summation, which the kernel reproduces), so
they must give the same bits: x equal entry for entry (np.array_equal, stricter than the 1e-12
relative asked of twins), CGInfo equal field for field, the same warnings with the same reason,
value and message.  Summed in the BLAS ddot order instead, the same cases differed by up to
4.8e-9 relative in x and by one to three iterations (rounding amplified by CG over up to 120
iterations, not a defect of either loop; 24-sequential-fast-path.md section 7).
"""
import warnings

import numpy as np
import pytest

from senn_ref import backend, network_plan
from senn_ref.architectures import mlp
from senn_ref.fisher import FisherOperator
from senn_ref.layers.dense import Dense
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.natural_gradient import CGWarning, cg_solve, natural_gradient, python_loop, solve_fisher
from senn_ref.network import Network
from senn_ref.optim.ngd_cg import NaturalGradientCG
from senn_ref.testing import assert_rel_error

TOL = 1e-12


@pytest.fixture(autouse=True)
def numba_backend():
    with backend.using("numba"):
        yield


def _operator(net, X, Y, loss, metric, damping):
    op = FisherOperator(net, X, loss, metric=metric, Y=Y, damping=damping)
    assert op.compiled_ggn() is not None, "the case must take the compiled path"
    N = op.outputs.shape[0]
    _, E = loss.value_and_grad(op.outputs.reshape(N, -1), Y)
    return op, op.vjp(E.reshape(op.outputs.shape) / N)


def _both(op, b, **kw):
    """``((x, info, fallbacks), (x, info, fallbacks))`` of the compiled and the Python loop."""
    out = []
    for solve in (lambda: solve_fisher(op, b, **kw), lambda: cg_solve(op.matvec, b, **kw)):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            x, info = solve()
        out.append((x, info, [(w.category, getattr(w.message, "reason", None)) for w in rec],
                    [w.message for w in rec]))
    return out


def _assert_twins(compiled, python, b, name):
    (xc, ic, wc, mc), (xp, ip, wp, mp) = compiled, python
    if not np.array_equal(xc, xp):
        assert_rel_error(xc, xp, 0.0, f"{name}: x")        # prints the worst entries
    assert ic == ip, (name, ic, ip)
    assert wc == wp, (name, [str(m) for m in mc], [str(m) for m in mp])
    for a, c in zip(mc, mp):
        assert str(a) == str(c), (name, str(a), str(c))
        if isinstance(a, CGWarning):
            assert a.value == c.value or (np.isnan(a.value) and np.isnan(c.value)), (name, a.value, c.value)


def test_dot_is_numpys_pairwise_sum():
    """The kernel's dot product has the bits of ``np.sum(a * b)`` (and of the Python loop's
    ``_dot``) at every length that selects a different branch of the pairwise sum, on terms
    spread over 16 orders of magnitude (where any other order of the additions shows)."""
    from senn_ref import natural_gradient
    from senn_ref.kernels.cg_numba import _dot
    rng = np.random.default_rng(0)
    bad = []
    for n in [*range(0, 300), 383, 384, 385, 1000, 1023, 1024, 1025, 4097]:
        a = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
        b = rng.standard_normal(n)
        ours, numpy_sum, loop = _dot(a, b), float(np.sum(a * b)), natural_gradient._dot(a, b)
        if not ours == numpy_sum == loop:
            bad.append((n, ours, numpy_sum, loop))
    assert not bad, bad[:5]


def _cases():
    rng = np.random.default_rng(7)
    X1 = np.linspace(-1, 1, 50)[:, None]
    Y1 = np.sin(3 * X1)
    X3 = rng.standard_normal((30, 3))
    labels = rng.integers(0, 4, 30)
    probs = rng.dirichlet(np.ones(4), 30)
    return [
        ("rational 1-16-1 mse", mlp([1, 16, 1], activation="rational", seed=0), X1, Y1, mse(), "euclidean"),
        ("tanh 1-8-8-1 mse", mlp([1, 8, 8, 1], activation="tanh", seed=1), X1, Y1, mse(), "euclidean"),
        ("silu 3-6-4 ce true", mlp([3, 6, 4], activation="silu", seed=2), X3, labels, softmax_cross_entropy(), "true"),
        ("rational 3-5-5-4 ce empirical", mlp([3, 5, 5, 4], activation="rational", seed=3), X3, labels,
         softmax_cross_entropy(), "empirical"),
        ("tanh 3-7-4 ce probabilities euclidean", mlp([3, 7, 4], activation="tanh", seed=4), X3, probs,
         softmax_cross_entropy(), "euclidean"),
        ("rational 3-4-2 mse empirical", mlp([3, 4, 2], activation="rational", seed=5), X3,
         rng.standard_normal((30, 2)), mse(), "empirical"),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("damping", [1.0, 0.1, 1e-3])
def test_compiled_cg_equals_python_loop(case, damping):
    name, net, X, Y, loss, metric = case
    op, g = _operator(net, X, Y, loss, metric, damping)
    rng = np.random.default_rng(11)
    for kw in (dict(tol=1e-10), dict(tol=1e-6, maxiter=100), dict(tol=1e-10, x0=rng.standard_normal(op.P)),
               dict(tol=1e-8, x0=np.zeros(op.P))):
        compiled, python = _both(op, g, **kw)
        _assert_twins(compiled, python, g, f"{name}, damping {damping}, {sorted(kw)}")
        assert compiled[1].iterations > 0
    # a warm start at the previous solution (the NGD-CG optimiser's use): fewer iterations
    x, info = solve_fisher(op, g, tol=1e-6)
    compiled, python = _both(op, g, tol=1e-10, x0=x)
    _assert_twins(compiled, python, g, f"{name}, damping {damping}, warm at the solution")


def test_iteration_cap_twins():
    name, net, X, Y, loss, metric = _cases()[0]
    op, g = _operator(net, X, Y, loss, metric, 1e-6)
    for maxiter in (0, 1, 3):
        compiled, python = _both(op, g, tol=1e-14, maxiter=maxiter)
        _assert_twins(compiled, python, g, f"cap {maxiter}")
        assert compiled[2] == [(CGWarning, "iteration cap")] and compiled[1].iterations == maxiter


def test_curvature_floor_twins():
    """Zero damping on a saturated softmax with the true metric (tests/test_ngd_cg.py's issue-11
    case): both stop at the curvature floor after the same iterations, with the same iterate."""
    from test_ngd_cg import saturated_softmax_case
    net, X, Y = saturated_softmax_case()
    op, g = _operator(net, X, Y, softmax_cross_entropy(), "true", 0.0)
    compiled, python = _both(op, g)
    _assert_twins(compiled, python, g, "saturated softmax")
    assert compiled[1].indefinite and compiled[2] == [(CGWarning, "curvature floor")]


def test_nonfinite_twins():
    """A right-hand side of norm 1e154 with damping 10: ``||A p|| >= 1e155`` is finite entry by
    entry but its square overflows, so the floor is not finite: the kernel's own non-finite stop.
    And a right-hand side whose ``r.r`` overflows at the start."""
    name, net, X, Y, loss, metric = _cases()[0]
    op, g = _operator(net, X, Y, loss, metric, 10.0)
    b = 1e154 * g / np.linalg.norm(g)
    compiled, python = _both(op, b)
    _assert_twins(compiled, python, b, "floor overflow")
    assert compiled[1].nonfinite and compiled[1].iterations == 0 and compiled[2] == [(CGWarning, "non-finite")]
    assert np.array_equal(compiled[0], np.zeros(op.P))
    b = np.full(op.P, 1e160)
    compiled, python = _both(op, b, x0=np.ones(op.P))
    assert compiled[1].nonfinite and python[1].nonfinite and compiled[1].iterations == python[1].iterations == 0
    assert np.array_equal(compiled[0], np.ones(op.P)) and np.array_equal(python[0], np.ones(op.P))
    # (||b|| = inf as well: NumPy's norm may add "overflow encountered in dot", in either loop)
    cg_only = [[w for w in run[2] if w[0] is CGWarning] for run in (compiled, python)]
    assert cg_only[0] == cg_only[1] == [(CGWarning, "non-finite")]


def test_nonfinite_product_reruns_the_python_loop():
    """A GGN product that overflows inside the compiled kernel (Dense W ~ 1e160 then W ~ 1e-10:
    the outputs are finite, ``F v`` is not): the compiled call gives up and the Python loop runs,
    whose operator takes the layer-wise path and warns as NumPy does - the same bits and warnings."""
    rng = np.random.default_rng(3)
    d1, d2 = Dense(2, 3, rng), Dense(3, 1, rng)
    d1.params["W"] = 1e160 * rng.standard_normal((3, 2))
    d2.params["W"] = 1e-10 * rng.standard_normal((1, 3))
    net = Network([d1, d2])
    X = rng.standard_normal((5, 2))
    op = FisherOperator(net, X, mse(), damping=0.1)
    b = rng.standard_normal(op.P)
    compiled, python = _both(op, b, tol=1e-8, maxiter=5)
    assert np.array_equal(compiled[0], python[0])
    assert compiled[2] == python[2] and any(c is RuntimeWarning for c, _ in python[2]), python[2]
    assert compiled[1] == python[1]


def test_natural_gradient_and_ngd_step_twins():
    """``natural_gradient`` and a few ``NaturalGradientCG`` steps (warm-started) on the 1-D net,
    compiled loop against ``python_loop()``: the same parameters to 1e-12."""
    X = np.linspace(-1, 1, 50)[:, None]
    Y = np.sin(3 * X)
    nets = [mlp([1, 16, 1], seed=0), mlp([1, 16, 1], seed=0)]
    opts = [NaturalGradientCG(lr=0.1, damping=0.1, cg_tol=1e-6), NaturalGradientCG(lr=0.1, damping=0.1, cg_tol=1e-6)]
    u, g, value, info = natural_gradient(nets[0], X, Y, mse(), damping=0.1)
    with python_loop():
        u2, g2, value2, info2 = natural_gradient(nets[1], X, Y, mse(), damping=0.1)
    assert value == value2 and np.array_equal(g, g2) and info.iterations == info2.iterations
    assert_rel_error(u, u2, TOL, "natural gradient")
    for step in range(5):
        opts[0].step(nets[0], X, Y, mse())
        with python_loop():
            opts[1].step(nets[1], X, Y, mse())
        assert opts[0].last_info.iterations == opts[1].last_info.iterations, step
        assert_rel_error(nets[0].get_flat(), nets[1].get_flat(), TOL, f"parameters after step {step}")


def test_bad_input_and_fallback_paths():
    name, net, X, Y, loss, metric = _cases()[0]
    op, g = _operator(net, X, Y, loss, metric, 0.1)
    n0 = op.n_products
    with pytest.raises(ValueError, match="b: expected shape"):
        solve_fisher(op, g[:-1])
    with pytest.raises(ValueError, match="x0"):
        solve_fisher(op, g, x0=np.zeros(op.P + 1))
    with pytest.raises(ValueError, match="NaN"):
        solve_fisher(op, np.where(np.arange(op.P) == 2, np.nan, g))
    with pytest.raises(ValueError, match="tol"):
        solve_fisher(op, g, tol=0.0)
    assert op.n_products == n0
    x, info = solve_fisher(op, np.zeros(op.P))
    assert info.iterations == 0 and np.array_equal(x, np.zeros(op.P))
    x, info = solve_fisher(op, g.copy(), tol=1e-10)
    assert op.n_products == n0 + info.iterations           # one product per iteration, none for x0 = 0
    ro = g.copy()
    ro.flags.writeable = False
    assert np.array_equal(solve_fisher(op, ro, tol=1e-10)[0], x)
    # outside the compiled path (layerwise(), NumPy backend) solve_fisher is the Python loop
    for ctx in (network_plan.layerwise, lambda: backend.using("numpy")):
        with ctx():
            op2 = FisherOperator(net, X, loss, damping=0.1)
            assert op2.compiled_ggn() is None
            x2, info2 = solve_fisher(op2, g, tol=1e-10)
            x3, info3 = cg_solve(op2.matvec, g, tol=1e-10)
        assert np.array_equal(x2, x3) and info2 == info3
