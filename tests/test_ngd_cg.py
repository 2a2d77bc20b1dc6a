"""NaturalGradientCG: one step equals the dense damped natural-gradient step, training lowers
the loss, and the warm-start state survives growth (senn-math section 11, claim 11).

Tolerances: a step with cg_tol=1e-12 matches the dense solve to 1e-9 relative (CG residual
times the condition number of F + delta I, which is below 1e3 with delta = 0.1 here).
"""
import numpy as np
import pytest

from senn_ref.fisher import exact
from senn_ref.layers.activations import Tanh
from senn_ref.layers.dense import Dense
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.natural_gradient import CGWarning
from senn_ref.network import Network
from senn_ref.optim.ngd_cg import NaturalGradientCG
from senn_ref.score import mean_loss_grad
from senn_ref.testing import assert_close, assert_rel_error


def regression(rng, N=32):
    net = Network([Dense(2, 6, rng, bias_std=0.3), Tanh((6,)), Dense(6, 1, rng)])
    X = rng.uniform(-2, 2, (N, 2))
    Y = np.sin(X[:, :1]) * np.cos(X[:, 1:])
    return net, X, Y, mse()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_step_equals_dense_natural_gradient_step(rng, weight_decay):
    net, X, Y, loss = regression(rng, N=20)
    theta = net.get_flat()
    value, g = mean_loss_grad(net, X, Y, loss)
    F = exact(net, X, loss)
    direction = np.linalg.solve(F + 0.1 * np.eye(len(theta)), g + weight_decay * theta)
    opt = NaturalGradientCG(lr=0.5, damping=0.1, cg_tol=1e-12, cg_maxiter=500, weight_decay=weight_decay)
    returned = opt.step(net, X, Y, loss)
    assert_close(returned, value, rtol=1e-14, name="loss before the step")
    assert opt.last_info.converged
    assert_rel_error(net.get_flat(), theta - 0.5 * direction, 1e-10, "parameters after step")
    assert_rel_error(np.concatenate([opt.state_dict()["state"][k]["u"].ravel() for k in net.named_params()]),
                     direction, 1e-9, "stored warm start")


def test_training_decreases_loss(rng):
    net, X, Y, loss = regression(rng)
    opt = NaturalGradientCG(lr=0.5, damping=0.1, cg_tol=1e-6, cg_maxiter=50)
    first = opt.step(net, X, Y, loss)
    losses = [first] + [opt.step(net, X, Y, loss) for _ in range(25)]
    final = loss.value(net.forward(X), Y)
    assert final < 0.1 * first, (first, final)
    assert sum(b < a for a, b in zip(losses[:-1], losses[1:])) >= 20, losses


def test_classification_true_metric_decreases_loss(rng):
    net = Network([Dense(2, 5, rng, bias_std=0.3), Tanh((5,)), Dense(5, 3, rng)])
    X = rng.standard_normal((30, 2))
    Y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    loss = softmax_cross_entropy()
    opt = NaturalGradientCG(lr=0.5, damping=0.1, metric="true", cg_maxiter=50)
    first = opt.step(net, X, Y, loss)
    for _ in range(15):
        opt.step(net, X, Y, loss)
    assert loss.value(net.forward(X), Y) < 0.5 * first


def test_warm_start_is_used(rng):
    net, X, Y, loss = regression(rng)
    opt = NaturalGradientCG(lr=1e-6, damping=0.1, cg_tol=1e-10, cg_maxiter=500)
    opt.step(net, X, Y, loss)
    cold = opt.last_info.iterations
    opt.step(net, X, Y, loss)            # tiny step: the previous solution is nearly exact
    assert opt.last_info.iterations < cold, (opt.last_info.iterations, cold)


def test_pad_state_keeps_old_slots_and_training_continues(rng):
    """Widen the hidden layer of a linear chain 2 -> 3 -> 1 to 2 -> 4 -> 1 (function-preserving)."""
    net = Network([Dense(2, 3, rng, bias_std=0.3), Dense(3, 1, rng)])
    X, Y, loss = rng.standard_normal((10, 2)), rng.standard_normal((10, 1)), mse()
    opt = NaturalGradientCG(lr=0.3, damping=0.1)
    opt.step(net, X, Y, loss)
    before = {k: v["u"].copy() for k, v in opt.state_dict()["state"].items()}
    out = net.forward(X)
    d0, d1 = net.layers
    d0.params["W"] = np.vstack([d0.params["W"], rng.standard_normal((1, 2))])
    d0.params["b"] = np.append(d0.params["b"], 0.0)
    d1.params["W"] = np.hstack([d1.params["W"], np.zeros((1, 1))])
    net.check_structure()
    assert_close(net.forward(X), out, rtol=1e-14, atol=1e-15, name="growth is function-preserving")
    grown = net.get_flat()
    with pytest.raises(ValueError, match="pad_state"):
        opt.step(net, X, Y, loss)       # state not padded yet: refused before any change
    assert np.array_equal(net.get_flat(), grown), "refused step changed the parameters"
    opt.pad_state("dense0.W", (4, 2), (slice(0, 3), slice(None)))
    opt.pad_state("dense0.b", (4,), slice(0, 3))
    opt.pad_state("dense1.W", (1, 4), (slice(None), slice(0, 3)))
    after = {k: v["u"] for k, v in opt.state_dict()["state"].items()}
    assert np.array_equal(after["dense0.W"][:3], before["dense0.W"]) and np.all(after["dense0.W"][3] == 0)
    assert np.array_equal(after["dense0.b"][:3], before["dense0.b"]) and after["dense0.b"][3] == 0
    assert np.array_equal(after["dense1.W"][:, :3], before["dense1.W"]) and after["dense1.W"][0, 3] == 0
    assert np.array_equal(after["dense1.b"], before["dense1.b"])
    first = loss.value(net.forward(X), Y)
    for _ in range(5):
        opt.step(net, X, Y, loss)
    assert loss.value(net.forward(X), Y) < first
    with pytest.raises(ValueError, match="old_index"):
        opt.pad_state("dense0.b", (5,), slice(0, 3))


