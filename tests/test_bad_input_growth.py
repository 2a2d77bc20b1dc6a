"""Bad input to the growth operations is refused before anything changes (issue 10, item 3).

For add_neurons, prune_neurons, insert_layer, carry_state / check_carry / check_optimizers and
the structure and index helpers of :mod:`senn_ref.grow`, hypothesis draws one argument and a bad
value for it (tests/bad_args.py: wrong shape or ndim, non-float dtype, NaN/inf, empty,
out-of-range / repeated / non-integer indices, None, strings, unknown options, stale optimiser
state) and checks that the call raises the documented exception type, that the message names
the argument, and that the network (layer list, every parameter array, num_params), every
optimiser's state_dict (SGD with momentum, Adam, K-FAC, all trained two steps) and the rng are
bit-for-bit unchanged (tests/snapshots.py).  Array arguments are array-like: nested lists of
floats are accepted (test_nested_lists_are_accepted).
"""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bad_args import bad_array, bad_bool, bad_index, bad_units, non_linear, non_producers, refused
from grow_cases import make_case
from senn_ref.grow import (AxisMap, CandidatePath, StateChange, add_neurons, carry_state, check_carry,
                           check_optimizers, depth_supported, growable_layers, hidden_path, incoming_index,
                           insert_layer, outgoing_index, prune_neurons)
from senn_ref.layers import Conv2D, Dense
from senn_ref.optim import KFAC, SGD, Adam

NAMES = ("mlp_rational", "conv_flatten")
FAST = settings(max_examples=30, deadline=None)
_TRAINED = {}


def _step(case, opt):
    if getattr(opt, "uses_curvature", False):
        opt.step(case.net, case.X, case.Y, case.loss)
    else:
        _, g = case.net.loss_and_grad(case.X, case.Y, case.loss)
        opt.step(case.net.named_params(), g.grads)


def trained(name):
    """A shared case and three optimisers with state (two steps each).  Refused calls change
    nothing, so the objects are reused across examples (a snapshot is taken before each call)."""
    if name not in _TRAINED:
        case = make_case(name, seed=3)
        opts = [SGD(0.05, momentum=0.9), Adam(0.01), KFAC(lr=0.05, damping=0.1)]
        for _ in range(2):
            for opt in opts:
                _step(case, opt)
        _TRAINED[name] = (case, opts)
    return _TRAINED[name]


def stale_optimizers(case):
    """An Adam and a K-FAC optimiser whose state belongs to a wider copy of the network (one unit
    more in the first hidden layer): any growth of the original with them must be refused."""
    wide = copy.deepcopy(case)
    h = wide.hidden[0]
    opts = [Adam(0.01), KFAC(lr=0.05, damping=0.1)]
    for opt in opts:
        _step(wide, opt)
    W = np.ones((1,) + wide.net.layers[h].params["W"].shape[1:])
    add_neurons(wide.net, h, W, optimizer=opts, rng=np.random.default_rng(0))
    return opts


def bad_net():
    return st.sampled_from([(None, TypeError), ("net", TypeError), ([], TypeError)])


@st.composite
def bad_optimizer(draw, case, opts):
    """Not an optimiser, a list with a non-optimiser, the same optimiser twice, or stale state."""
    options = [("adam", TypeError), (3, TypeError), ([opts[0], None], TypeError),
               ([opts[0], opts[0]], ValueError), (Adam, TypeError)]
    kind = draw(st.sampled_from(range(len(options) + 2)))
    if kind < len(options):
        return options[kind]
    return stale_optimizers(case)[kind - len(options)], ValueError


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(["net", "layer", "W", "b", "act", "optimizer",
                                                         "rng", "kfac_batch"]), data=st.data())
