"""add_neurons: function and gradient preservation on every shared case and hidden layer, the
Growth bookkeeping, the consumer's slot columns through a Flatten, and argument validation
(derivations/14-growth-operations.md sections 1-3)."""
import numpy as np
import pytest

from grow_cases import CASES, make_case
from senn_ref.gradcheck import check_network
from senn_ref.grow import add_neurons, hidden_path
from senn_ref.layers import Conv2D, Dense, Flatten
from senn_ref.network import Network
from senn_ref import mlp
from senn_ref.optim import KFAC, SGD, Adam
from senn_ref.testing import assert_close

SITES = [(name, h) for name in CASES for h in make_case(name).hidden]


def _new_unit_args(net, h, k, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((k,) + net.layers[h].params["W"].shape[1:])
    return W, rng.standard_normal(k), rng


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name, h", SITES)
def test_add_neurons_preserves_function_and_gradients(name, h, k):
    case = make_case(name, seed=3)
    net = case.net
    L0, g0 = net.loss_and_grad(case.X, case.Y, case.loss)
    out0 = net.forward(case.X).copy()
    theta0, grad0 = net.get_flat(), g0.flat_grad()
    W, b, rng = _new_unit_args(net, h, k, seed=k)
    rec = add_neurons(net, h, W, b, rng=rng)
    out1 = net.forward(case.X)
    assert np.abs(out1 - out0).max() < 1e-10
    L1, g1 = net.loss_and_grad(case.X, case.Y, case.loss)
    grad1 = g1.flat_grad()
    assert abs(L1 - L0) < 1e-12
    assert np.abs(grad1[rec.old_to_new] - grad0).max() < 1e-10
    # every old entry kept its value, and the new incoming parameters start with zero gradient
    assert np.array_equal(net.get_flat()[rec.old_to_new], theta0)
    path = hidden_path(net, h)
    slices = net.param_slices()
    prod = net.layers[h]
    for key in (f"{prod.name}.W", f"{prod.name}.b"):
        rows = np.arange(slices[key].start, slices[key].stop).reshape(prod.params[key[-1]].shape[0], -1)
        assert np.all(grad1[rows[path.units - k:]] == 0.0)
    res = check_network(net, case.X, np.random.default_rng(0))
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


@pytest.mark.parametrize("name, h", SITES)
def test_growth_record_bookkeeping(name, h):
    k = 2
    case = make_case(name, seed=1)
    net = case.net
    theta0 = net.get_flat()
    path = hidden_path(net, h)
    prod, cons = net.layers[path.producer], net.layers[path.consumer]
    per_unit = [net.layers[j] for j in path.between if net.layers[j].param_names]
    act = {p: np.linspace(0.5, 1.5, k) + i for i, p in enumerate(per_unit[0].param_names)} if per_unit else None
    W, b, _ = _new_unit_args(net, h, k, seed=5)
    P0 = net.num_params()
    rec = add_neurons(net, h, W, b, act)
    path = hidden_path(net, h)
    theta1 = net.get_flat()
    fan_in = W[0].size
    Wc = cons.params["W"]
    n_cons = Wc.shape[0] * k * (path.slot if isinstance(cons, Dense) else Wc.shape[2] * Wc.shape[3])
    n_unit = 3 * k * len(per_unit)
    assert rec.new_index.size == k * (fan_in + 1) + n_unit + n_cons
    assert rec.num_params_before == P0 and rec.num_params_after == P0 + rec.new_index.size
    assert rec.kind == "add_neurons" and rec.details["k"] == k
    assert (rec.details["units_before"], rec.details["units_after"]) == (path.units - k, path.units)
    assert rec.layers[0] == prod.name and rec.layers[-1] == cons.name
    # old and new positions partition the grown vector
    both = np.concatenate([rec.old_to_new, rec.new_index])
    assert np.array_equal(np.sort(both), np.arange(theta1.size))
    assert np.array_equal(theta1[rec.old_to_new], theta0)
    # the new entries are exactly: W rows, b, per-unit parameters, zero consumer weights
    sl = net.param_slices()
    expect = np.zeros(theta1.size)
    mark = np.zeros(theta1.size, dtype=bool)

    def put(key, index, values):
        pos = np.arange(sl[key].start, sl[key].stop).reshape(net.named_params()[key].shape)[index]
        expect[pos] = values
        mark[pos] = True
    put(f"{prod.name}.W", slice(path.units - k, None), W)
    put(f"{prod.name}.b", slice(path.units - k, None), b)
    for la in per_unit:
        for p in la.param_names:
            put(f"{la.name}.{p}", slice(path.units - k, None), act[p])
    cols = path.consumer_columns(np.arange(path.units - k, path.units))
    put(f"{cons.name}.W", (slice(None), cols), 0.0)
    assert np.array_equal(np.flatnonzero(mark), rec.new_index)
    assert np.array_equal(theta1[rec.new_index], expect[rec.new_index])


def test_flatten_slot_columns_explicit():
    # conv (2 -> 2 channels, 2x3 maps) -> flatten -> dense: channel u owns columns 6u .. 6u+5;
    # a third channel appended owns columns 12..17, the last ones
    rng = np.random.default_rng(0)
    net = Network([Conv2D(1, 2, 1, rng=rng, in_hw=(2, 3)), Flatten(in_shape=(2, 2, 3)), Dense(12, 2, rng)])
    X = rng.standard_normal((5, 1, 2, 3))
    out0 = net.forward(X).copy()
    Wnew = np.array([[[[1.5]]]])
    rec = add_neurons(net, 0, Wnew, np.array([0.25]))
    path = hidden_path(net, 0)
    assert path.slot == 6 and np.array_equal(path.consumer_columns([2]), np.arange(12, 18))
    sl = net.param_slices()["dense0.W"]
    cons_pos = sl.start + np.arange(2)[:, None] * 18 + np.arange(12, 18)[None, :]
    assert set(cons_pos.ravel()) <= set(rec.new_index.tolist())
    # make the new channel's outgoing weights nonzero: the output moves by exactly
    # (its activation map, flattened row-major) @ those weights^T
    w = rng.standard_normal((2, 6))
    net.layers[2].params["W"][:, 12:18] = w
    h = (1.5 * X[:, 0] + 0.25).reshape(5, 6)                 # new channel, identity activation
    assert_close(net.forward(X) - out0, h @ w.T, rtol=1e-12, atol=1e-14, name="output change")


def test_flatten_slot_columns_through_network_case():
    case = make_case("conv_strided", seed=2)                          # tanh -> flatten (2, 3, 3) -> dense
    net, h = case.net, case.hidden[-1]
    out0 = net.forward(case.X).copy()
    W, b, rng = _new_unit_args(net, h, 1, seed=9)
    add_neurons(net, h, W, b, rng=rng)
    path = hidden_path(net, h)
    cols = path.consumer_columns([path.units - 1])
    assert np.array_equal(cols, np.arange((path.units - 1) * path.slot, path.units * path.slot))
    Z = case.X
    for la in net.layers[:path.flatten + 1]:
        Z = la.forward(Z)
    w = np.random.default_rng(4).standard_normal((net.layers[path.consumer].params["W"].shape[0], cols.size))
    net.layers[path.consumer].params["W"][:, cols] = w
    assert_close(net.forward(case.X) - out0, Z[:, cols] @ w.T, rtol=1e-10, atol=1e-13, name="output change")


def _kfac_arrays(opt) -> dict:
    out = {}
    for name, f in opt.factors.items():
        out[f"{name}.A"], out[f"{name}.G"] = f.A.copy(), f.G.copy()
    for name, (Ai, Gi) in opt.inverses.items():
        out[f"{name}.A_inv"], out[f"{name}.G_inv"] = Ai.copy(), Gi.copy()
    for d, tag in ((opt.blocks, "B"), (opt.block_inverses, "B_inv")):
        out.update({f"{name}.{tag}": B.copy() for name, B in d.items()})
    return out


def _snapshot(net, opts, kfac):
    return (net.get_flat(), {k: v.shape for k, v in net.named_params().items()},
            [(la.name, tuple(la.in_shape)) for la in net.layers], dict(net._name_counts),
            [o.state_dict() for o in opts], _kfac_arrays(kfac))


def _same(a, b):
    assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
    for s, t in zip(a[4], b[4]):
        assert s["shapes"] == t["shapes"]
        for key in s["state"]:
            for slot in s["state"][key]:
                assert np.array_equal(s["state"][key][slot], t["state"][key][slot])
    assert a[5].keys() == b[5].keys() and all(np.array_equal(a[5][k], b[5][k]) for k in a[5])


def _bad_calls():
    W2, b1 = np.ones((1, 2)), np.zeros(1)
    act = {"v": np.ones(1), "c": np.ones(1), "l": np.ones(1)}
    return [
        ("layer", dict(layer=9)), ("layer", dict(layer="0")), ("layer", dict(layer=1)),
        ("layer", dict(layer=2)),
        ("W", dict(W=np.ones((1, 3)))), ("W", dict(W=np.ones((1, 2), dtype=int))),
        ("W", dict(W=np.array([[np.nan, 1.0]]))), ("W", dict(W=np.ones(2))),
        ("b", dict(b=np.zeros(2))), ("b", dict(b=np.array([np.inf]))),
        ("act", dict(act={"v": np.ones(1), "c": np.ones(1)})),
        ("act", dict(act={**act, "q": np.ones(1)})), ("act", dict(act={**act, "l": np.ones(2)})),
        ("act", dict(act={**act, "c": np.array([np.nan])})), ("act", dict(act=[1.0, 2.0, 3.0])),
        ("act", dict(act=None)), ("rng", dict(rng=0)),
        ("kfac_batch", dict(kfac_batch=np.ones((3, 5)))), ("kfac_batch", dict(kfac_batch=np.full((3, 2), np.nan))),
        ("optimizer", dict(optimizer="sgd")), ("optimizer", "twice"), ("optimizer", "stale"),
        ("optimizer", "stale_kfac"),
    ], W2, b1, act


@pytest.mark.parametrize("i", range(len(_bad_calls()[0])))
def test_bad_argument_changes_nothing(i):
    calls, W2, b1, act = _bad_calls()
    what, kw = calls[i]
    case = make_case("mlp_rational", seed=0)
    net = case.net
    sgd, adam, kfac = SGD(0.1, momentum=0.9), Adam(0.01), KFAC(lr=0.05, damping=0.1)
    for opt in (sgd, adam):
        _, g = net.loss_and_grad(case.X, case.Y, case.loss)
        opt.step(net.named_params(), g.grads)
    kfac.step(net, case.X, case.Y, case.loss)
    args = dict(layer=0, W=W2, b=b1, act=act, optimizer=[sgd, adam, kfac], rng=None)
    if kw == "twice":
        args["optimizer"] = [sgd, sgd]
    elif kw == "stale":
        stale = SGD(0.1, momentum=0.5)
        stale.step({"dense0.W": np.zeros((4, 2))}, {"dense0.W": np.ones((4, 2))})
        args["optimizer"] = [sgd, adam, kfac, stale]
    elif kw == "stale_kfac":                        # K-FAC state of a 4-unit dense0
        other = make_case("mlp_rational", seed=0)
        other.net = mlp([2, 4, 1], seed=0)
        stale = KFAC(lr=0.05, damping=0.1)
        stale.step(other.net, other.X, other.Y, other.loss)
        args["optimizer"] = [sgd, adam, kfac, stale]
    else:
        args.update(kw)
    snap = _snapshot(net, [sgd, adam], kfac)
    with pytest.raises((ValueError, TypeError), match=rf"^{what}\b"):
        add_neurons(net, args.pop("layer"), **args)
    _same(_snapshot(net, [sgd, adam], kfac), snap)


def test_refused_call_does_not_draw_from_rng():
    """act=None draws the new units from rng only once every check passed: a call refused for
    stale optimiser state leaves the caller's Generator where it was (review regression)."""
    case = make_case("mlp_rational", seed=0)
    stale = SGD(0.1, momentum=0.5)
    stale.step({"dense0.W": np.zeros((4, 2))}, {"dense0.W": np.ones((4, 2))})
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"^optimizer\b"):
        add_neurons(case.net, 0, np.ones((1, 2)), optimizer=stale, rng=rng)
    assert rng.bit_generator.state == state


