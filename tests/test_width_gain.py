"""Exact width gains (senn_ref/grow/width_gain.py, residual.py): Schur gain = eta difference,
lower bound <= conditioned bound <= exact, equality when F_op = 0, duplicates gain nothing,
the residual gradient against a dense brute force, argument errors.
derivations/15-width-gain.md; claims 7 of senn-math section 11.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from grow_cases import CASES, make_case
from senn_ref import score
from senn_ref.fisher.exact import jacobian
from senn_ref.grow.add_neurons import add_neurons
from senn_ref.grow.residual import residual_gradient
from senn_ref.grow.structure import hidden_path, unit_layers
from senn_ref.grow.width_gain import gain_exact, gain_lower_bound, layer_flat_index, width_gains
from senn_ref.testing import assert_close

DAMPINGS = (0.0, 1e-6, 1e-3, 0.1)


def _metric(case):
    return "true" if case.classification else "euclidean"


def _new_units(net, layer, k, rng):
    """Random incoming weights, bias and per-unit activation parameters for k new units."""
    W = net.layers[layer].params["W"]
    path = hidden_path(net, layer)
    per_unit = unit_layers(net, path)
    act = {}
    for la in per_unit:
        for p in la.param_names:
            act[p if len(per_unit) == 1 else f"{la.name}.{p}"] = rng.standard_normal(k)
    return rng.standard_normal((k,) + W.shape[1:]), rng.standard_normal(k), act


def _grown(case, layer, k, seed):
    net = case.net.copy()
    W, b, act = _new_units(net, layer, k, np.random.default_rng(seed))
    rec = add_neurons(net, layer, W, b, act)
    return net, rec


def _batch_size(name):
    """Enough examples that the stacked Jacobian has more rows than the grown net has parameters,
    so the undamped gain is not trivially zero (N r > P)."""
    return {"conv_flatten": 70, "conv_strided": 80, "conv_gap": 40, "mlp_deep": 45}.get(name, 40)


@pytest.mark.parametrize("name", CASES)
def test_gain_exact_equals_eta_difference(name):
    # Delta eta (Schur) == eta(after) - eta(before), same damping and metric; tolerance 1e-8
    # relative plus the rounding of the difference of two scores (a few eps * lambda).
    case = make_case(name, seed=3, N=_batch_size(name))
    metric = _metric(case)
    lam = score.ceiling(case.net, case.X, case.Y, case.loss, metric=metric)
    before = {d: score.eta(case.net, case.X, case.Y, case.loss, damping=d, metric=metric) for d in DAMPINGS}
    checked = 0
    for layer in case.hidden:
        for k in (1, 2):
            net, rec = _grown(case, layer, k, seed=10 * layer + k)
            for d in DAMPINGS:
                after = score.eta(net, case.X, case.Y, case.loss, damping=d, metric=metric)
                gain = gain_exact(net, case.X, case.Y, case.loss, rec.new_index, damping=d, metric=metric)
                assert_close(gain, after - before[d], rtol=1e-8, atol=1e-12 * lam,
                             name=f"{name} layer {layer} k={k} damping {d}")
                checked += gain > 1e-6 * lam
    assert checked >= 4 * len(case.hidden), "the gains should not be trivially zero"