def test_add_neurons_refuses(name, arg, data):
    case, opts = trained(name)
    net, h, k = case.net, case.hidden[0], 2
    fan = net.layers[h].params["W"].shape[1:]
    rng = np.random.default_rng(5)
    good = dict(net=net, layer=h, W=np.ones((k,) + fan), b=np.zeros(k), act=None, optimizer=opts,
                rng=rng, kfac_batch=case.X)
    if arg == "net":
        bad, exc = data.draw(bad_net())
    elif arg == "layer":
        bad, exc = data.draw(bad_index(len(net.layers), non_producers(net)))
    elif arg == "W":
        bad, exc = data.draw(bad_array((k,) + fan, free=(0,)))
    elif arg == "b":
        bad, exc = data.draw(bad_array((k,), none_ok=True))
    elif arg == "act":
        good_act = {p: np.zeros(k) for p in ("v", "c", "l")}
        choice = data.draw(st.sampled_from(["missing", "extra", "list", "text", "value"]))
        bad, exc = {"missing": ({"v": np.zeros(k)}, ValueError), "list": ([np.zeros(k)] * 3, TypeError),
                    "extra": (dict(good_act, w=np.zeros(k)), ValueError), "text": ("vcl", TypeError),
                    "value": (None, None)}[choice]
        if choice == "value":
            key = data.draw(st.sampled_from(sorted(good_act)))
            value, exc = data.draw(bad_array((k,)))
            bad = dict(good_act, **{key: value})
    elif arg == "optimizer":
        bad, exc = data.draw(bad_optimizer(case, opts))
    elif arg == "rng":
        bad, exc = data.draw(st.sampled_from([3, "seed", np.random.RandomState(0)])), TypeError
    else:
        bad, exc = data.draw(bad_array(case.X.shape, free=(0,), none_ok=True))
    kwargs = dict(good, **{arg: bad})
    refused(lambda: add_neurons(**kwargs), exc, arg, net, opts, rng)


def test_add_neurons_act_none_needs_rng_and_leaves_it_alone():
    case, opts = trained("mlp_rational")
    W = np.ones((1, 2))
    refused(lambda: add_neurons(case.net, 0, W, act=None, optimizer=opts, rng=None), ValueError, "act",
            case.net, opts)
    # act=None draws from rng only after every other check passed: a refused call leaves it alone
    rng = np.random.default_rng(11)
    refused(lambda: add_neurons(case.net, 0, W, b=np.ones(3), optimizer=opts, rng=rng), ValueError, "b",
            case.net, opts, rng)
    refused(lambda: add_neurons(case.net, 0, W, optimizer=stale_optimizers(case), rng=rng), ValueError,
            "optimizer", case.net, opts, rng)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(["net", "layer", "units", "compensation", "optimizer"]),
       data=st.data())
def test_prune_neurons_refuses(name, arg, data):
    case, opts = trained(name)
    net, h = case.net, case.hidden[0]
    P, U = net.num_params(), hidden_path(net, h).units
    good = dict(net=net, layer=h, units=[0], compensation=np.zeros(P), optimizer=opts)
    if arg == "net":
        bad, exc = data.draw(bad_net())
    elif arg == "layer":
        bad, exc = data.draw(bad_index(len(net.layers), non_producers(net)))
    elif arg == "units":
        bad, exc = data.draw(bad_units(U))
    elif arg == "compensation":
        bad, exc = data.draw(bad_array((P,), none_ok=True))
    else:
        bad, exc = data.draw(bad_optimizer(case, opts))
    kwargs = dict(good, **{arg: bad})
    refused(lambda: prune_neurons(**kwargs), exc, arg, net, opts)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(["net", "position", "B", "s", "optimizer"]),
       data=st.data())
def test_insert_layer_refuses(name, arg, data):
    case, opts = trained(name)
    net = case.net
    linear = [i for i, la in enumerate(net.layers) if isinstance(la, (Dense, Conv2D))]
    pos = data.draw(st.sampled_from(linear))
    k = net.layers[pos].params["W"].shape[1]
    good = dict(net=net, position=pos, B=np.eye(k) + 0.1, s=None, optimizer=opts)
    if arg == "net":
        bad, exc = data.draw(bad_net())
    elif arg == "position":
        bad, exc = data.draw(bad_index(len(net.layers), non_linear(net)))
    elif arg == "B":
        singular = np.zeros((k, k)) if k == 1 else np.ones((k, k))
        bad, exc = data.draw(st.one_of(bad_array((k, k)), st.just((singular, ValueError))))
    elif arg == "s":
        bad, exc = data.draw(bad_array((k,), none_ok=True))
    else:
        bad, exc = data.draw(bad_optimizer(case, opts))
        if isinstance(bad, (Adam, KFAC)):         # stale state: of the layers the wider copy changed
            good["position"] = hidden_path(net, case.hidden[0]).consumer
            good["B"] = np.eye(net.layers[good["position"]].params["W"].shape[1])
    kwargs = dict(good, **{arg: bad})
    refused(lambda: insert_layer(**kwargs), exc, arg, net, opts)


