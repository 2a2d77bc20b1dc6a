"""The Euclidean (GradMax-like) width gain and the trainer's ``score="euclidean"`` option
(senn_ref/grow/euclidean_gain.py; derivations/23-euclidean-gain.md).

Checks: Delta_E equals the squared gradient of the new outgoing weights of the network grown by
``add_neurons`` (brute force through ``Network.loss_and_grad``) on every grow case, and the
network's squared gradient norm rises by exactly Delta_E; the tangential gradient of the
projected score matches finite differences (W, b, act; dense and conv producers, pooling,
flatten); the score ignores the scale of (W_j, b_j); candidates start on the sphere; the search
returns a point on it; the option changes decisions against the natural score on a small case,
and a Euclidean round raises E by exactly its accepted gains; bad options are refused by name.
"""
import numpy as np
import pytest
from grow_cases import CASES, fd_check_candidates, make_case

from senn_ref.bench.senn_rounds import random_case
from senn_ref.grow.add_neurons import add_neurons
from senn_ref.grow.euclidean_gain import RADIUS, EuclideanWidthProposals, euclidean_eta, project_units
from senn_ref.grow.expansion_round import architecture, expansion_round
from senn_ref.grow.kfac_proposal import WidthProposals
from senn_ref.grow.proposals import best_width_proposal
from senn_ref.grow.structure import hidden_path
from senn_ref.testing import assert_close
from senn_ref.trainer import SENNConfig

PAIRS = [(name, h) for name in CASES for h in make_case(name, 0).hidden]


def _unit_norms(W, b):
    C, k = b.shape
    return np.sqrt(np.sum(W.reshape(C, k, -1) ** 2, axis=2) + b * b)


@pytest.mark.parametrize("name, layer", PAIRS)
def test_gain_is_the_squared_gradient_of_the_new_outgoing_weights(name, layer):
    """Brute force: grow a copy by add_neurons (the projected candidate, k = 2), take the mean
    loss's gradient of the grown network: its entries at Growth.new_index (incoming weights,
    biases, activation parameters, zero outgoing weights) squared and summed equal Delta_E, the
    grown network's ||grad L||^2 equals the old one plus Delta_E, and the consumer's as well."""
    case = make_case(name, 0)
    ctx = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, layer)
    E0, per0 = euclidean_eta(case.net, case.X, case.Y, case.loss)
    assert_close(ctx.E_network, E0, 1e-14, name="E_network")
    cons = case.net.layers[ctx.path.consumer].name
    assert_close(ctx.eta_layer, per0[cons], 1e-14, name="eta_layer")
    W, b, act = ctx.random_candidates(3, np.random.default_rng(5), k=2)
    W = W * np.array([0.5, 1.0, 3.0])[:, None, None].reshape((3, 1) + (1,) * (W.ndim - 2))  # off the sphere
    sc = ctx.score(W, b, act)
    Wp, bp = project_units(W, b)
    for i in range(3):
        grown = case.net.copy()
        rec = add_neurons(grown, layer, Wp[i], bp[i], {k: v[i] for k, v in act.items()} or None)
        _, grads = grown.loss_and_grad(case.X, case.Y, case.loss)
        flat = grads.flat_grad()
        brute = float(np.sum(flat[rec.new_index] ** 2))
        assert_close(sc.gain[i], brute, 1e-12, name=f"{name} candidate {i}: Delta_E vs brute force")
        assert sc.lower_bound[i] == sc.gain[i]
        E1, per1 = euclidean_eta(grown, case.X, case.Y, case.loss)
        assert_close(E1, E0 + sc.gain[i], 1e-12, name="||grad L(grown)||^2 = E + Delta_E")
        assert_close(per1[cons], per0[cons] + sc.gain[i], 1e-12, name="consumer's E rises by Delta_E")


