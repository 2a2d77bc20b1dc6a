"""Optimiser and K-FAC state carried through add_neurons (derivations/14-growth-operations.md
section 4): surviving entries bit-identical, new entries those of a fresh slot, training
continues; K-FAC factors of surviving rows/columns unchanged for dense, flatten and conv
consumers; the generic carry_state on permutations and removals."""
import numpy as np
import pytest

from grow_cases import make_case
from senn_ref.grow import AxisMap, StateChange, add_neurons, carry_state, check_carry, hidden_path
from senn_ref.grow.carry_state import regressed_rows
from senn_ref.kfac.factors import input_factor
from senn_ref.kfac import kfac_factors
from senn_ref.layers import Conv2D
from senn_ref.optim import KFAC, SGD, Adam, NaturalGradientCG

OPTIMIZERS = {"sgd": lambda: SGD(0.05, momentum=0.9), "adam": lambda: Adam(0.01),
              "ngd": lambda: NaturalGradientCG(lr=0.1, damping=0.1, cg_maxiter=200)}
# (case, producer index): dense consumer, deeper dense, conv consumer, dense consumer after a
# Flatten of (2, 3, 3) maps (slot of 9 columns per unit)
SITES = [("mlp_rational", 0), ("mlp_deep", 2), ("conv_flatten", 0), ("conv_strided", 3)]


def _train(case, opt, steps):
    losses = []
    for _ in range(steps):
        if getattr(opt, "uses_curvature", False):
            losses.append(opt.step(case.net, case.X, case.Y, case.loss))
        else:
            value, g = case.net.loss_and_grad(case.X, case.Y, case.loss)
            opt.step(case.net.named_params(), g.grads)
            losses.append(value)
    return losses


def _flat_slots(opt, net) -> dict:
    """Slot name -> the slot's arrays concatenated in the network's flat order."""
    sd = opt.state_dict()["state"]
    keys = list(net.named_params())
    return {slot: np.concatenate([sd[k][slot].ravel() for k in keys]) for slot in opt.slots}


@pytest.mark.parametrize("name, h", SITES)
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_first_order_state_survives_growth(kind, name, h):
    case = make_case(name, seed=4)
    opt = OPTIMIZERS[kind]()
    _train(case, opt, 3)
    before = _flat_slots(opt, case.net)
    W = _new_rows(case.net, h, 2)
    rec = add_neurons(case.net, h, W, optimizer=opt, rng=np.random.default_rng(2))
    after = _flat_slots(opt, case.net)
    for slot, old in before.items():
        new = after[slot]
        assert new.dtype == old.dtype and new.size == rec.num_params_after
        assert np.array_equal(new[rec.old_to_new], old), slot            # bit for bit
        assert np.all(new[rec.new_index] == opt.grown_fill.get(slot, 0)), slot   # a fresh slot
    theta = case.net.get_flat()
    value, g = case.net.loss_and_grad(case.X, case.Y, case.loss)
    _train(case, opt, 1)
    assert np.all(np.isfinite(case.net.get_flat()))
    if kind == "adam":
        # the new entries are marked grown: no bias correction of m, so their first step is
        # (1 - beta1) = 0.1 times a fresh Adam's -lr g / (|g| + eps) (08-optimisers.md section 4),
        # not the full lr sign(g) step the old entries took at t = 1
        g_new = g.flat_grad()[rec.new_index]
        step = case.net.get_flat()[rec.new_index] - theta[rec.new_index]
        fresh = -opt.lr * g_new / (np.abs(g_new) + opt.eps)
        np.testing.assert_allclose(step, (1.0 - opt.beta1) * fresh, rtol=1e-12, atol=1e-15)
        # |step| = 0.1 lr |g| / (|g| + eps) < 0.1 lr for every entry (the 1e-12 covers rounding), and
        # > 0.05 lr exactly when |g| > eps: the largest new-entry gradient must exceed eps, i.e. the
        # step is not the zero-gradient degenerate case
        assert np.abs(step).max() <= 0.1 * opt.lr * (1 + 1e-12) and np.abs(step).max() > 0.05 * opt.lr
        assert np.all(_flat_slots(opt, case.net)["grown"][rec.new_index] == 1)
        assert not _flat_slots(opt, case.net)["grown"][rec.old_to_new].any()
        t = _flat_slots(opt, case.net)["t"]
        assert np.all(t[rec.new_index] == 1) and np.all(t[rec.old_to_new] == 4)


def _trained_kfac(name, seed):
    """A shared case after two K-FAC steps (ema 0.9, so the running factors differ from a batch's)."""
    case = make_case(name, seed=seed)
    opt = KFAC(lr=0.05, damping=0.1, ema=0.9)
    _train(case, opt, 2)
    return case, opt