def test_tanh_path_takes_no_activation_parameters():
    case = make_case("mlp_tanh", seed=0)
    with pytest.raises(ValueError, match="act"):
        add_neurons(case.net, 0, np.ones((1, 2)), act={"v": np.ones(1)})
    rec = add_neurons(case.net, 0, np.ones((1, 2)), act={})
    rec2 = add_neurons(case.net, 0, np.ones((1, 2)))
    assert rec.details["units_after"] == 4 and rec2.details["units_after"] == 5


def test_fresh_units_draw_vcl_from_rng():
    case = make_case("mlp_rational", seed=0)
    add_neurons(case.net, 0, np.ones((2, 2)), rng=np.random.default_rng(7))
    ref = np.random.default_rng(7)
    act = case.net.layers[1].params
    for p in ("v", "c", "l"):
        assert np.array_equal(act[p][-2:], ref.standard_normal(2))


# ---- structure (section 1) and record helpers (section 2) ----
EXPECTED_PATHS = {  # case -> {producer: (consumer, slot, layer types between)}
    "mlp_deep": {0: (2, 1, ["Rational"]), 2: (4, 1, ["Rational"])},
    "conv_flatten": {0: (3, 1, ["Rational", "AvgPool2D"]), 3: (7, 1, ["Rational", "AvgPool2D", "Flatten"])},
    "conv_strided": {0: (3, 1, ["Rational", "MaxPool2D"]), 3: (6, 9, ["Tanh", "Flatten"])},
    "conv_gap": {0: (4, 1, ["Rational", "AvgPool2D", "GlobalAvgPool"])},
}