def test_euclidean_eta_is_the_squared_gradient_norm():
    case = make_case("conv_strided", 0)
    E, per = euclidean_eta(case.net, case.X, case.Y, case.loss)
    _, grads = case.net.loss_and_grad(case.X, case.Y, case.loss)
    flat = grads.flat_grad()
    assert_close(E, float(np.sum(flat * flat)), 1e-14, name="E")
    sl = case.net.param_slices()
    for la in case.net.layers:
        if la.param_names:
            idx = np.concatenate([np.arange(sl[f"{la.name}.{p}"].start, sl[f"{la.name}.{p}"].stop)
                                  for p in la.param_names])
            assert_close(per[la.name], float(np.sum(flat[idx] ** 2)), 1e-14, name=la.name)
    assert_close(sum(per.values()), E, 1e-13, name="layers add up to the network")


GRAD_CASES = [("mlp_rational", 0), ("mlp_silu", 0), ("mlp_deep", 2), ("mlp_softmax", 0), ("conv_flatten", 0),
              ("conv_strided", 3), ("conv_gap", 0)]


@pytest.mark.parametrize("name, layer", GRAD_CASES)
def test_gradients_match_finite_differences(name, layer):
    """The tangential gradient (W, b) and the activation gradient of the projected Delta_E against
    central differences, at candidates off the sphere (norms 0.7 and 1.9 times RADIUS); the
    (W, b) gradient of each unit is orthogonal to its (W_j, b_j)."""
    case = make_case(name, 0)
    ctx = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, layer)
    W, b, act = ctx.random_candidates(2, np.random.default_rng(3), k=2)
    s = np.array([0.7, 1.9]).reshape((2,) + (1,) * (W.ndim - 1))
    W, b = W * s, b * s.reshape(2, 1)
    sc = ctx.score(W, b, act, grad=True)
    assert np.all(sc.gain > 1e-8)
    f = lambda W_, b_, a_: ctx.score(W_, b_, a_).gain  # noqa: E731
    fd_check_candidates(f, W, b, act, sc, f"{name} dE")
    C, k = b.shape
    radial = np.sum(sc.grad_W.reshape(C, k, -1) * W.reshape(C, k, -1), axis=2) + sc.grad_b * b
    scale = np.sqrt(np.sum(sc.grad_W.reshape(C, k, -1) ** 2, axis=2) + sc.grad_b ** 2) * _unit_norms(W, b)
    assert np.all(np.abs(radial) <= 1e-12 * scale), radial / scale


def test_score_ignores_the_scale_of_the_incoming_vector_and_candidates_start_on_the_sphere():
    case = make_case("mlp_silu", 0)          # SiLU: unbounded, the unprojected gain grows with scale
    ctx = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, 0)
    rng = np.random.default_rng(0)
    W, b, act = ctx.random_candidates(4, rng, k=3)
    assert_close(_unit_norms(W, b), np.full((4, 3), RADIUS), 1e-14, name="initial norms")
    W0, b0, _ = WidthProposals(case.net, case.X, case.Y, case.loss, 0).random_candidates(
        4, np.random.default_rng(0), k=3)
    Wr, br = project_units(W0, b0)
    assert np.array_equal(Wr, W) and np.array_equal(br, b), "the released draw, projected"
    base = ctx.score(W, b, act).gain
    c = np.array([1e-3, 0.5, 7.0, 1e3]).reshape(4, 1, 1)
    assert_close(ctx.score(W * c, b * c[:, :, 0], act).gain, base, 1e-12, name="scale invariance")
    # without the projection the gain of a SiLU unit grows with the scale (why it is needed)
    H = ctx.candidates.forward(W * 10.0, b * 10.0, act)[0]
    g = ctx.outgoing_gradient(H)
    assert np.all(np.einsum("cmq,cmq->c", g, g) > 10 * base)