@pytest.mark.parametrize("name", NAMES)
def test_growth_refuses_stale_optimizer_state(name):
    """State kept from a wider network (one unit more): every operation refuses it, each kind."""
    case, opts = trained(name)
    net, h = case.net, case.hidden[0]
    cons = hidden_path(net, h).consumer
    W = np.ones((1,) + net.layers[h].params["W"].shape[1:])
    for stale in stale_optimizers(case):
        both = [opts[0], stale]             # the good optimiser listed first must not change either
        for call in (lambda: add_neurons(net, h, W, optimizer=both, rng=np.random.default_rng(0)),
                     lambda: prune_neurons(net, h, [0], optimizer=both),
                     lambda: insert_layer(net, cons, np.eye(net.layers[cons].params["W"].shape[1]), optimizer=both),
                     lambda: insert_layer(net, h, np.eye(net.layers[h].params["W"].shape[1]), optimizer=both)):
            refused(call, ValueError, "optimizer", net, opts + [stale])


def test_insert_layer_refuses_a_shift_before_a_padded_conv():
    case, opts = trained("conv_flatten")
    pos = 3                                                        # conv2d1, 'same' zero padding
    assert isinstance(case.net.layers[pos], Conv2D) and case.net.layers[pos].padding != (0, 0)
    refused(lambda: insert_layer(case.net, pos, np.eye(2), np.array([0.0, 0.5]), optimizer=opts),
            ValueError, "s", case.net, opts)


def _change_for(net, extra=0):
    """A StateChange appending ``extra`` units to the first hidden layer's producer rows."""
    prod = net.layers[0]
    W = prod.params["W"]
    return StateChange({f"{prod.name}.W": AxisMap((W.shape[0] + extra,) + W.shape[1:],
                                                  tuple(np.arange(n) for n in W.shape))})


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from([check_carry, carry_state]),
       arg=st.sampled_from(["optimizer", "change"]), data=st.data())
def test_carry_functions_refuse(name, fn, arg, data):
    case, opts = trained(name)
    net = case.net
    change = _change_for(net, 1)
    optimizers, named = opts, arg
    if arg == "optimizer":
        optimizers, exc = data.draw(bad_optimizer(case, opts))
        if isinstance(optimizers, (Adam, KFAC)):
            optimizers = [opts[0], optimizers]    # a good optimiser first: it must not be touched either
    else:
        key = f"{net.layers[0].name}.W"
        am = change.axes[key]
        change, exc, named = data.draw(st.sampled_from([
            ({key: am}, TypeError, "change"), (None, TypeError, "change"),
            (StateChange([am]), TypeError, "change"), (StateChange({key: 3}), TypeError, "change"),
            (StateChange({"W": am}), ValueError, "change"),
            (StateChange({key: am}, dropped=key), ValueError, "change"),
            # a well-formed change whose old shape (8, 8) is not the shape the optimisers hold
            (StateChange({key: AxisMap((9, 9), (np.arange(8), np.arange(8)))}), ValueError, "optimizer")]))
    refused(lambda: fn(optimizers, change), exc, named, net, opts)


def test_check_optimizers_refuses():
    case, opts = trained("mlp_rational")
    for bad, exc in [("sgd", TypeError), ([opts[1], opts[1]], ValueError), ((opts[0], 0.1), TypeError)]:
        refused(lambda: check_optimizers(bad), exc, "optimizer", case.net, opts)
    assert check_optimizers(None) == [] and check_optimizers(opts[2]) == [opts[2]]


@FAST
@given(name=st.sampled_from(NAMES), data=st.data())
def test_structure_helpers_refuse(name, data):
    case, opts = trained(name)
    net = case.net
    bad, exc = data.draw(bad_net())
    for fn in (lambda: hidden_path(bad, 0), lambda: growable_layers(bad), lambda: depth_supported(bad, 0)):
        refused(fn, exc, "net", net, opts)
    layer, exc = data.draw(bad_index(len(net.layers), non_producers(net)))
    refused(lambda: hidden_path(net, layer), exc, "layer", net, opts)
    # depth_supported is a predicate: an index insert_layer would refuse is False, not an error
    position, _ = data.draw(bad_index(len(net.layers), non_linear(net)))
    assert depth_supported(net, position) is False
    shift, exc = data.draw(bad_bool())
    refused(lambda: depth_supported(net, case.hidden[0], shift=shift), exc, "shift", net, opts)


