"""Bad input to senn_ref.score, senn_ref.kfac.kfac_eta and senn_ref.fisher is refused before
anything changes (issue 10, item 3): eta, eta_exact_details, ceiling, mean_loss_grad,
whitened_residual, kfac_eta (Monte-Carlo mode: the rng is left alone), and exact, ggn_factor,
jacobian (+ forward/reverse), matvec, FisherOperator (+ its products), ggn_from_jacobian.

As in tests/test_bad_input_growth.py, hypothesis draws one argument and a bad value for it
(tests/bad_args.py); the call must raise the documented exception type with the argument's name
in the message and leave the network (tests/snapshots.py: layer list, every parameter,
num_params) and any rng it was given bit-for-bit unchanged.  Scoring runs forward passes, so the
layers' caches are not compared.  The gains and proposals are in tests/test_bad_input_gains.py.
"""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from bad_args import (COMMON, NAMES, bad_array, bad_bool, bad_count, bad_option, bad_scalar, base, case_of,
                      draw_common, refused)
from senn_ref import fisher, score
from senn_ref.fisher.exact import jacobian_forward, jacobian_reverse
from senn_ref.kfac import kfac_eta
from senn_ref.kfac.columns import MODES
from senn_ref.kfac.score import DAMPING_MODES

FAST = settings(max_examples=25, deadline=None)


SCORE_FUNCTIONS = {score.eta: COMMON + ("curvature", "rcond", "option"),
                   score.eta_exact_details: COMMON + ("rcond",),
                   score.ceiling: ("net", "X", "Y", "loss", "metric"),
                   score.mean_loss_grad: ("net", "X", "Y", "loss")}


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from(list(SCORE_FUNCTIONS)), data=st.data())
def test_score_functions_refuse(name, fn, data):
    case = case_of(name)
    arg = data.draw(st.sampled_from(SCORE_FUNCTIONS[fn]))
    good = base(case)
    if arg == "curvature":
        bad, exc = data.draw(bad_option(score.CURVATURES))
    elif arg == "rcond":
        bad, exc = data.draw(bad_scalar().filter(lambda be: be[0] is not None))
    elif arg == "option":                                    # an option of another curvature
        arg, bad, exc = data.draw(st.sampled_from(["tol", "mode", "no_such_option"])), 1, ValueError
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: fn(**kwargs), exc, arg, case.net)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(["loss", "outputs", "Y", "metric", "return_residual"]),
       data=st.data())
def test_whitened_residual_refuses(name, arg, data):
    case = case_of(name)
    outputs = case.net.forward(case.X)
    good = dict(loss=case.loss, outputs=outputs, Y=case.Y, metric="true", return_residual=True)
    named = arg
    if arg == "outputs":
        bad, exc = data.draw(bad_array(outputs.shape, free=(0, 1)))
        # more axes are a valid (N,) + out_shape: accepted when it flattens to Y's shape (a trailing
        # axis of size 1), else refused by the targets' check, which names Y
        if isinstance(bad, np.ndarray) and bad.dtype == np.float64 and bad.ndim > 2 and np.isfinite(bad).all():
            assume(bad[0].size != outputs[0].size)
            named = "Y"
    elif arg == "return_residual":
        bad, exc = data.draw(bad_bool())
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: score.whitened_residual(**kwargs), exc, named, case.net)


@pytest.mark.parametrize("name", NAMES)
def test_eta_kfac_mc_leaves_the_rng_alone_when_refusing(name):
    case = case_of(name)
    rng = np.random.default_rng(4)
    for kwargs, arg in (({"X": case.X[:, ..., :1]}, "X"), ({"Y": case.Y[:3]}, "Y"), ({"damping": -1.0}, "damping"),
                        ({"n_samples": 0}, "n_samples"), ({"pi": "foo"}, "pi")):
        call = dict(base(case), curvature="kfac", mode="mc", rng=rng, **kwargs)
        refused(lambda: score.eta(**call), (ValueError, TypeError), arg, case.net, rng=rng)