@pytest.mark.parametrize("method", ["ascent", "langevin", "random"])
def test_search_returns_a_point_on_the_sphere_never_below_the_best_start(method):
    case = make_case("mlp_rational", 0)
    kw = dict(n_candidates=10, method=method, steps=6, score="euclidean")
    p = best_width_proposal(case.net, case.X, case.Y, case.loss, 0, rng=np.random.default_rng(2), **kw)
    assert p.kfac_gain is None and p.extra["euclidean_gain"] == p.lower_bound
    assert_close(_unit_norms(p.params["W"][None], p.params["b"][None]), np.full((1, 1), RADIUS), 1e-12,
                 name="proposal norm")
    ctx = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, 0)
    again = ctx.score(p.params["W"][None], p.params["b"][None], {k: v[None] for k, v in p.params["act"].items()})
    assert_close(again.gain[0], p.lower_bound, 1e-13, name="reported Delta_E is the proposal's own")
    assert_close(p.eta_layer, ctx.eta_layer, 1e-14, name="eta_layer")
    assert p.lower_bound >= p.initial_best
    if method == "ascent":
        assert p.lower_bound > 1.05 * p.initial_best, (p.lower_bound, p.initial_best)
    # with a search subset the reported score is still the whole batch's
    q = best_width_proposal(case.net, case.X, case.Y, case.loss, 0, rng=np.random.default_rng(2),
                            search_batch=5, **kw)
    again = ctx.score(q.params["W"][None], q.params["b"][None], {k: v[None] for k, v in q.params["act"].items()})
    assert_close(again.gain[0], q.lower_bound, 1e-13, name="subset search: whole-batch Delta_E")


def test_mala_iterates_drift_off_the_sphere_the_proposal_does_not(monkeypatch):
    """derivations/23 section 3.1: MALA runs unprojected on the scale-invariant score, so its
    iterates' unit norms drift (the target is flat along rays, its radial marginal improper);
    the score and the returned proposal do not depend on the norm.  Measured here at the
    defaults' scale (20 steps, 16 candidates): the drift is present but modest (median of
    ||u|| / RADIUS after the last step within [0.85, 1.35]), and the proposal is on the sphere."""
    import senn_ref.grow.search as search_module
    norms = []
    real = search_module._mala_step

    def spy(objective, cur, *args):
        out = real(objective, cur, *args)
        norms.append(_unit_norms(out[0]["W"], out[0]["b"]) / RADIUS)
        return out

    monkeypatch.setattr(search_module, "_mala_step", spy)
    case = make_case("mlp_rational", 0)
    p = best_width_proposal(case.net, case.X, case.Y, case.loss, 0, rng=np.random.default_rng(2),
                            n_candidates=16, method="langevin", steps=20, score="euclidean")
    ratios = np.array(norms)                                            # (steps, C, k)
    assert ratios.shape == (20, 16, 1)
    assert np.abs(ratios - 1.0).max() > 0.05, "no drift: update derivations/23 section 3.1"
    assert 0.85 < np.median(ratios[-1]) < 1.35, np.median(ratios[-1])
    assert_close(_unit_norms(p.params["W"][None], p.params["b"][None]), np.full((1, 1), RADIUS), 1e-12,
                 name="proposal norm")


def test_radius_is_the_rms_norm_of_the_released_draw():
    """RADIUS^2 = E||W_j||^2 + E b_j^2 of CandidatePath.random (LeCun-normal kernel, N(0, 1) bias):
    2 on a dense (fan-in 2) and a conv (fan-in 18) producer; 40000 units, 3 % (about 7 standard
    errors; RADIUS^2 = 2.1 is 5 % off)."""
    for name in ("mlp_tanh", "conv_strided"):
        case = make_case(name, 0)
        ctx = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, case.hidden[0])
        W, b, _ = ctx.candidates.random(20000, np.random.default_rng(0), k=2)
        ms = float(np.mean(_unit_norms(W, b) ** 2))
        assert abs(ms - RADIUS ** 2) < 0.03 * RADIUS ** 2, (name, ms, RADIUS ** 2)


