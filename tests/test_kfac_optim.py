"""The K-FAC optimiser: update formula, running averages, inverse refresh, growth-safe state."""
import numpy as np
import pytest

from senn_ref.kfac import (block_inverse, factored_damping, kfac_factors, kron_solve_factored,
                           rational_blocks)
from senn_ref.kfac.rational_block import RATIONAL_RCOND
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse
from senn_ref.network import Network
from senn_ref.optim.kfac import KFAC
from senn_ref.testing import assert_close, assert_rel_error


def regression(seed=1, N=48):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 2))
    Y = np.sin(2.0 * X[:, :1]) + 0.5 * X[:, 1:] ** 2
    net = Network([Dense(2, 6, rng, 1.0), Rational(6, "random", rng), Dense(6, 1, rng, 1.0)])
    return net, X, Y


def test_decreases_loss_on_small_regression():
    net, X, Y = regression()
    opt = KFAC(lr=0.2, damping=0.05, ema=0.9, inverse_every=2)
    losses = [opt.step(net, X, Y, mse()) for _ in range(40)]
    final = mse().value(net.forward(X), Y)
    assert final < 0.25 * losses[0], (losses[0], final)


def test_first_step_is_the_damped_kfac_direction():
    """theta_1 = theta_0 - lr * [G_d^-1 V A_d^-1 for dense (bias folded), (B_u + d I)^+ g_u for
    rational units], with V the mean-loss gradient plus weight decay."""
    net, X, Y = regression(2, 10)
    lr, d, wd = 0.3, 0.1, 0.01
    theta0 = {k: v.copy() for k, v in net.named_params().items()}
    fac = kfac_factors(net, X, Y, mse())
    blocks = rational_blocks(net, X, Y, mse())
    grads = net.loss_and_grad(X, Y, mse())[1].grads
    grads = {k: g + wd * theta0[k] for k, g in grads.items()}
    KFAC(lr, d, weight_decay=wd).step(net, X, Y, mse())
    for name in ("dense0", "dense1"):
        V = np.concatenate([grads[f"{name}.W"], grads[f"{name}.b"][:, None]], axis=1)
        U = kron_solve_factored(fac[name].A, fac[name].G, V, d)
        assert_rel_error(theta0[f"{name}.W"] - net.named_params()[f"{name}.W"], lr * U[:, :-1], 1e-10,
                         name=f"{name}.W step")
        assert_rel_error(theta0[f"{name}.b"] - net.named_params()[f"{name}.b"], lr * U[:, -1], 1e-10,
                         name=f"{name}.b step")
    inv = block_inverse(blocks["rational0"].B, d, RATIONAL_RCOND)
    g = np.stack([grads[f"rational0.{k}"] for k in ("v", "c", "l")], axis=1)
    step = np.stack([theta0[f"rational0.{k}"] - net.named_params()[f"rational0.{k}"]
                     for k in ("v", "c", "l")], axis=1)
    assert_rel_error(step, lr * np.einsum("upq,uq->up", inv, g), 1e-10, name="rational step")


def test_running_average_and_inverse_refresh():
    net, X, Y = regression(3, 12)
    ema = 0.8
    opt = KFAC(lr=0.05, damping=0.1, ema=ema, inverse_every=3)
    f1 = kfac_factors(net, X, Y, mse())
    opt.step(net, X, Y, mse())
    inv_after_1 = [x.copy() for x in opt.inverses["dense0"]]
    f2 = kfac_factors(net, X, Y, mse())
    opt.step(net, X, Y, mse())
    for name in f1:
        assert_close(opt.factors[name].A, ema * f1[name].A + (1 - ema) * f2[name].A, 1e-13, 1e-15, name="A")
        assert_close(opt.factors[name].G, ema * f1[name].G + (1 - ema) * f2[name].G, 1e-13, 1e-15, name="G")
    for a, b in zip(opt.inverses["dense0"], inv_after_1):      # not refreshed at step 2, 3
        assert np.array_equal(a, b)
    opt.step(net, X, Y, mse())
    assert np.array_equal(opt.inverses["dense0"][1], inv_after_1[1])
    opt.step(net, X, Y, mse())                                  # step 4: t = 3 -> refresh
    G_d = opt.factors["dense0"].G + np.sqrt(0.1) * np.eye(6)   # G changed with the parameters
    assert not np.array_equal(opt.inverses["dense0"][1], inv_after_1[1])
    assert_close(opt.inverses["dense0"][1], np.linalg.inv(G_d), 1e-10, 1e-12, name="refreshed G inverse")