def _new_rows(net, h, k):
    return np.random.default_rng(1).standard_normal((k,) + net.layers[h].params["W"].shape[1:])


def _kfac_snapshot(opt):
    return ({k: (f.A.copy(), f.G.copy()) for k, f in opt.factors.items()},
            {k: tuple(x.copy() for x in v) for k, v in opt.inverses.items()},
            {k: b.copy() for k, b in opt.blocks.items()},
            {k: b.copy() for k, b in opt.block_inverses.items()})


def _consumer_coords(net, path, units_old, k):
    """(old input coordinates, new input coordinates) of the consumer, bias excluded."""
    cons = net.layers[path.consumer]
    if isinstance(cons, Conv2D):
        r = cons.params["W"][0, 0].size
        return np.arange(units_old * r), np.arange(units_old * r, (units_old + k) * r)
    new = path.consumer_columns(np.arange(units_old, units_old + k))
    return np.setdiff1d(np.arange(cons.params["W"].shape[1]), new), new


def _check_padded(M, old_M, old_pos, new_pos, fill):
    assert np.array_equal(M[np.ix_(old_pos, old_pos)], old_M)
    assert np.all(M[np.ix_(new_pos, old_pos)] == 0) and np.all(M[np.ix_(old_pos, new_pos)] == 0)
    sub = M[np.ix_(new_pos, new_pos)]
    assert np.array_equal(sub, fill * np.eye(new_pos.size))


@pytest.mark.parametrize("name, h", SITES)
def test_kfac_state_survives_growth(name, h):
    case, opt = _trained_kfac(name, seed=5)
    net, k = case.net, 2
    fac, inv, blocks, binv = _kfac_snapshot(opt)
    fresh_old = kfac_factors(net, case.X, case.Y, case.loss)
    units = hidden_path(net, h).units
    W = _new_rows(net, h, k)
    add_neurons(net, h, W, optimizer=[opt], rng=np.random.default_rng(2))
    path = hidden_path(net, h)
    prod, cons = net.layers[path.producer].name, net.layers[path.consumer].name
    # producer: A untouched, G padded (new units' rows exactly zero at insertion, prior on diagonal)
    old_u, new_u = np.arange(units), np.arange(units, units + k)
    assert np.array_equal(opt.factors[prod].A, fac[prod][0])
    _check_padded(opt.factors[prod].G, fac[prod][1], old_u, new_u, np.mean(np.diag(fac[prod][1])))
    assert np.array_equal(opt.inverses[prod][1][np.ix_(old_u, old_u)], inv[prod][1])
    # per-unit blocks of the rationals on the path
    for j in path.between:
        la = net.layers[j]
        if la.name in blocks:
            assert np.array_equal(opt.blocks[la.name][:units], blocks[la.name])
            assert np.array_equal(opt.block_inverses[la.name][:units], binv[la.name])
    # consumer: G untouched, A padded at the new coordinates (bias stays last)
    old_c, new_c = _consumer_coords(net, path, units, k)
    nA = opt.factors[cons].A.shape[0]
    old_cb = np.append(old_c, nA - 1)
    assert np.array_equal(opt.factors[cons].G, fac[cons][1])
    _check_padded(opt.factors[cons].A, fac[cons][0], old_cb, new_c, np.mean(np.diag(fac[cons][0])[:-1]))
    assert np.array_equal(opt.inverses[cons][0][np.ix_(old_cb, old_cb)], inv[cons][0])
    # the coordinates are where the grown layer's unfold/flatten really puts the old inputs:
    # fresh factors of the grown net restricted to them equal the old net's fresh factors
    fresh_new = kfac_factors(net, case.X, case.Y, case.loss)
    np.testing.assert_allclose(fresh_new[cons].A[np.ix_(old_cb, old_cb)], fresh_old[cons].A,
                               rtol=1e-12, atol=1e-14)
    assert np.all(fresh_new[cons].A[np.ix_(new_c, new_c)].diagonal() > 0)
    losses = _train(case, opt, 2)
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(net.get_flat()))


def test_carry_state_permutation_and_removal_first_order():
    opt = SGD(0.1, momentum=0.5)
    old = np.arange(6.0).reshape(3, 2) + 1
    opt.step({"x.W": np.zeros((3, 2))}, {"x.W": old})               # velocity = old
    change = StateChange({"x.W": AxisMap((4, 3), ([2, -1, 0], [0, 2]))})
    check_carry([opt], change)
    carry_state([opt], change)
    v = opt.state_dict()["state"]["x.W"]["velocity"]
    expect = np.zeros((4, 3))
    expect[2, [0, 2]] = old[0]
    expect[0, [0, 2]] = old[2]
    assert np.array_equal(v, expect)
    assert np.array_equal(change.axes["x.W"].entry_map(), [[6, 8], [-1, -1], [0, 2]])