def test_adam_ascent_iterates_stay_on_the_sphere(monkeypatch):
    """derivations/23 section 3: Adam ascent projects after every step, so every point the search
    keeps (SearchResult.params, each candidate's best) has unit vectors of norm RADIUS; without
    the projection Adam's steps leave the sphere and the kept points are off it."""
    import senn_ref.grow.proposals as proposals
    seen = []
    real_search = proposals.search

    def spy(*args, **kwargs):
        res = real_search(*args, **kwargs)
        seen.append((kwargs.get("project"), res))
        return res

    monkeypatch.setattr(proposals, "search", spy)
    case = make_case("mlp_rational", 0)
    best_width_proposal(case.net, case.X, case.Y, case.loss, 0, rng=np.random.default_rng(2), n_candidates=10,
                        method="ascent", steps=6, score="euclidean", k=2)
    (project, res), = seen
    assert project is not None
    assert res.values.max() > 1.05 * res.initial.max()          # the steps moved the points
    assert_close(_unit_norms(res.params["W"], res.params["b"]), np.full((10, 2), RADIUS), 1e-12,
                 name="kept search points on the sphere")


def _config(**kw):
    base = dict(depth=False, n_candidates=8, search_steps=4, score_damping=0.1, quiet=True, tau=0.05,
                alpha_rel=1e-3)
    base.update(kw)
    return SENNConfig(**base)


def test_euclidean_scoring_changes_decisions_and_raises_E_by_the_accepted_gains():
    """random_case(0) at tau = 0.05: the natural round adds nothing, the Euclidean one adds units
    (it has no residual against the existing units, so copies of one good direction keep passing
    until E has grown by 1/tau); every Euclidean event is judged as it claims, and E rises by
    exactly the accepted gains (a unit with zero outgoing weights adds its gradient, nothing else)."""
    net, X, Y, loss = random_case(0)
    nat, euc = net.copy(), net.copy()
    r_nat = expansion_round(nat, X, Y, loss, _config(), np.random.default_rng(0))
    r_euc = expansion_round(euc, X, Y, loss, _config(score="euclidean"), np.random.default_rng(0))
    assert r_nat.additions == 0 and architecture(nat) == architecture(net)
    assert r_euc.additions >= 2 and architecture(euc) != architecture(net)
    E0 = euclidean_eta(net, X, Y, loss)[0]
    assert r_euc.lam == E0 and r_euc.eta_before == E0
    assert r_euc.eta_after == euclidean_eta(euc, X, Y, loss)[0]
    accepted = sum(e["score"] for e in r_euc.events if e["accepted"])
    assert_close(r_euc.eta_after, r_euc.eta_before + accepted, 1e-12, name="E_after = E_before + accepted")
    for e in r_euc.events:
        assert e["score_kind"] == "euclidean" and e["kfac_gain"] is None and e["lambda"] == E0
        assert e["passed"] == (e["score"] > 0.05 * e["eta_c"] and e["score"] > 1e-3 * E0)
    assert all(e["score_kind"] == "natural" for e in r_nat.events)
    # the consumer's own E under eta_c = "layer" (never above the network's)
    r_lay = expansion_round(net.copy(), X, Y, loss, _config(score="euclidean", eta_c="layer"),
                            np.random.default_rng(0))
    for e in r_lay.events:
        assert e["eta_c"] <= e["eta_network"] * (1 + 1e-12), e
        assert e["passed"] == (e["score"] > 0.05 * e["eta_c"] and e["score"] > e["alpha"])
    # ... and it is the consumer's E_l of derivations/23 section 4, not the network's E
    _, per0 = euclidean_eta(net, X, Y, loss)
    first = [e for e in r_lay.events if e["iteration"] == 0]
    assert first
    for e in first:
        consumer = net.layers[hidden_path(net, e["index"]).consumer].name
        assert_close(e["eta_c"], per0[consumer], 1e-12, name=f"eta_c of {e['layer']} under eta_c='layer'")
        assert e["eta_c"] < 0.999 * E0, (e["eta_c"], E0)


