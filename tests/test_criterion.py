"""The expansion criterion and the rate bound (senn_ref/grow/criterion.py; derivations/19)."""
import numpy as np
import pytest

from senn_ref.grow.criterion import decide, rate_bound


def test_rate_bound_formula():
    assert rate_bound(1.0, 2.5e-3) == pytest.approx(1 + np.log(400) / np.log(2), rel=1e-13)
    assert rate_bound(0.007, 2.5e-3) == pytest.approx(1 + np.log(400) / np.log(1.007), rel=1e-13)
    assert rate_bound(3.0, 1.0) == 1.0                     # alpha = lambda: not even one addition


def test_rate_bound_is_sharp_for_a_geometric_sequence():
    # The extremal round: the first gain just above alpha, each next one just above tau * eta.
    # eta then grows like alpha (1 + tau)^(n - 1) and the ceiling lambda stops it before the bound.
    for tau, a in [(1.0, 2.5e-3), (1.5, 0.05), (2.0, 0.01)]:      # tau >= 1: tau * eta >= alpha after the first
        lam, eta, n = 1.0, 0.0, 0
        gain = a * lam * (1 + 1e-9)
        while eta + gain <= lam:
            d = decide(gain, eta, lam, tau, a)
            assert d.accepted
            eta += gain
            n += 1
            gain = max(tau * eta, a * lam) * (1 + 1e-9)
        assert n < rate_bound(tau, a)
        assert n >= rate_bound(tau, a) - 2            # the bound is within one addition of sharp


def test_decide_both_tests_and_the_depth_cost():
    d = decide(0.15, 0.2, 1.0, 1.0, 0.01)
    assert d.passes_absolute and not d.passes_relative and not d.accepted and d.ratio == pytest.approx(0.75)
    d = decide(0.5, 0.2, 1.0, 1.0, 0.01)
    assert d.accepted
    d = decide(0.5, 0.2, 1.0, 1.0, 0.01, cost=2.0)    # 0.25 / 0.2 > 1 still, halved gain
    assert d.score == 0.25 and d.accepted
    d = decide(0.5, 0.2, 1.0, 1.0, 0.01, cost=4.0)
    assert not d.accepted
    d = decide(0.004, 0.001, 1.0, 1.0, 0.005)         # relative passes, absolute fails
    assert d.passes_relative and not d.passes_absolute and not d.accepted
    assert not decide(float("nan"), 0.1, 1.0, 1.0, 0.01).accepted
    assert decide(0.1, 0.0, 1.0, 1.0, 0.01).accepted  # nothing explained yet: any real gain counts


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 0.0}, "tau"), ({"tau": -1.0}, "tau"), ({"alpha_rel": 0.0}, "alpha_rel"),
    ({"alpha_rel": 2.0}, "alpha_rel"),
])
def test_rate_bound_refuses_bad_thresholds(kwargs, match):
    args = {"tau": 1.0, "alpha_rel": 0.01, **kwargs}
    with pytest.raises(ValueError, match=match):
        rate_bound(**args)


def test_decide_refuses_negative_scores():
    with pytest.raises(ValueError, match="eta_c"):
        decide(0.1, -1.0, 1.0, 1.0, 0.01)
    with pytest.raises(ValueError, match="cost"):
        decide(0.1, 1.0, 1.0, 1.0, 0.01, cost=0.0)


def test_the_absolute_threshold_scales_with_lambda():
    # alpha = alpha_rel * lambda: the same gain passes under a small ceiling and fails under a large one
    d = decide(0.05, 0.01, 2.0, 1.0, 0.01)
    assert d.alpha == pytest.approx(0.02, rel=1e-15) and d.accepted
    d = decide(0.05, 0.01, 10.0, 1.0, 0.01)
    assert d.alpha == pytest.approx(0.1, rel=1e-15) and not d.passes_absolute and not d.accepted
    # both tests are strict inequalities
    assert not decide(0.02, 0.01, 2.0, 1.0, 0.01).passes_absolute
    assert not decide(0.01, 0.01, 2.0, 1.0, 1e-3).passes_relative