def _stale_path(case):
    wide = copy.deepcopy(case.net)
    h = case.hidden[0]
    add_neurons(wide, h, np.ones((1,) + wide.layers[h].params["W"].shape[1:]), rng=np.random.default_rng(0))
    return hidden_path(wide, h)


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from([outgoing_index, incoming_index]),
       arg=st.sampled_from(["path", "units"]), data=st.data())
def test_unit_index_functions_refuse(name, fn, arg, data):
    case, opts = trained(name)
    net = case.net
    path = hidden_path(net, case.hidden[0])
    if arg == "path":
        bad, exc = data.draw(st.sampled_from([(case.hidden[0], TypeError), (None, TypeError),
                                              (_stale_path(case), ValueError)]))
        refused(lambda: fn(net, bad, [0]), exc, "path", net, opts)
    else:
        bad, exc = data.draw(bad_units(path.units, leave_one=False))
        refused(lambda: fn(net, path, bad), exc, "units", net, opts)


def test_candidate_path_refuses_a_bad_path():
    case, opts = trained("conv_flatten")
    case.net.forward(case.X)
    for bad, exc in [(0, TypeError), (None, TypeError), (_stale_path(case), ValueError)]:
        refused(lambda: CandidatePath(case.net, bad), exc, "path", case.net, opts)
    assert CandidatePath(case.net, hidden_path(case.net, 0)).fan_in == 9     # the good path works


def test_nested_lists_are_accepted():
    """The decision of tests/bad_args.py: nested lists of floats are array-like input."""
    case = make_case("mlp_rational", seed=3)
    rec = add_neurons(case.net, 0, [[0.5, -0.5]], b=[0.1], act={"v": [0.0], "c": [0.0], "l": [1.0]})
    assert case.net.layers[0].params["W"][-1].tolist() == [0.5, -0.5] and rec.details["k"] == 1
    assert prune_neurons(case.net, 0, [3]).details["units"] == [3]


@FAST
@given(data=st.data())
def test_axis_map_refuses(data):
    """AxisMap (the per-key record every carry uses) refuses malformed maps instead of truncating
    float positions or accepting impossible shapes; messages name new_shape or positions."""
    bad, exc, named = data.draw(st.sampled_from([
        (((3,), ([0, 1, 1],)), ValueError, "positions"), (((3,), ([0, 3],)), ValueError, "positions"),
        (((3,), ([0, -2],)), ValueError, "positions"), (((3, 2), ([0, 1],)), ValueError, "positions"),
        (((3,), ([0.0, 1.0],)), TypeError, "positions"), (((3,), np.arange(3)), TypeError, "positions"),
        (((-1,), ([-1],)), ValueError, "new_shape"), ((None, ([0],)), TypeError, "new_shape"),
        (((2.0,), ([0],)), TypeError, "new_shape"), (((True,), ([0],)), TypeError, "new_shape")]))
    with pytest.raises(exc, match=rf"^AxisMap: .*{named}"):
        AxisMap(*bad)
    assert AxisMap((2,), ([],)).old_shape == (0,)          # an empty axis is fine


def test_snapshot_helper_detects_each_kind_of_change():
    """tests/snapshots.py must see a one-entry change of a parameter, an optimiser slot, a K-FAC
    factor, the rng and the layer list (else every test above could pass vacuously)."""
    import snapshots
    case, opts = copy.deepcopy(trained("mlp_rational"))
    rng = np.random.default_rng(0)
    before = snapshots.take(case.net, opts, rng)
    snapshots.assert_same(before, snapshots.take(case.net, opts, rng))
    changes = [(lambda: case.net.layers[0].params["W"].__setitem__((1, 0), np.nextafter(
                    case.net.layers[0].params["W"][1, 0], np.inf)), "param dense0.W"),
               (lambda: opts[1]._state["dense1.W"]["m"].__setitem__((0, 0), 1.0), "optimizer 1"),
               (lambda: opts[2].factors["dense1"].A.__setitem__((0, 0), -1.0), "optimizer 2"),
               (lambda: rng.random(), "rng"),
               (lambda: setattr(case.net.layers[1], "name", "renamed"), "renamed"),
               (lambda: case.net.layers.pop(), "layers")]
    for change, where in changes:
        change()
        with pytest.raises(AssertionError, match=where):
            snapshots.assert_same(before, snapshots.take(case.net, opts, rng))
        before = snapshots.take(case.net, opts, rng)