def grow_units(net, rng, where):
    """Insert one hidden unit at position ``where`` (dense0 output, rational0, dense1 input);
    the new unit's outgoing weight is 0, so the function is preserved."""
    d0, r, d1 = net.layers
    ins = lambda a, val, axis: np.insert(a, where, val, axis=axis)
    d0.params["W"] = ins(d0.params["W"], rng.standard_normal(d0.n_in), 0)
    d0.params["b"] = ins(d0.params["b"], 0.0, 0)
    for k in ("v", "c", "l"):
        r.params[k] = ins(r.params[k], rng.standard_normal(), 0)
    d1.params["W"] = ins(d1.params["W"], 0.0, 1)
    net.check_structure()


@pytest.mark.parametrize("where", [6, 2])
def test_pad_state_keeps_old_slots_bit_identical(where):
    net, X, Y = regression(4, 16)
    d = 0.1
    opt = KFAC(lr=0.05, damping=d, ema=0.9)
    for _ in range(2):
        opt.step(net, X, Y, mse())
    old = {k: (f.A.copy(), f.G.copy()) for k, f in opt.factors.items()}
    old_inv = {k: tuple(x.copy() for x in v) for k, v in opt.inverses.items()}
    old_B, old_Binv = opt.blocks["rational0"].copy(), opt.block_inverses["rational0"].copy()
    before = net.forward(X)
    grow_units(net, np.random.default_rng(0), where)
    assert np.max(np.abs(net.forward(X) - before)) < 1e-12
    with pytest.raises(ValueError, match="pad_state"):
        opt.step(net, X, Y, mse())                              # state not padded yet: refused
    keep = np.delete(np.arange(7), where)
    assert opt.pad_state("dense0", n_out=7, out_index=keep)
    assert opt.pad_state("rational0", n_out=7, out_index=keep)
    assert opt.pad_state("dense1", n_in=7, in_index=keep)
    assert not opt.pad_state("dense9", n_out=3)                  # no state: nothing to do
    # dense0: G grew; A untouched
    G, Ginv = opt.factors["dense0"].G, opt.inverses["dense0"][1]
    assert np.array_equal(G[np.ix_(keep, keep)], old["dense0"][1])
    assert np.array_equal(Ginv[np.ix_(keep, keep)], old_inv["dense0"][1])
    assert np.array_equal(opt.factors["dense0"].A, old["dense0"][0])
    assert np.all(G[where, keep] == 0) and G[where, where] == np.mean(np.diag(old["dense0"][1]))
    assert_close(Ginv, np.linalg.inv(G + np.sqrt(d) * np.eye(7)), 1e-10, 1e-12, name="padded G inverse")
    # dense1: A grew (bias coordinate stays last); G untouched
    A, Ainv = opt.factors["dense1"].A, opt.inverses["dense1"][0]
    keepA = np.append(keep, 7)
    assert np.array_equal(A[np.ix_(keepA, keepA)], old["dense1"][0])
    assert np.array_equal(Ainv[np.ix_(keepA, keepA)], old_inv["dense1"][0])
    assert np.array_equal(opt.factors["dense1"].G, old["dense1"][1])
    assert A[where, where] == np.mean(np.diag(old["dense1"][0])[:6])
    assert_close(Ainv, np.linalg.inv(A + np.sqrt(d) * np.eye(8)), 1e-10, 1e-12, name="padded A inverse")
    # rational blocks
    assert np.array_equal(opt.blocks["rational0"][keep], old_B)
    assert np.array_equal(opt.block_inverses["rational0"][keep], old_Binv)
    assert_close(opt.blocks["rational0"][where], np.diag(np.mean(np.diagonal(old_B, 0, 1, 2), axis=0)),
                 0, 0, name="new unit block")
    # training continues on the grown network
    opt.step(net, X, Y, mse())
    assert opt.factors["dense0"].G.shape == (7, 7) and np.all(np.isfinite(opt.factors["dense0"].G))


def test_pad_state_with_trace_pi_recomputes_inverses():
    net, X, Y = regression(6, 16)
    opt = KFAC(lr=0.05, damping=0.1, pi="trace")
    opt.step(net, X, Y, mse())
    G_old = opt.factors["dense0"].G.copy()
    grow_units(net, np.random.default_rng(1), 6)
    opt.pad_state("dense0", n_out=7)
    opt.pad_state("rational0", n_out=7)
    opt.pad_state("dense1", n_in=7)
    assert np.array_equal(opt.factors["dense0"].G[:6, :6], G_old)
    assert "dense0" not in opt.inverses                  # trace pi changed: dropped, not stale
    opt.step(net, X, Y, mse())
    f = opt.factors["dense0"]
    A_d, G_d = factored_damping(f.A, f.G, 0.1, "trace")
    assert_close(opt.inverses["dense0"][1], np.linalg.inv(G_d), 1e-10, 1e-12, name="recomputed G inverse")