def test_fit_drives_it_as_a_curvature_optimiser(rng):
    from senn_ref.train import fit
    net, X, Y, loss = regression(rng)
    first = loss.value(net.forward(X), Y)
    fit(net, X, Y, loss, NaturalGradientCG(lr=0.5, damping=0.1, cg_maxiter=30), epochs=5, batch_size=32)
    assert loss.value(net.forward(X), Y) < first


def test_cg_cap_warns_but_steps(rng):
    net, X, Y, loss = regression(rng)
    opt = NaturalGradientCG(lr=0.1, damping=1e-6, cg_tol=1e-14, cg_maxiter=2)
    with pytest.warns(CGWarning, match="did not converge"):
        opt.step(net, X, Y, loss)
    assert np.all(np.isfinite(net.get_flat())) and not opt.last_info.converged


def test_errors(rng):
    net, X, Y, loss = regression(rng)
    with pytest.raises(ValueError, match="lr"):
        NaturalGradientCG(lr=0.0)
    with pytest.raises(ValueError, match="damping"):
        NaturalGradientCG(damping=-0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        NaturalGradientCG(metric="hessian")
    with pytest.raises(ValueError, match="cg_maxiter"):
        NaturalGradientCG(cg_maxiter=0)
    with pytest.raises(ValueError, match="cg_tol"):
        NaturalGradientCG(cg_tol=0.0)
    opt = NaturalGradientCG()
    theta = net.get_flat()
    Xbad = X.copy()
    Xbad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        opt.step(net, Xbad, Y, loss)
    with pytest.raises(ValueError, match="Y"):
        opt.step(net, X, Y[:5], loss)
    assert np.array_equal(net.get_flat(), theta)


# ------------------------------------------------ CG breakdown at zero damping (issue 11 item 2)
def saturated_softmax_case():
    """One Dense layer 2 -> 3 (P = 9) with weights of size ~300: the softmax is saturated, the
    true-metric GGN is numerically singular at zero damping.  Before the curvature floor, CG
    took steps alpha = r^T r / p^T A p with p^T A p at rounding level, overflowed and ended in
    'ValueError: v: contains 9 NaN or infinite value(s)' from the Fisher operator."""
    rng = np.random.default_rng(1800)
    d = Dense(2, 3, rng, bias_std=1.0)
    d.params["W"] = 300 * rng.standard_normal((3, 2))
    X = rng.standard_normal((11, 2))
    Y = rng.integers(0, 3, 11)
    return Network([d]), X, Y


def test_cg_zero_damping_saturated_softmax_stops_with_cgwarning():
    from senn_ref import score
    net, X, Y = saturated_softmax_case()
    with pytest.warns(CGWarning) as record:
        value = score.eta(net, X, Y, softmax_cross_entropy(), curvature="cg", damping=0.0, metric="true")
    assert all(issubclass(w.category, CGWarning) for w in record), [str(w.message) for w in record]
    assert np.isfinite(value) and value >= 0.0
    assert "floor" in str(record[0].message)


def test_cg_solve_curvature_floor_and_nonfinite_stops():
    from senn_ref.natural_gradient import CURVATURE_FLOOR, cg_solve
    # diag(1, 1e-20): the second direction's curvature 1e-20 ||p||^2 is below the floor
    # (64 eps ~ 1.4e-14 times ||A||): stop after one step with the finite first iterate,
    # the minimiser along b = (1, 1): x = (b.b / b.A b) b = (2, 2)
    A = np.diag([1.0, 1e-20])
    with pytest.warns(CGWarning, match="floor"):
        x, info = cg_solve(lambda v: A @ v, np.array([1.0, 1.0]))
    assert info.indefinite and not info.nonfinite and info.iterations == 1
    assert np.allclose(x, [2.0, 2.0], rtol=1e-14, atol=0)
    # a curvature just above the floor is still used: diag(1, 1e-12) solves to 1e-10 relative
    B = np.diag([1.0, 1e-12])
    x, info = cg_solve(lambda v: B @ v, np.array([1.0, 1e-12]), tol=1e-14)
    assert info.converged and abs(x[1] - 1.0) < 1e-10 and 1e-12 > CURVATURE_FLOOR
    # an operator product that overflows: stop with the last finite iterate (here x0 = 0)
    with pytest.warns(CGWarning, match="not finite"):
        x, info = cg_solve(lambda v: 1e308 * v, np.ones(3))
    assert info.nonfinite and info.iterations == 0 and np.array_equal(x, np.zeros(3))
    with pytest.warns(CGWarning, match="not finite"):
        x, info = cg_solve(lambda v: np.full_like(v, np.nan), np.ones(3))
    assert info.nonfinite and np.array_equal(x, np.zeros(3))