@pytest.mark.parametrize("max_add", [1, 3])
def test_a_round_computes_E_once_per_network_it_scores(monkeypatch, max_add):
    """euclidean_eta runs once for every network state the round scores: the starting network
    (its E is both lambda and the first iteration's score; it was computed twice before) and
    each grown one, whether scored by a later iteration or as eta_after."""
    import senn_ref.grow.expansion_round as er
    calls = []
    real = er.euclidean_eta

    def counting(net, *args):
        calls.append(architecture(net))
        return real(net, *args)

    monkeypatch.setattr(er, "euclidean_eta", counting)
    net, X, Y, loss = random_case(0)
    r = expansion_round(net, X, Y, loss, _config(score="euclidean", max_additions_per_round=max_add),
                        np.random.default_rng(0))
    assert r.additions == max_add
    assert len(calls) == r.additions + 1, calls
    assert len({tuple(a) for a in calls}) == len(calls), calls       # never the same network twice


def test_trainer_runs_with_euclidean_scoring_and_logs_the_kind():
    from senn_ref import mlp, train_senn
    from senn_ref.losses import mse
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (30, 1))
    Y = np.sin(2 * X)
    cfg = SENNConfig(steps=40, expand_every=10, n_candidates=6, search_steps=3, score="euclidean", quiet=True)
    net, log = train_senn(mlp([1, 1, 1], activation="rational", seed=0), X, Y, mse(), cfg, seed=0)
    assert log.config["score"] == "euclidean"
    assert log.rounds and all(r["score_kind"] == "euclidean" for r in log.rounds)
    assert log.events and all(e["score_kind"] == "euclidean" for e in log.events)
    assert architecture(net) == log.final["widths"] and log.final["widths"][0] == 1 + log.count("width")


@pytest.mark.parametrize("kw, exc, match", [
    ({"score": "fisher"}, ValueError, "score"), ({"score": 1}, TypeError, "score"),
    ({"score": "euclidean", "depth": True}, ValueError, "depth=False"),
    ({"score": "euclidean", "gain": "kfac"}, ValueError, "gain must be")])
def test_bad_score_options_are_refused(kw, exc, match):
    with pytest.raises(exc, match=match):
        SENNConfig(**kw)
    cfg = SENNConfig()
    with pytest.raises(exc, match=match):
        cfg.replace(**kw)
    assert cfg.score == "natural"
    case = make_case("mlp_tanh", 0)
    with pytest.raises(ValueError, match="score"):
        best_width_proposal(case.net, case.X, case.Y, case.loss, 0, n_candidates=2, rng=np.random.default_rng(0),
                            score="Euclidean")


def test_bad_candidates_are_refused_naming_the_argument():
    case = make_case("mlp_rational", 0)
    ctx = EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, 0)
    W, b, act = ctx.random_candidates(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="b \\(candidate biases\\)"):
        ctx.score(W, b[:1], act)
    with pytest.raises(ValueError, match="act"):
        ctx.score(W, b, {})
    with pytest.raises(ValueError, match="H \\(candidate inputs\\)"):
        ctx.outgoing_gradient(np.zeros((2, 3, 1, 1)))
    with pytest.raises(TypeError, match="grad"):
        ctx.score(W, b, act, grad="yes")
    with pytest.raises(ValueError, match="W \\(candidate kernels\\)"):
        project_units(W[:, :, :1].reshape(2, 1), b)
    with pytest.raises(ValueError, match="radius"):
        project_units(W, b, radius=0.0)
    with pytest.raises(ValueError, match="NaN"):
        project_units(W, b * np.nan)
    with pytest.raises(ValueError, match="layer"):
        EuclideanWidthProposals(case.net, case.X, case.Y, case.loss, len(case.net.layers) - 1)