def test_errors_and_misc():
    net, X, Y = regression(5, 8)
    with pytest.raises(ValueError, match="lr"):
        KFAC(lr=0.0, damping=0.1)
    with pytest.raises(ValueError, match="damping"):
        KFAC(lr=0.1, damping=-1.0)
    with pytest.raises(ValueError, match="ema"):
        KFAC(lr=0.1, damping=0.1, ema=1.0)
    with pytest.raises(ValueError, match="inverse_every"):
        KFAC(lr=0.1, damping=0.1, inverse_every=0)
    with pytest.raises(ValueError, match="unknown K-FAC mode"):
        KFAC(lr=0.1, damping=0.1, mode="diag")
    with pytest.raises(ValueError, match="unknown metric"):
        KFAC(lr=0.1, damping=0.1, metric="hessian")
    with pytest.raises(ValueError, match="no layer with a Kronecker"):
        KFAC(0.1, 0.1).step(Network([Rational(2, "random", np.random.default_rng(0))]), X, X, mse())
    opt = KFAC(0.1, 0.1)
    opt.step(net, X, Y, mse())
    with pytest.raises(ValueError, match="smaller"):
        opt.pad_state("dense0", n_out=3)
    with pytest.raises(ValueError, match="out_index"):
        opt.pad_state("dense0", n_out=7, out_index=np.array([0, 0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="input dimension"):
        opt.pad_state("rational0", n_in=7)
    assert opt.drop_state("dense0") and not opt.has_state("dense0")
    mc = KFAC(0.05, 0.1, mode="mc", n_samples=4, rng=np.random.default_rng(1))
    v0 = mc.step(net, X, Y, mse())
    assert np.isfinite(v0)


def test_kl_clip_scales_the_step_into_the_trust_region():
    """With kl_clip = kappa the step is nu * lr * direction with nu = min(1, sqrt(kappa / (lr^2 d.g)));
    the clipped step of a fresh optimiser is exactly nu times the unclipped one."""
    lr, d = 0.5, 0.05
    net_a, X, Y = regression(3, 20)
    net_b = net_a.copy()
    theta0 = net_a.get_flat()
    grads = net_a.loss_and_grad(X, Y, mse())[1].flat_grad()
    KFAC(lr, d).step(net_a, X, Y, mse())
    full = theta0 - net_a.get_flat()                    # lr * direction
    quad = float(full @ grads) * lr                       # lr^2 direction . g
    assert quad > 0
    kappa = 0.01 * quad
    opt = KFAC(lr, d, kl_clip=kappa)
    opt.step(net_b, X, Y, mse())
    nu = np.sqrt(kappa / quad)
    assert opt.last_scale == pytest.approx(nu, rel=1e-12)
    assert_rel_error(theta0 - net_b.get_flat(), nu * full, 1e-12, name="clipped step")
    # a trust region larger than the step leaves it untouched
    net_c = regression(3, 20)[0]
    opt = KFAC(lr, d, kl_clip=10 * quad)
    opt.step(net_c, X, Y, mse())
    assert opt.last_scale == 1.0
    assert_rel_error(theta0 - net_c.get_flat(), full, 1e-12, name="unclipped step")
    with pytest.raises(ValueError, match="kl_clip"):
        KFAC(lr, d, kl_clip=0.0)


def test_pad_twice_with_trace_pi_and_invalid_lr_leave_state_intact(monkeypatch):
    """Two growths of one layer in a round (no step in between) with pi='trace' must work;
    a NaN, negative or zero learning rate is refused on assignment; a non-finite direction
    raises before anything (parameters, running averages, inverses) changes."""
    net, X, Y = regression(5, 16)
    opt = KFAC(0.1, 0.1, pi="trace")
    opt.step(net, X, Y, mse())
    assert opt.pad_state("dense0", n_out=7) and opt.pad_state("dense0", n_out=8)
    assert opt.factors["dense0"].G.shape == (8, 8) and "dense0" not in opt.inverses
    for bad in (float("nan"), -1.0, 0.0):
        with pytest.raises(ValueError, match="KFAC lr"):
            opt.lr = bad
    assert opt.lr == 0.1
    net2, X2, Y2 = regression(6, 16)
    opt2 = KFAC(0.1, 0.1)
    opt2.step(net2, X2, Y2, mse())
    theta = net2.get_flat().copy()
    A_before = opt2.factors["dense0"].A.copy()
    inv_before = opt2.inverses["dense0"][0].copy()
    import senn_ref.optim.kfac as kfac_module
    monkeypatch.setattr(kfac_module, "sym_inverse", lambda M, name="", **kw: np.full(M.shape, np.nan))
    with pytest.raises(FloatingPointError, match="nothing was updated"):
        opt2.step(net2, X2, Y2, mse())
    assert np.array_equal(net2.get_flat(), theta)
    assert np.array_equal(opt2.factors["dense0"].A, A_before)
    assert np.array_equal(opt2.inverses["dense0"][0], inv_before) and opt2.t == 1