@FAST
@given(name=st.sampled_from(NAMES), arg=st.sampled_from(COMMON + ("mode", "damping_mode", "include_rational",
                                                                  "n_samples", "rng", "pi")), data=st.data())
def test_kfac_eta_refuses(name, arg, data):
    case = case_of(name)
    rng = np.random.default_rng(9)
    good = base(case, damping=0.1, metric="euclidean", mode="mc", n_samples=2, rng=rng)
    if arg in ("mode", "damping_mode"):
        bad, exc = data.draw(bad_option(MODES if arg == "mode" else DAMPING_MODES))
    elif arg == "include_rational":
        bad, exc = data.draw(bad_bool())
    elif arg == "n_samples":
        bad, exc = data.draw(bad_count())
    elif arg == "rng":
        bad, exc = data.draw(st.sampled_from([(3, TypeError), ("rng", TypeError), (np.random.RandomState(0), TypeError)]))
    elif arg == "pi":
        bad, exc = data.draw(st.sampled_from([(0.0, ValueError), ("foo", ValueError), (None, TypeError)]))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    refused(lambda: kfac_eta(**kwargs), exc, arg, case.net, rng=rng)


FISHER = {fisher.exact: ("net", "X", "loss", "metric", "Y"), fisher.ggn_factor: ("net", "X", "loss", "metric", "Y"),
          fisher.jacobian: ("net", "X"), jacobian_forward: ("net", "X"), jacobian_reverse: ("net", "X"),
          fisher.matvec: ("net", "X", "loss", "metric", "Y", "v"),
          fisher.FisherOperator: ("net", "X", "loss", "metric", "Y", "damping")}


@FAST
@given(name=st.sampled_from(NAMES), fn=st.sampled_from(list(FISHER)), data=st.data())
def test_fisher_functions_refuse(name, fn, data):
    case = case_of(name)
    arg = data.draw(st.sampled_from(FISHER[fn]))
    P = case.net.num_params()
    # the empirical metric M_n = e_n e_n^T needs (and so checks) the targets
    good = {"net": case.net, "X": case.X, "loss": case.loss, "metric": "empirical", "Y": case.Y,
            "v": np.ones(P), "damping": 0.1}
    good = {key: good[key] for key in FISHER[fn]}
    if arg == "v":
        bad, exc = data.draw(bad_array((P,)))
    else:
        bad, exc = draw_common(data, case, arg)
    kwargs = dict(good, **{arg: bad})
    if arg == "Y" and bad is None:          # the metric's own check: "metric='empirical' needs ... Y="
        exc, arg = ValueError, re.compile(r"empirical.*needs the targets: pass Y=")
    refused(lambda: fn(**kwargs), exc, arg, case.net)


@FAST
@given(name=st.sampled_from(NAMES), method=st.sampled_from(["matvec", "ggn_matvec"]), data=st.data())
def test_fisher_operator_products_and_ggn_from_jacobian_refuse(name, method, data):
    case = case_of(name)
    op = fisher.FisherOperator(case.net, case.X, case.loss, damping=0.1)
    bad, exc = data.draw(bad_array((op.P,)))
    refused(lambda: getattr(op, method)(bad), exc, "v", case.net)
    assert op.n_products == 0
    J, M = np.ones((4, 2, 3)), np.tile(np.eye(2), (4, 1, 1))
    arg = data.draw(st.sampled_from(["J", "M"]))
    # J sets N, K, P (M is checked against it)
    bad, exc = data.draw(bad_array((4, 2, 3), free=(0, 1, 2)) if arg == "J" else bad_array((4, 2, 2), none_ok=True))
    kwargs = dict(dict(J=J, M=M), **{arg: bad})
    refused(lambda: fisher.ggn_from_jacobian(**kwargs), exc, arg, case.net)
