"""Bad input to the gain and proposal entry points is refused before anything changes (issue 10,
item 3): the width gains (residual_gradient, gain_exact, gain_lower_bound, width_gains,
layer_flat_index), the K-FAC proposals (WidthProposals and its methods, kfac_width_gain), the
Euclidean ones (euclidean_eta, project_units, EuclideanWidthProposals and its methods), the
depth scores (DepthProposals and its score, depth_gain_exact/closed) and the pruning scores
(pruning_scores, obs_compensation, pruning_candidates).

As in tests/test_bad_input_growth.py, hypothesis draws one argument and a bad value for it
(tests/bad_args.py); the call must raise the documented exception type with the argument's name
in the message and leave the network (tests/snapshots.py: layer list, every parameter,
num_params) and any rng it was given bit-for-bit unchanged.  Scoring runs forward passes, so the
layers' caches are not compared.  The score, K-FAC score and Fisher entry points are in
tests/test_bad_input_scoring.py.
"""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from bad_args import (COMMON, NAMES, bad_array, bad_bool, bad_count, bad_flat_index, bad_index, bad_option,
                      bad_scalar, bad_units, base, case_of, draw_common, non_linear, non_producers, refused)
from senn_ref.grow import (DepthProposals, EuclideanWidthProposals, WidthProposals, depth_gain_closed,
                           depth_gain_exact, euclidean_eta, gain_exact, gain_lower_bound, kfac_width_gain,
                           layer_flat_index, obs_compensation, project_units, pruning_candidates, pruning_scores,
                           residual_gradient, width_gains)
from senn_ref.grow.depth_gain import CONDITIONS, NATURAL
from senn_ref.grow.depth_rows import PARAM_SETS
from senn_ref.grow.pruning import CURVATURES, INCOMING, SCOPES
from senn_ref.layers import Dense

FAST = settings(max_examples=25, deadline=None)
_CONTEXTS = {}


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from([residual_gradient, gain_exact, gain_lower_bound, width_gains]),
       arg=st.sampled_from(COMMON + ("new_index", "condition_on")), data=st.data())
def test_width_gain_functions_refuse(name, fn, arg, data):
    case = case_of(name)
    P = case.net.num_params()
    good = base(case, new_index=[0, 1], damping=0.1, metric="euclidean")
    if arg == "condition_on" and fn in (residual_gradient, gain_exact):
        arg = "new_index"                                  # these two take no condition_on
    if arg == "new_index":
        bad, exc = data.draw(bad_flat_index(P))
    elif arg == "condition_on":
        bad, exc = data.draw(st.one_of(bad_flat_index(P, allow_empty=True), st.just(([1, 2], ValueError))))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: fn(**kwargs), exc, arg, case.net)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(["net", "layer", "exclude"]), data=st.data())
def test_layer_flat_index_refuses(name, arg, data):
    case = case_of(name)
    net = case.net
    n, P = len(net.layers), net.num_params()
    free = [i for i, la in enumerate(net.layers) if not la.param_names]
    good = dict(net=net, layer=0, exclude=None)
    if arg == "net":
        bad, exc = draw_common(data, case, "net")
    elif arg == "layer":
        bad, exc = data.draw(st.sampled_from([(-1, ValueError), (n, ValueError), (1.0, TypeError), (None, TypeError),
                                              (True, TypeError), ("no_such_layer", KeyError)]
                                             + [(i, ValueError) for i in free]))      # no parameters
    else:
        bad, exc = data.draw(bad_flat_index(P, allow_empty=True))
    kwargs = dict(good, **{arg: bad})
    refused(lambda: layer_flat_index(**kwargs), exc, arg, net)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(COMMON + ("layer",)), data=st.data())
def test_width_proposals_constructor_refuses(name, arg, data):
    case = case_of(name)
    good = base(case, layer=case.hidden[0], damping=0.0, metric="euclidean")
    if arg == "layer":
        bad, exc = data.draw(bad_index(len(case.net.layers), non_producers(case.net)))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: WidthProposals(**kwargs), exc, arg, case.net)


def proposals(name):
    if name not in _CONTEXTS:
        case = case_of(name)
        _CONTEXTS[name] = WidthProposals(case.net, case.X, case.Y, case.loss, case.hidden[0], damping=0.01)
    return _CONTEXTS[name]


