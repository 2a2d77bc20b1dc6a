"""Best proposal of a layer (senn_ref/grow/proposals.py); derivations/20-proposal-search.md section 3."""
import numpy as np
import pytest

from grow_cases import CASES, make_case
from senn_ref.grow.kfac_proposal import WidthProposals
from senn_ref.grow.proposals import (Proposal, best_depth_proposal, best_width_proposal, clip_singular_values,
                                     depth_candidates)
from senn_ref.testing import assert_close

DAMPING = 0.1


def _width(case, i, method, seed, n=12, steps=6):
    return best_width_proposal(case.net, case.X, case.Y, case.loss, i, n_candidates=n,
                               rng=np.random.default_rng(seed), method=method, steps=steps, damping=DAMPING)


@pytest.mark.parametrize("name", CASES)
def test_width_proposal_reports_the_scores_of_its_own_parameters(name):
    case = make_case(name, 3)
    before = case.net.get_flat().copy()
    for i in case.hidden:
        p = _width(case, i, "ascent", 0)
        assert isinstance(p, Proposal) and p.kind == "width" and p.index == i
        ctx = WidthProposals(case.net, case.X, case.Y, case.loss, i, damping=DAMPING)
        act = {k: v[None] for k, v in p.params["act"].items()}
        sc = ctx.score(p.params["W"][None], p.params["b"][None], act)
        assert_close(p.lower_bound, sc.lower_bound[0], rtol=1e-12, name="lower bound")
        assert_close(p.kfac_gain, sc.gain[0], rtol=1e-12, name="K-FAC gain")
        assert_close(p.eta_layer, ctx.eta_layer, rtol=1e-12, name="eta_layer")
        # the K-FAC gain is never below its lower bound; the search never ends below its start
        assert p.kfac_gain >= p.lower_bound * (1 - 1e-10), (p.kfac_gain, p.lower_bound)
        assert p.lower_bound >= p.initial_best, (p.lower_bound, p.initial_best)
    np.testing.assert_array_equal(case.net.get_flat(), before)            # scoring changes nothing


def test_width_proposal_is_deterministic_under_its_seed():
    case = make_case("mlp_deep", 1)
    for method in ("ascent", "langevin", "random"):
        a, b = _width(case, 0, method, 7), _width(case, 0, method, 7)
        assert a.lower_bound == b.lower_bound, method
        for k in ("W", "b"):
            np.testing.assert_array_equal(a.params[k], b.params[k])


def test_random_search_returns_the_best_drawn_candidate():
    case = make_case("mlp_rational", 2)
    p = _width(case, 0, "random", 5, n=30)
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, 0, damping=DAMPING)
    W, b, act = ctx.random_candidates(30, np.random.default_rng(5))
    lb = ctx.score(W, b, act).lower_bound
    assert_close(p.lower_bound, lb.max(), rtol=1e-12, name="best drawn lower bound")
    assert p.initial_best == p.lower_bound


def test_depth_candidates_start_at_the_identity_and_stay_invertible(rng):
    B, s = depth_candidates(4, 50, rng)
    np.testing.assert_array_equal(B[0], np.eye(4))
    np.testing.assert_array_equal(s[0], 0.0)
    sv = np.linalg.svd(B, compute_uv=False)
    assert np.all(sv.min(axis=1) >= 1e-3 * sv.mean(axis=1) * (1 - 1e-12))
    # clipping: a singular B gets every singular value raised to 1e-3 of the mean, others kept
    Bs = np.diag([2.0, 1.0, 0.0])[None]
    sv_c = np.linalg.svd(clip_singular_values(Bs), compute_uv=False)[0]
    assert_close(sv_c, np.array([2.0, 1.0, 1e-3]), rtol=1e-12, name="clipped singular values")


def test_search_on_a_subset_reports_whole_batch_scores_never_below_the_best_start():
    case = make_case("mlp_deep", 4, N=40)
    for i in case.hidden:
        p = best_width_proposal(case.net, case.X, case.Y, case.loss, i, n_candidates=10,
                                rng=np.random.default_rng(2), steps=5, damping=DAMPING, search_batch=12)
        ctx = WidthProposals(case.net, case.X, case.Y, case.loss, i, damping=DAMPING)
        act = {k: v[None] for k, v in p.params["act"].items()}
        lb = ctx.score(p.params["W"][None], p.params["b"][None], act).lower_bound[0]
        assert_close(p.lower_bound, lb, rtol=1e-12, name="whole-batch lower bound")
        # the candidates drawn first are the same as without a subset: the start is never lost
        W, b, act0 = ctx.random_candidates(10, np.random.default_rng(2))
        start = ctx.score(W, b, act0).lower_bound.max()
        assert_close(p.initial_best, start, rtol=1e-12, name="best start, whole batch")
        assert p.lower_bound >= start
        q = best_width_proposal(case.net, case.X, case.Y, case.loss, i, n_candidates=10,
                                rng=np.random.default_rng(2), steps=5, damping=DAMPING, search_batch=12)
        assert q.lower_bound == p.lower_bound
    d = best_depth_proposal(case.net, case.X, case.Y, case.loss, 2, n_candidates=6, rng=np.random.default_rng(0),
                            steps=3, damping=DAMPING, search_batch=12)
    from senn_ref.grow.depth_gain import DepthProposals
    full = DepthProposals(case.net, case.X, case.Y, case.loss, 2, damping=DAMPING)
    assert_close(d.lower_bound, full.score(d.params["B"][None], d.params["s"][None]).lower_bound[0], rtol=1e-10,
                 name="depth whole-batch lower bound")
    assert d.lower_bound >= d.initial_best