def test_carry_state_kfac_insert_in_the_middle_equals_pad_state():
    case = make_case("mlp_rational", seed=0)
    a, b = KFAC(lr=0.05, damping=0.1), KFAC(lr=0.05, damping=0.1)
    _train(case, a, 1)
    b.factors = {k: f.copy() for k, f in a.factors.items()}
    b.inverses = {k: tuple(x.copy() for x in v) for k, v in a.inverses.items()}
    b.blocks = {k: x.copy() for k, x in a.blocks.items()}
    b.block_inverses = {k: x.copy() for k, x in a.block_inverses.items()}
    pos = np.array([0, 2, 3])                                        # a unit inserted at 1
    change = StateChange({"dense0.W": AxisMap((4, 2), (pos, [0, 1])), "dense0.b": AxisMap((4,), (pos,)),
                          "rational0.v": AxisMap((4,), (pos,)), "dense1.W": AxisMap((1, 4), ([0], pos))})
    carry_state([a], change)
    b.pad_state("dense0", n_out=4, out_index=pos)
    b.pad_state("rational0", n_out=4, out_index=pos)
    b.pad_state("dense1", n_in=4, in_index=pos)
    for name in a.factors:
        assert np.array_equal(a.factors[name].A, b.factors[name].A)
        assert np.array_equal(a.factors[name].G, b.factors[name].G)
    assert np.array_equal(a.blocks["rational0"], b.blocks["rational0"])


def test_check_carry_refuses_stale_kfac_state():
    case = make_case("mlp_rational", seed=0)
    opt = KFAC(lr=0.05, damping=0.1)
    _train(case, opt, 1)
    change = StateChange({"dense0.W": AxisMap((5, 2), (np.arange(4), [0, 1]))})
    with pytest.raises(ValueError, match="^optimizer: KFAC state of layer 'dense0'"):
        check_carry([opt], change)


@pytest.mark.parametrize("name, h", SITES)
def test_regression_rule_is_exact_when_the_running_factor_is_the_batch_factor(name, h):
    case, opt = _trained_kfac(name, seed=6)
    net, k = case.net, 2
    cons = net.layers[hidden_path(net, h).consumer]
    net.forward(case.X)
    opt.factors[cons.name].A = input_factor(cons)          # running A_oo := this batch's B_oo
    A_old = opt.factors[cons.name].A.copy()
    W = _new_rows(net, h, k)
    add_neurons(net, h, W, optimizer=opt, rng=np.random.default_rng(2), kfac_batch=case.X)
    path = hidden_path(net, h)
    old_c, new_c = _consumer_coords(net, path, path.units - k, k)
    old_cb = np.append(old_c, opt.factors[cons.name].A.shape[0] - 1)
    A = opt.factors[cons.name].A
    assert np.array_equal(A[np.ix_(old_cb, old_cb)], A_old)            # old entries bit for bit
    net.forward(case.X)
    np.testing.assert_allclose(A, input_factor(cons), rtol=1e-10, atol=1e-12 * np.abs(A).max())
    assert cons.name not in opt.inverses                                # recomputed at the next step
    losses = _train(case, opt, 1)
    assert np.isfinite(losses[0]) and cons.name in opt.inverses


def test_regression_rule_stays_psd_where_batch_rows_do_not():
    # a stale running factor (half the batch's old block) and a new input nearly equal to an
    # old one: pasting the batch rows in gives an indefinite matrix, the regression rule a PSD one
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.standard_normal((50, 3)), np.ones((50, 1))], axis=1)
    h = a[:, :1] + 1e-2 * rng.standard_normal((50, 1))
    z = np.concatenate([a[:, :3], h, a[:, 3:]], axis=1)                  # new coordinate 3, bias last
    B = z.T @ z / 50
    old, new = np.array([0, 1, 2, 4]), np.array([3])
    A_run = np.zeros((5, 5))
    A_run[np.ix_(old, old)] = 0.5 * B[np.ix_(old, old)]
    naive = A_run.copy()
    naive[new, :], naive[:, new] = B[new, :], B[:, new]
    assert np.linalg.eigvalsh(naive).min() < -0.1
    A = regressed_rows(A_run, B, new)
    assert np.array_equal(A[np.ix_(old, old)], A_run[np.ix_(old, old)])
    lam = np.linalg.eigvalsh(A)
    assert lam.min() > -1e-12 * lam.max()
    # with A_oo = B_oo the rule returns B itself, whatever the running new rows held
    junk = B.copy()
    junk[new, :], junk[:, new] = 7.0, 7.0
    np.testing.assert_allclose(regressed_rows(junk, B, new), B, rtol=1e-12, atol=1e-14)