@FAST
@given(name=st.sampled_from(NAMES), method=st.sampled_from(["score", "activations", "score_activations",
                                                            "random_candidates"]), data=st.data())
def test_width_proposals_methods_refuse(name, method, data):
    case, wp = case_of(name), proposals(name)
    rng = np.random.default_rng(7)
    C, k = 3, 2
    W, b, act = wp.random_candidates(C, np.random.default_rng(1), k=k)
    if method in ("score", "activations"):
        args = ["W", "b", "act"] + (["grad", "gain"] if method == "score" else [])
        arg = data.draw(st.sampled_from(args))
        good = dict(W=W, b=b, act=act)
        if arg == "W":
            bad, exc = data.draw(bad_array(W.shape, free=(0, 1)))
        elif arg == "b":
            bad, exc = data.draw(bad_array(b.shape))
        elif arg == "act":
            key = data.draw(st.sampled_from(sorted(act)))
            value, exc = data.draw(bad_array((C, k)))
            bad, exc = data.draw(st.sampled_from([(dict(act, **{key: value}), exc), ({"v": act["v"]}, ValueError),
                                                  (list(act.values()), ValueError)]))
        else:
            bad, exc = data.draw(bad_bool())
        kwargs = dict(good, **{arg: bad})
        refused(lambda: getattr(wp, method)(**kwargs), exc, arg, case.net, rng=rng)
    elif method == "score_activations":
        H = wp.activations(W, b, act)
        arg = data.draw(st.sampled_from(["H", "grad"]))
        bad, exc = data.draw(bad_array(H.shape, free=(0, 3)) if arg == "H" else bad_bool())
        kwargs = dict(dict(H=H, grad=False), **{arg: bad})
        refused(lambda: wp.score_activations(**kwargs), exc, arg, case.net)
    else:                                   # a refused draw leaves the caller's rng alone
        arg = data.draw(st.sampled_from(["n", "k", "rng"]))
        if arg == "rng":
            bad, exc = data.draw(st.sampled_from([(None, TypeError), (3, TypeError),
                                                  (np.random.RandomState(0), TypeError)]))
        else:
            bad, exc = data.draw(bad_count())
        kwargs = dict(dict(n=C, rng=rng, k=k), **{arg: bad})
        refused(lambda: wp.random_candidates(**kwargs), exc, arg, case.net, rng=rng)


@FAST
@given(arg=st.sampled_from(["H", "R", "G_inv", "a", "A_inv", "shift", "grad"]), data=st.data())
def test_kfac_width_gain_refuses(arg, data):
    rng = np.random.default_rng(3)
    C, N, T, q, m, n = 2, 5, 1, 2, 3, 4
    good = dict(H=rng.standard_normal((C, N, T, q)), R=rng.standard_normal((N, T, m)), G_inv=np.eye(m),
                a=rng.standard_normal((N, T, n)), A_inv=np.eye(n), shift=0.1, grad=True)
    # H sets N, T, q (R and a are checked against it), R sets m (G_inv), a sets n (A_inv)
    free = {"H": (0, 1, 2, 3), "R": (2,), "a": (2,), "G_inv": (), "A_inv": ()}
    if arg == "shift":
        bad, exc = data.draw(bad_scalar())
    elif arg == "grad":
        bad, exc = data.draw(bad_bool())
    else:
        bad, exc = data.draw(bad_array(good[arg].shape, free=free[arg]))
    kwargs = dict(good, **{arg: bad})
    # the messages say "H (candidate inputs): ...", "a (consumer inputs): ..."
    with pytest.raises(exc, match=rf"^{re.escape(arg)}(:| \()"):
        kfac_width_gain(**kwargs)


def depth_site(case):
    """The output Dense (a Dense consumer: any shift allowed) and its width k."""
    pos = max(i for i, la in enumerate(case.net.layers) if isinstance(la, Dense))
    return pos, case.net.layers[pos].params["W"].shape[1]


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(COMMON + ("position", "natural", "condition")),
       data=st.data())
def test_depth_proposals_constructor_refuses(name, arg, data):
    case = case_of(name)
    pos, _ = depth_site(case)
    good = base(case, position=pos, damping=0.0, metric="euclidean", natural="exact", condition="none")
    if arg == "position":
        bad, exc = data.draw(bad_index(len(case.net.layers), non_linear(case.net)))
    elif arg in ("natural", "condition"):
        bad, exc = data.draw(bad_option(NATURAL if arg == "natural" else CONDITIONS))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: DepthProposals(**kwargs), exc, arg, case.net)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(["B", "s", "grad"]), data=st.data())