@pytest.mark.parametrize("name", CASES)
def test_hidden_paths_of_every_case(name):
    from senn_ref.grow import growable_layers
    from senn_ref.grow.structure import shape_layers, unit_layers
    net = make_case(name).net
    assert growable_layers(net) == make_case(name).hidden
    for h, (cons, slot, kinds) in EXPECTED_PATHS.get(name, {}).items():
        path = hidden_path(net, h)
        assert (path.consumer, path.slot) == (cons, slot)
        assert [type(net.layers[j]).__name__ for j in path.between] == kinds
        assert path.units == net.layers[h].params["W"].shape[0]
        assert [la.name for la in unit_layers(net, path)] == [net.layers[j].name for j in path.between
                                                               if type(net.layers[j]).__name__ == "Rational"]
        assert len(shape_layers(net, path)) == len(kinds) - len(unit_layers(net, path))


def test_hidden_path_refusals_and_slot_columns():
    net = make_case("mlp_deep").net
    with pytest.raises(ValueError, match="^layer: .*output layer"):
        hidden_path(net, 4)
    with pytest.raises(ValueError, match="^layer: .*not a Dense or Conv2D"):
        hidden_path(net, 1)
    with pytest.raises(TypeError, match="^layer: expected an integer"):
        hidden_path(net, True)
    path = hidden_path(make_case("conv_strided").net, 3)              # flatten of (2, 3, 3)
    assert path.slot == 9
    assert np.array_equal(path.consumer_columns([1, 0]), list(range(9, 18)) + list(range(9)))
    assert np.array_equal(hidden_path(net, 0).consumer_columns(np.array([2])), [2])


