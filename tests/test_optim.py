"""Tests for senn_ref.optim (derivations/08-optimisers.md).

Reference updates are independent re-implementations written differently
(whole-array expressions, a global step count for Adam), so they agree with the
optimisers only up to rounding: a few operations per entry -> rtol 1e-14.
Growth tests compare runs that perform the same elementwise operations on the
same numbers, so they must agree bit for bit (np.array_equal).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.optim import SGD, Adam
from senn_ref.testing import assert_close

SHAPES = {"dense0.W": (3, 2), "dense0.b": (3,), "conv.W": (2, 1, 2, 2)}
SGD_CONFIGS = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.8, nesterov=True),
               dict(lr=0.1, momentum=0.5, weight_decay=0.01)]
ADAM_CONFIGS = [dict(lr=0.01), dict(lr=0.1, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.02)]


def random_params(rng, shapes=SHAPES):
    return {k: rng.standard_normal(s) for k, s in shapes.items()}


def snapshot(params, opt):
    return {k: v.copy() for k, v in params.items()}, opt.state_dict()


def assert_unchanged(params, opt, snap):
    before_p, before_s = snap
    for k in params:
        assert np.array_equal(params[k], before_p[k]), k
    after = opt.state_dict()
    assert after["shapes"] == before_s["shapes"]
    for k, slots in before_s["state"].items():
        for name, a in slots.items():
            assert np.array_equal(after["state"][k][name], a), (k, name)


# ---------------------------------------------------------------- reference updates
def sgd_reference(p0, grads_seq, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    p, buf = p0.copy(), np.zeros_like(p0)
    for g in grads_seq:
        d = g + weight_decay * p
        buf = momentum * buf + d
        p = p - lr * ((d + momentum * buf) if nesterov else (buf if momentum else d))
    return p


def adam_reference(p0, grads_seq, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads_seq, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        update = (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
        p = p - lr * update - lr * weight_decay * p
    return p


@pytest.mark.parametrize("cls, configs, reference", [(SGD, SGD_CONFIGS, sgd_reference),
                                                     (Adam, ADAM_CONFIGS, adam_reference)])
def test_against_reference(cls, configs, reference):
    rng = np.random.default_rng(0)
    for cfg in configs:
        params = random_params(rng)
        p0 = {k: v.copy() for k, v in params.items()}
        seq = [random_params(rng) for _ in range(6)]
        opt = cls(**cfg)
        ids = {k: id(v) for k, v in params.items()}
        for grads in seq:
            opt.step(params, grads)
        for k in params:
            assert id(params[k]) == ids[k]          # updated in place
            assert_close(params[k], reference(p0[k], [g[k] for g in seq], **cfg), rtol=1e-14,
                         atol=1e-15, name=f"{cls.__name__} {cfg} {k}")


def test_hand_computed_steps():
    # SGD momentum 0.9, lr 0.1, g = 0.5 twice: v = 0.5, p = 0.95; v = 0.95, p = 0.855
    p = {"x": np.array([1.0])}
    opt = SGD(0.1, momentum=0.9)
    opt.step(p, {"x": np.array([0.5])})
    assert p["x"][0] == pytest.approx(0.95, rel=1e-15)
    opt.step(p, {"x": np.array([0.5])})
    assert p["x"][0] == pytest.approx(0.855, rel=1e-15)
    # Adam's first step is lr * g / (|g| + eps) whatever the betas (m_hat = g, v_hat = g^2)
    g = np.array([3.0, -1e-3, 0.0])
    p = {"x": np.zeros(3)}
    Adam(lr=0.01, beta1=0.7, beta2=0.99).step(p, {"x": g})
    assert_close(p["x"], -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("opt", [SGD(0.1), SGD(0.1, momentum=0.9), SGD(0.1, momentum=0.9, nesterov=True),
                                 Adam(0.05)], ids=repr)
def test_minimises_quadratic(opt):
    # L(x) = 1/2 x^T A x - b^T x, eigenvalues of A in [1, 10]; minimiser A^{-1} b
    rng = np.random.default_rng(1)
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    A = Q @ np.diag(np.linspace(1.0, 10.0, 5)) @ Q.T
    b = rng.standard_normal(5)
    x = {"x": np.zeros(5)}
    for k in range(1000):
        if isinstance(opt, Adam):
            opt.lr = 0.05 * 0.99 ** k        # Adam needs a decaying step to converge
        opt.step(x, {"x": A @ x["x"] - b})
    assert np.linalg.norm(x["x"] - np.linalg.solve(A, b)) < 1e-8


def test_sgd_weight_decay_minimises_penalised_quadratic():
    rng = np.random.default_rng(2)
    A = np.diag(np.linspace(1.0, 4.0, 4))
    b = rng.standard_normal(4)
    x = {"x": np.zeros(4)}
    opt = SGD(0.2, momentum=0.5, weight_decay=0.3)
    for _ in range(500):
        opt.step(x, {"x": A @ x["x"] - b})
    assert_close(x["x"], np.linalg.solve(A + 0.3 * np.eye(4), b), rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------- growth
def make_opt(name):
    return {"adam": lambda: Adam(0.05, beta1=0.8, beta2=0.95, weight_decay=0.01),
            "sgd": lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01)}[name]()


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(["adam", "sgd"]), out=st.integers(1, 4), n_in=st.integers(1, 3),
       pos=st.integers(0, 4), seed=st.integers(0, 2**31 - 1))
def test_pad_state_old_slots_untouched_new_slots_fresh(name, out, n_in, pos, seed):
    check_row_insertion(name, out, n_in, pos, seed)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_pad_state_large_array(name):
    # long rows: numpy's vectorised loops process bulk and tail entries differently
    check_row_insertion(name, 300, 37, 150, 11)


def check_row_insertion(name, out, n_in, pos, seed):
    """Insert a new row at ``pos`` of W (out, in): old rows continue exactly, the new row is fresh."""
    rng = np.random.default_rng(seed)
    pos = min(pos, out)
    old_rows = np.r_[0:pos, pos + 1:out + 1]
    W = rng.standard_normal((out, n_in))
    grown, control, fresh = make_opt(name), make_opt(name), make_opt(name)
    p_grown, p_control = {"W": W.copy()}, {"W": W.copy()}
    for _ in range(4):
        g = rng.standard_normal((out, n_in))
        grown.step(p_grown, {"W": g})
        control.step(p_control, {"W": g.copy()})
    before = grown.state_dict()["state"]["W"]
    assert grown.pad_state("W", (out + 1, n_in), (old_rows, slice(None)))
    after = grown.state_dict()["state"]["W"]
    for slot, a in before.items():
        assert after[slot].shape == (out + 1, n_in)
        assert np.array_equal(after[slot][old_rows], a)        # bit-identical old slots
        assert np.all(after[slot][pos] == grown.grown_fill.get(slot, 0))   # fresh new slots (Adam: grown)
    new_row = rng.standard_normal((1, n_in))
    W_big = np.insert(p_grown["W"], pos, new_row[0], axis=0)
    p_grown = {"W": W_big}
    p_fresh = {"W": new_row.copy()}
    # the new row behaves as a key created by growth in an optimiser that has already stepped
    fresh.step({"other": np.zeros(1)}, {"other": np.zeros(1)})
    assert fresh.add_grown_state("W", (1, n_in))
    for _ in range(5):
        g = rng.standard_normal((out + 1, n_in))
        grown.step(p_grown, {"W": g})
        control.step(p_control, {"W": g[old_rows]})
        fresh.step(p_fresh, {"W": g[pos:pos + 1]})
    assert np.array_equal(p_grown["W"][old_rows], p_control["W"])
    assert np.array_equal(p_grown["W"][pos:pos + 1], p_fresh["W"])
    st_g, st_c, st_f = (o.state_dict()["state"]["W"] for o in (grown, control, fresh))
    for slot in st_g:
        assert np.array_equal(st_g[slot][old_rows], st_c[slot])
        assert np.array_equal(st_g[slot][pos:pos + 1], st_f[slot])


@pytest.mark.parametrize("config", ADAM_CONFIGS)
def test_grown_entries_take_the_ramped_steps_of_section_4_1(config):
    """08-optimisers.md section 4.1, step by step and with weight decay: a key created by growth
    (add_grown_state after the optimiser has stepped) takes the k-th update
    lr ((1 - beta1^k) m_fresh / (sqrt(v_hat) + eps) + weight_decay p), m_fresh = m / (1 - beta1^k),
    i.e. m not bias-corrected, v corrected, the decay not scaled; the first one is
    (1 - beta1) lr sign(g) + lr weight_decay p."""
    rng = np.random.default_rng(11)
    opt = Adam(**config)
    opt.step({"other": np.zeros(2)}, {"other": np.ones(2)})
    assert opt.add_grown_state("W", (3, 2))
    b1, b2, eps, lr, wd = opt.beta1, opt.beta2, opt.eps, opt.lr, opt.weight_decay
    p = {"W": rng.standard_normal((3, 2))}
    q, m, v = p["W"].copy(), np.zeros((3, 2)), np.zeros((3, 2))
    for k in range(1, 6):
        g = rng.standard_normal((3, 2))
        before = p["W"].copy()
        opt.step(p, {"W": g})
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_fresh = m / (1 - b1 ** k)
        q = q - lr * ((1 - b1 ** k) * m_fresh / (np.sqrt(v / (1 - b2 ** k)) + eps) + wd * q)
        assert_close(p["W"], q, rtol=1e-14, atol=1e-15)
        if k == 1:
            assert_close(before - p["W"], lr * ((1 - b1) * g / (np.abs(g) + eps) + wd * before),
                         rtol=1e-14, atol=1e-16)
    st = opt.state_dict()["state"]["W"]
    assert np.all(st["grown"] == 1) and np.all(st["t"] == 5)


def test_bias_correction_is_position_independent():
    from senn_ref.optim.adam import _bias_correction
    t = np.random.default_rng(12).integers(1, 6, size=(257, 9))
    expected = np.vectorize(lambda k: 1.0 - 0.999 ** int(k))(t)
    assert np.array_equal(_bias_correction(0.999, t), expected)
    assert np.array_equal(_bias_correction(0.9, np.full((3, 4), 7)), np.full((3, 4), 1.0 - 0.9 ** 7))


def test_zero_size_parameter_is_allowed():
    p = {"empty": np.zeros((0, 3)), "x": np.ones(2)}
    Adam(0.1).step(p, {"empty": np.zeros((0, 3)), "x": np.ones(2)})
    assert_close(p["x"], np.full(2, 1.0 - 0.1 / (1.0 + 1e-8)), rtol=1e-15)   # first step lr g/(|g| + eps)


def test_pad_state_conv_input_channels_and_bias():
    opt = Adam(0.1)
    rng = np.random.default_rng(3)
    params = random_params(rng)
    opt.step(params, random_params(rng))
    old = opt.state_dict()["state"]
    # conv W (O, C, kh, kw): C 1 -> 3, old channel goes to index 1
    assert opt.pad_state("conv.W", (2, 3, 2, 2), (slice(None), np.array([1]), slice(None), slice(None)))
    assert opt.pad_state("dense0.b", (5,), slice(0, 3))     # a single (non-tuple) index is accepted
    new = opt.state_dict()["state"]
    for slot in ("m", "v", "t"):
        assert np.array_equal(new["conv.W"][slot][:, 1:2], old["conv.W"][slot])
        assert not new["conv.W"][slot][:, [0, 2]].any()
        assert np.array_equal(new["dense0.b"][slot][:3], old["dense0.b"][slot])
        assert not new["dense0.b"][slot][3:].any()
        assert np.array_equal(new["dense0.W"][slot], old["dense0.W"][slot])
    assert new["conv.W"]["t"].dtype == np.int64


def test_pad_state_without_state_and_errors():
    opt = Adam(0.1)
    assert opt.pad_state("dense0.W", (4, 2), (slice(0, 3), slice(None))) is False
    assert not opt.has_state("dense0.W")
    rng = np.random.default_rng(4)
    params = random_params(rng)
    opt.step(params, random_params(rng))
    snap = snapshot(params, opt)
    bad = [((4, 2), (slice(0, 2), slice(None)), "shape"),                # selects (2, 2), old is (3, 2)
           ((4, 2), (np.array([0, 0, 1]), slice(None)), "several"),      # duplicates
           ((4, 2), (np.array([0, 1, 7]), slice(None)), "valid index"),  # out of range
           ((4, -2), (slice(0, 3), slice(None)), "negative")]
    for new_shape, index, match in bad:
        with pytest.raises(ValueError, match=match):
            opt.pad_state("dense0.W", new_shape, index)
        assert_unchanged(params, opt, snap)


def test_step_after_growth_without_pad_is_an_error():
    opt = SGD(0.1, momentum=0.9)
    rng = np.random.default_rng(5)
    params = random_params(rng)
    opt.step(params, random_params(rng))
    params["dense0.W"] = rng.standard_normal((4, 2))
    snap = snapshot(params, opt)
    with pytest.raises(ValueError, match="pad_state"):
        opt.step(params, random_params(rng, {**SHAPES, "dense0.W": (4, 2)}))
    assert_unchanged(params, opt, snap)


def test_drop_and_rename():
    opt = Adam(0.1)
    rng = np.random.default_rng(6)
    params = {"d0.W": rng.standard_normal(2), "d1.W": rng.standard_normal(3), "d2.W": rng.standard_normal(4)}
    opt.step(params, {k: rng.standard_normal(v.shape) for k, v in params.items()})
    old = opt.state_dict()["state"]
    # depth insertion after d0: d1 -> d2, d2 -> d3 in one atomic call
    assert opt.rename_states({"d1.W": "d2.W", "d2.W": "d3.W"}) == 2
    new = opt.state_dict()["state"]
    assert set(new) == {"d0.W", "d2.W", "d3.W"}
    assert np.array_equal(new["d2.W"]["m"], old["d1.W"]["m"])
    assert np.array_equal(new["d3.W"]["v"], old["d2.W"]["v"])
    with pytest.raises(ValueError, match="already has"):
        opt.rename_state("d0.W", "d2.W")
    with pytest.raises(ValueError, match="same target"):
        opt.rename_states({"d0.W": "x", "d2.W": "x"})
    assert set(opt.state_dict()["state"]) == {"d0.W", "d2.W", "d3.W"}
    assert opt.rename_state("nothing", "else") is False
    assert opt.drop_state("d3.W") is True and opt.drop_state("d3.W") is False
    assert not opt.has_state("d3.W")


def test_state_dict_copies_and_round_trip():
    rng = np.random.default_rng(7)
    params = random_params(rng)
    opt = Adam(0.05)
    opt.step(params, random_params(rng))
    d = opt.state_dict()
    d["state"]["dense0.W"]["m"][:] = 99.0                # mutating the copy ...
    assert not (opt.state_dict()["state"]["dense0.W"]["m"] == 99.0).any()   # ... leaves the optimiser alone
    clone, clone_params = Adam(0.05), {k: v.copy() for k, v in params.items()}
    src = opt.state_dict()
    clone.load_state_dict(src)
    src["state"]["dense0.b"]["v"][:] = -1.0              # mutating the source after loading
    for _ in range(3):
        g = random_params(rng)
        opt.step(params, g)
        clone.step(clone_params, {k: v.copy() for k, v in g.items()})
    for k in params:
        assert np.array_equal(params[k], clone_params[k])


def test_load_state_dict_errors():
    rng = np.random.default_rng(8)
    params = random_params(rng)
    opt = Adam(0.05)
    opt.step(params, random_params(rng))
    good = opt.state_dict()
    snap = snapshot(params, opt)
    with pytest.raises(ValueError, match="SGD"):
        opt.load_state_dict(SGD(0.1, momentum=0.9).state_dict())
    bad = opt.state_dict()
    del bad["state"]["dense0.W"]["t"]
    with pytest.raises(ValueError, match="slots"):
        opt.load_state_dict(bad)
    legacy = opt.state_dict()                    # saved before Adam had the grown flag
    for slots in legacy["state"].values():
        del slots["grown"]
    opt.load_state_dict(legacy)
    assert all(not sl["grown"].any() and sl["grown"].shape == sl["m"].shape
               for sl in opt.state_dict()["state"].values())
    bad = opt.state_dict()
    bad["state"]["dense0.W"]["m"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["dense0.W"]["t"] = -good["state"]["dense0.W"]["t"]
    with pytest.raises(TypeError, match="non-negative"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["dense0.W"]["v"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="keys"):
        opt.load_state_dict({"state": {}})
    assert_unchanged(params, opt, snap)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_validation_errors_leave_everything_unchanged(name):
    rng = np.random.default_rng(9)
    opt = make_opt(name)
    params = random_params(rng)
    opt.step(params, random_params(rng))
    snap = snapshot(params, opt)
    good = random_params(rng)
    nan_last = {**good, "conv.W": np.full(SHAPES["conv.W"], np.nan)}   # bad key comes last
    cases = [
        (nan_last, ValueError, "NaN"),
        ({k: v for k, v in good.items() if k != "dense0.b"}, ValueError, "missing.*dense0.b"),
        ({**good, "extra": np.zeros(2)}, ValueError, "unknown.*extra"),
        ({**good, "conv.W": np.zeros((2, 1, 2))}, ValueError, "shape"),
        ({**good, "conv.W": np.zeros(SHAPES["conv.W"], dtype=int)}, TypeError, "floating"),
        ([1, 2], TypeError, "dict"),
    ]
    for grads, exc, match in cases:
        with pytest.raises(exc, match=match):
            opt.step(params, grads)
        assert_unchanged(params, opt, snap)
    bad_params = [
        ({**params, "conv.W": params["conv.W"].astype(np.float32)}, TypeError, "float64"),
        ({**params, "conv.W": np.full(SHAPES["conv.W"], np.inf)}, ValueError, "infinite"),
        ({**params, "dense0.b": params["dense0.W"][:, 0]}, ValueError, "shares memory"),
    ]
    ro = params["conv.W"].copy()
    ro.flags.writeable = False
    bad_params.append(({**params, "conv.W": ro}, ValueError, "read-only"))
    for bp, exc, match in bad_params:
        with pytest.raises(exc, match=match):
            opt.step(bp, good)
        assert_unchanged(params, opt, snap)


def test_hyperparameter_errors():
    with pytest.raises(ValueError, match="lr"):
        SGD(-0.1)
    with pytest.raises(ValueError, match="momentum"):
        SGD(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(0.1, nesterov=True)
    with pytest.raises(TypeError, match="nesterov"):
        SGD(0.1, momentum=0.9, nesterov="yes")
    with pytest.raises(ValueError, match="beta2"):
        Adam(beta2=1.0)
    with pytest.raises(ValueError, match="eps"):
        Adam(eps=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        Adam(weight_decay=-1.0)
    opt = Adam()
    with pytest.raises(ValueError, match="finite"):
        opt.lr = np.nan
    assert opt.lr == 1e-3
    opt.lr = 0.5
    assert opt.lr == 0.5