def test_depth_proposals_score_refuses(name, arg, data):
    case = case_of(name)
    pos, k = depth_site(case)
    key = ("depth", name)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = DepthProposals(case.net, case.X, case.Y, case.loss, pos, damping=0.01)
    dp, C = _CONTEXTS[key], 3
    good = dict(B=np.tile(np.eye(k), (C, 1, 1)), s=np.zeros((C, k)), grad=True)
    if arg == "grad":
        bad, exc = data.draw(bad_bool())
    else:
        bad, exc = data.draw(bad_array(good[arg].shape, free=(0,) if arg == "B" else ()))
    kwargs = dict(good, **{arg: bad})
    refused(lambda: dp.score(**kwargs), exc, arg, case.net)


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from([depth_gain_exact, depth_gain_closed]),
       arg=st.sampled_from(COMMON + ("position", "B", "s", "params")), data=st.data())
def test_depth_gains_refuse(name, fn, arg, data):
    case = case_of(name)
    pos, k = depth_site(case)
    good = base(case, position=pos, B=np.eye(k) + 0.1, s=np.zeros(k), damping=0.1, metric="euclidean",
                params="vc")
    if arg == "position":
        bad, exc = data.draw(bad_index(len(case.net.layers), non_linear(case.net)))
    elif arg == "B":
        bad, exc = data.draw(st.one_of(bad_array((k, k)), st.just((np.zeros((k, k)), ValueError))))
    elif arg == "s":
        bad, exc = data.draw(bad_array((k,), none_ok=True))
    elif arg == "params":
        bad, exc = data.draw(bad_option(PARAM_SETS))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: fn(**kwargs), exc, arg, case.net)


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from([pruning_scores, obs_compensation]),
       arg=st.sampled_from(COMMON + ("layer", "curvature", "incoming", "scope", "pi", "groups")), data=st.data())
def test_pruning_scores_refuse(name, fn, arg, data):
    case = case_of(name)
    h = case.hidden[0]
    U = case.net.layers[h].params["W"].shape[0]
    good = base(case, layer=h, damping=0.1, metric="euclidean", curvature="exact", incoming="free",
                scope="network", pi=1.0)
    if fn is obs_compensation:
        good["units"] = [0]
    if arg == "groups":                                     # obs_compensation: its units instead
        arg = "groups" if fn is pruning_scores else "units"
        if arg == "units":
            bad, exc = data.draw(bad_units(U))
        else:
            bad, exc = data.draw(st.sampled_from([(3, ValueError), ([], ValueError), ("ab", ValueError),
                                                  ([[U]], ValueError), ([[0.5]], TypeError), ([[0, 0]], ValueError),
                                                  ([[]], ValueError), ([[-1]], ValueError)]))
    elif arg == "layer":
        bad, exc = data.draw(bad_index(len(case.net.layers), non_producers(case.net)))
    elif arg in ("curvature", "incoming", "scope"):
        bad, exc = data.draw(bad_option({"curvature": CURVATURES, "incoming": INCOMING, "scope": SCOPES}[arg]))
    elif arg == "pi":
        bad, exc = data.draw(st.sampled_from([(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError),
                                              ("foo", ValueError), (None, TypeError), (True, TypeError)]))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: fn(**kwargs), exc, arg, case.net)


def test_pruning_fixed_incoming_needs_the_network_scope():
    case = case_of("mlp_rational")
    for fn, extra in ((pruning_scores, {}), (obs_compensation, {"units": [0]})):
        refused(lambda: fn(case.net, case.X, case.Y, case.loss, 0, incoming="fixed", scope="consumer", **extra),
                ValueError, "incoming", case.net)