def test_record_maps_and_carry():
    from senn_ref.grow.record import local_map, shrink_map
    assert np.array_equal(local_map((3, 2), (np.array([0, 2]), slice(None))), [[0, 1], [4, 5]])
    assert np.array_equal(shrink_map((3, 2), (np.array([0, 2]), slice(None))), [[0, 1], [-1, -1], [2, 3]])
    case = make_case("conv_gap", seed=0)
    theta0 = case.net.get_flat()
    rec = add_neurons(case.net, 0, np.ones((1, 1, 3, 3)), rng=np.random.default_rng(0))
    carried = rec.carry(theta0, fill=-7.0)
    assert np.array_equal(carried[rec.old_to_new], theta0) and np.all(carried[rec.new_index] == -7.0)
    assert rec.removed_index.size == 0
    summary = rec.to_dict()
    assert summary["num_added"] == rec.new_index.size == 9 + 1 + 3 + 2 and summary["kind"] == "add_neurons"
    with pytest.raises(ValueError, match="old"):
        rec.carry(theta0[:-1])


def test_two_rationals_on_the_path_take_qualified_keys():
    from senn_ref.layers import Rational
    rng = np.random.default_rng(3)
    net = Network([Dense(2, 3, rng), Rational(3, rng=rng), Rational(3, rng=rng), Dense(3, 1, rng)])
    X = rng.standard_normal((6, 2))
    out0 = net.forward(X).copy()
    plain = {p: np.ones(1) for p in ("v", "c", "l")}
    with pytest.raises(ValueError, match=r"^act: keys must be exactly \['rational0.c'"):
        add_neurons(net, 0, np.ones((1, 2)), act=plain)
    act = {f"rational{i}.{p}": np.array([0.1 * (3 * i + j + 1)]) for i in (0, 1) for j, p in enumerate("vcl")}
    rec = add_neurons(net, 0, np.ones((1, 2)), act=act)
    assert rec.layers == ("dense0", "rational0", "rational1", "dense1")
    for i in (0, 1):
        for j, p in enumerate("vcl"):
            assert net.layers[1 + i].params[p][-1] == 0.1 * (3 * i + j + 1)
    assert np.abs(net.forward(X) - out0).max() < 1e-10