@FAST
@given(arg=st.sampled_from(["scores", "tau", "eta_c", "min_width"]), data=st.data())
def test_pruning_candidates_refuses(arg, data):
    case = case_of("mlp_rational")
    if "scores" not in _CONTEXTS:
        _CONTEXTS["scores"] = pruning_scores(case.net, case.X, case.Y, case.loss, 0, damping=0.1)
    good = dict(scores=_CONTEXTS["scores"], tau=0.5, eta_c=None, min_width=1)
    if arg == "scores":
        bad, exc = data.draw(st.sampled_from([(None, TypeError), ({"freeze": [0.0]}, TypeError),
                                              (_CONTEXTS["scores"].freeze, TypeError)]))
    elif arg == "min_width":
        bad, exc = data.draw(bad_count())
    else:
        bad, exc = data.draw(bad_scalar().filter(lambda be: be[0] is not None or arg == "tau"))
    kwargs = dict(good, **{arg: bad})
    refused(lambda: pruning_candidates(**kwargs), exc, arg, case.net)


def test_depth_score_refuses_a_shift_before_a_padded_conv():
    case = case_of("conv_flatten")
    pos = 3                                          # conv2d1, 'same' zero padding
    dp = DepthProposals(case.net, case.X, case.Y, case.loss, pos, damping=0.01)
    refused(lambda: dp.score(np.tile(np.eye(2), (2, 1, 1)), np.ones((2, 2))), ValueError, "s", case.net)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(NAMES), target=st.sampled_from(["euclidean_eta", "constructor", "score", "random_candidates",
                                                            "outgoing_gradient", "project_units"]), data=st.data())
def test_euclidean_proposals_refuse(name, target, data):
    case = case_of(name)
    rng = np.random.default_rng(8)
    if target in ("euclidean_eta", "constructor"):
        fn = euclidean_eta if target == "euclidean_eta" else EuclideanWidthProposals
        args = ("net", "X", "Y", "loss") + (("layer",) if target == "constructor" else ())
        arg = data.draw(st.sampled_from(args))
        good = base(case, **({"layer": case.hidden[0]} if target == "constructor" else {}))
        if arg == "layer":
            bad, exc = data.draw(bad_index(len(case.net.layers), non_producers(case.net)))
        else:
            bad, exc = draw_common(data, case, arg)
        kwargs = dict(good, **{arg: bad})
        refused(lambda: fn(**kwargs), exc, arg, case.net)
        return
    key = ("euclidean", name)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, case.hidden[0])
    ep, C, k = _CONTEXTS[key], 3, 2
    W, b, act = ep.random_candidates(C, np.random.default_rng(1), k=k)
    if target == "score":
        arg = data.draw(st.sampled_from(["W", "b", "act", "grad", "gain"]))
        if arg in ("grad", "gain"):
            bad, exc = data.draw(bad_bool())
        elif arg == "act":
            bad, exc = {"v": act["v"]}, ValueError
        else:
            bad, exc = data.draw(bad_array(W.shape if arg == "W" else b.shape, free=(0, 1) if arg == "W" else ()))
        kwargs = dict(dict(W=W, b=b, act=act), **{arg: bad})
        refused(lambda: ep.score(**kwargs), exc, arg, case.net)
    elif target == "random_candidates":            # a refused draw leaves the caller's rng alone
        arg = data.draw(st.sampled_from(["n", "k", "rng"]))
        bad, exc = data.draw(bad_count()) if arg != "rng" else ((3, TypeError))
        kwargs = dict(dict(n=C, rng=rng, k=k), **{arg: bad})
        refused(lambda: ep.random_candidates(**kwargs), exc, arg, case.net, rng=rng)
    elif target == "outgoing_gradient":
        H = ep.candidates.forward(W, b, act)[0]
        bad, exc = data.draw(bad_array(H.shape, free=(0, 3)))
        refused(lambda: ep.outgoing_gradient(bad), exc, "H", case.net)
    else:
        arg = data.draw(st.sampled_from(["W", "b", "radius"]))
        if arg == "radius":
            bad, exc = data.draw(bad_scalar(strict=True))
        else:
            # b sets (C, k), which W is checked against; W's kernel axes are free (any kernel shape:
            # project_units does not know the network), so a finite (C, k, ...) float W is valid
            free = tuple(range(2, W.ndim)) if arg == "W" else (0, 1)
            bad, exc = data.draw(bad_array(W.shape if arg == "W" else b.shape, free=free))
            assume(not (arg == "W" and isinstance(bad, np.ndarray) and bad.dtype == np.float64 and bad.ndim >= 3
                        and bad.shape[:2] == b.shape and bad.size and np.isfinite(bad).all()))
        kwargs = dict(dict(W=W, b=b, radius=1.0), **{arg: bad})
        refused(lambda: project_units(**kwargs), exc, arg, case.net)
