"""Recursive expansion rounds (senn_ref/grow/expansion_round.py) and the rate bound, claim 9.
derivations/19-criterion.md sections 2 and 4; numbers over many rounds: senn_ref/bench/senn_rounds.py."""
import numpy as np
import pytest

from senn_ref.bench.senn_rounds import random_case, rate_bound_study, search_study, summarize_rate_rows
from senn_ref.grow.expansion_round import RoundState, architecture, expansion_round
from senn_ref.trainer import SENNConfig

N_ROUNDS = 200


def _worst(rows, key, n=5):
    return sorted(rows, key=key, reverse=True)[:n]


def test_rate_bound_holds_in_every_exact_round_and_is_reported_beside_kfac(capsys):
    """Claim 9: exact damped GGN, exact Schur gains, no update within a round."""
    rows = rate_bound_study(N_ROUNDS, gain="exact")
    frac = [r["additions"] / r["rate_bound"] for r in rows]
    assert max(frac) < 1.0, f"rounds at or above the bound: {_worst(rows, lambda r: r['additions'] / r['rate_bound'])}"
    assert sum(r["additions"] for r in rows) >= N_ROUNDS // 10, "too few additions for the check to mean anything"
    # the hypotheses of the proof, checked: eta grows by exactly the accepted gains, stays <= lambda
    err = [abs(r["eta_after"] - r["eta_before"] - r["gain_sum"]) / r["lambda"] for r in rows]
    assert max(err) < 1e-9, f"eta increase != accepted gains: {_worst(rows, lambda r: abs(r['eta_after'] - r['eta_before'] - r['gain_sum']))}"
    over = [r for r in rows if r["eta_after"] > r["lambda"] * (1 + 1e-12)]
    assert not over, f"exact score above the ceiling: {over[:5]}"
    # under K-FAC the same rounds are a measurement (printed, see derivations/19 section 2)
    kf = summarize_rate_rows(rate_bound_study(60, gain="kfac"))
    ex = summarize_rate_rows(rows)
    with capsys.disabled():
        print(f"\nrate bound: exact {ex['violations']}/{ex['rounds']} rounds at/above it (max N/bound "
              f"{ex['max_fraction']:.2f}); K-FAC gain {kf['violations']}/{kf['rounds']} (max {kf['max_fraction']:.2f}, "
              f"score above lambda in {kf['over_ceiling']})")


def test_kfac_rounds_raise_the_kfac_score_by_the_accepted_gains():
    """With gain="kfac" the decision gain is the exact increase of the network's K-FAC score
    (a zero-outgoing-weight unit leaves every other block unchanged)."""
    rows = rate_bound_study(40, gain="kfac")
    assert sum(r["additions"] for r in rows) >= 4
    err = max(abs(r["eta_after"] - r["eta_before"] - r["gain_sum"]) / r["lambda"] for r in rows)
    assert err < 1e-8, err


def test_ascent_beats_random_on_the_same_candidates_in_95_percent_of_rounds(capsys):
    R = search_study(40, n_candidates=12, steps=6)
    wins = np.mean(R[:, 1] >= R[:, 0] * (1 - 1e-12))
    assert wins >= 0.95, f"ascent >= random in only {wins:.2f} of rounds; worst {np.sort(R[:, 1] / R[:, 0])[:5]}"
    assert np.median(R[:, 1] / R[:, 0]) > 1.2, "the ascent should improve on the typical round"
    with capsys.disabled():
        print(f"\nsearch: ascent >= random {wins:.2f}, >= random with equal evaluations "
              f"{np.mean(R[:, 1] >= R[:, 3]):.2f}, langevin >= random {np.mean(R[:, 2] >= R[:, 0]):.2f}")


def _config(**kw):
    base = dict(depth=False, n_candidates=8, search_steps=4, score_damping=0.1, quiet=True)
    base.update(kw)
    return SENNConfig(**base)


def _growing_case():
    """A case whose first round accepts several units at tau = 0.05."""
    for seed in range(50):
        net, X, Y, loss = random_case(seed)
        trial = net.copy()
        res = expansion_round(trial, X, Y, loss, _config(tau=0.05, alpha_rel=1e-3), np.random.default_rng(0))
        if res.additions >= 3:
            return net, X, Y, loss
    pytest.fail("no random case grows three units in one round")


def test_non_recursive_rounds_add_at_most_one_unit_and_capacity_is_respected():
    net, X, Y, loss = _growing_case()
    before = architecture(net)
    n1 = net.copy()
    res = expansion_round(n1, X, Y, loss, _config(tau=0.05, alpha_rel=1e-3, recursive=False), np.random.default_rng(0))
    assert res.additions == 1 and sum(architecture(n1)) == sum(before) + 1
    n2 = net.copy()
    cap = max(before) + 1
    res = expansion_round(n2, X, Y, loss, _config(tau=0.05, alpha_rel=1e-3, max_width=cap), np.random.default_rng(0))
    assert max(architecture(n2)) <= cap and res.additions >= 1
    n3 = net.copy()
    res = expansion_round(n3, X, Y, loss, _config(tau=0.05, alpha_rel=1e-3, max_additions_per_round=2),
                          np.random.default_rng(0))
    assert res.additions == 2


@pytest.mark.parametrize("gain", ["lower_bound", "exact"])
def test_eta_after_is_the_score_of_the_final_network_bit_for_bit(gain):
    """eta_after is reused from the last scoring when nothing was added after it; after an
    addition it is recomputed (K-FAC) or taken from the grown copy the exact gain was computed on
    (gain="exact": the same operation on the same parameters).  Either way it is exactly the
    score (kfac_eta, or score.eta under the exact GGN) of the network the round leaves, and with
    gain="exact" every iteration's eta_network is the exact score of the network it judged."""
    from senn_ref import score as S
    from senn_ref.kfac import kfac_eta
    net, X, Y, loss = _growing_case()
    results = {}
    for kw in ({}, {"recursive": False}, {"max_additions_per_round": 1}, {"max_additions_per_round": 2},
               {"tau": 1e6}):
        key, kw = tuple(kw.items()), dict(kw)
        trial = net.copy()
        res = expansion_round(trial, X, Y, loss, _config(tau=kw.pop("tau", 0.05), alpha_rel=1e-3, gain=gain, **kw),
                              np.random.default_rng(0))
        if gain == "exact":
            again = float(S.eta(trial, X, Y, loss, damping=0.1))
        else:
            again = float(kfac_eta(trial, X, Y, loss, damping=0.1)[0])
        assert res.eta_after == again, (kw, res.additions, res.eta_after, again)
        assert (res.additions == 0) == (res.eta_after == res.eta_before)
        results[key] = res
    if gain == "exact":
        # iteration 0 judged net, iteration 1 the network a one-addition round leaves (same draws)
        full, one = results[()], results[(("max_additions_per_round", 1),)]
        eta_of = {e["iteration"]: e["eta_network"] for e in full.events}
        assert full.additions >= 2 and one.additions == 1
        assert eta_of[0] == float(S.eta(net, X, Y, loss, damping=0.1)) and eta_of[1] == one.eta_after, \
            (eta_of, one.eta_after)


def test_exact_rounds_reuse_the_grown_copys_score_without_changing_anything(monkeypatch):
    """gain="exact": the next iteration (and eta_after) reuses the exact details computed on the
    chosen proposal's grown copy instead of scoring the grown network again.  With the reuse
    switched off (the grown copy's details dropped, so every score is recomputed) the round gives
    the same events, eta_after and network, bit for bit, with more exact scorings."""
    from senn_ref import score as S
    from senn_ref.grow import expansion_round as ER
    net, X, Y, loss = _growing_case()
    calls = []
    real = S.eta_exact_details

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ER._score, "eta_exact_details", counting)
    runs = {}
    for reuse in (True, False):
        if not reuse:
            real_gain = ER._exact_gain
            monkeypatch.setattr(ER, "_exact_gain", lambda *a: (real_gain(*a)[0], None))
        calls.clear()
        trial = net.copy()
        res = expansion_round(trial, X, Y, loss, _config(tau=0.05, alpha_rel=1e-3, gain="exact"),
                              np.random.default_rng(0))
        runs[reuse] = (res, trial, len(calls))
    (a, na, ca), (b, nb, cb) = runs[True], runs[False]
    assert a.additions >= 2, a.additions
    assert a.eta_after == b.eta_after and a.additions == b.additions
    strip = [{k: v for k, v in e.items() if k != "growth"} for e in a.events]
    assert strip == [{k: v for k, v in e.items() if k != "growth"} for e in b.events]
    for k, v in na.named_params().items():
        np.testing.assert_array_equal(v, dict(nb.named_params())[k])
    # one exact scoring of the net per addition saved (plus the final one)
    assert cb - ca == a.additions, (ca, cb, a.additions)


def test_width_cooldown_skips_rounds_after_an_addition():
    net, X, Y, loss = _growing_case()
    cfg = _config(tau=0.05, alpha_rel=1e-3, width_cooldown=2)
    state = RoundState()
    counts = []
    for r in range(4):
        res = expansion_round(net, X, Y, loss, cfg, np.random.default_rng(r), state=state, round_index=r)
        counts.append(res.additions)
    assert counts[0] >= 1 and counts[1] == 0 and counts[2] == 0, counts


@pytest.mark.parametrize("gain", ["exact", "lower_bound"])
def test_layer_eta_c_accepts_against_the_consumer_score(gain):
    net, X, Y, loss = _growing_case()
    res = expansion_round(net.copy(), X, Y, loss, _config(tau=0.05, alpha_rel=1e-3, eta_c="layer", gain=gain),
                          np.random.default_rng(0))
    for e in res.events:
        assert e["eta_c"] <= e["eta_network"] * (1 + 1e-9) + 1e-15, e
        assert e["passed"] == (e["score"] > 0.05 * e["eta_c"] and e["score"] > e["alpha"])


def test_round_events_log_the_decision_they_claim():
    """Depth and width together, every decision model: lambda is the ceiling of the net the round
    started from, alpha = alpha_rel * lambda, the score is the model's gain over depth_cost, eta_c is
    the score of the model derivations/19 section 3 names (checked at the first iteration against a
    fresh computation), and the applied proposal is the best-scoring passing one."""
    from senn_ref import score as S
    from senn_ref.grow.expansion_round import _layer_indices
    from senn_ref.grow.structure import hidden_path
    from senn_ref.kfac import kfac_eta
    checked_best = 0
    for gain in ("lower_bound", "kfac", "exact"):
        for eta_c in ("network", "layer"):
            for seed in (1, 3):
                net, X, Y, loss = random_case(seed)
                ref = net.copy()
                cfg = _config(tau=0.05, alpha_rel=1e-3, gain=gain, eta_c=eta_c, depth=True, depth_cost=3.0,
                              n_candidates=5, search_steps=2, max_additions_per_round=4)
                res = expansion_round(net, X, Y, loss, cfg, np.random.default_rng(seed))
                lam = S.ceiling(ref, X, Y, loss)
                assert res.lam == pytest.approx(lam, rel=1e-13)
                total, per = kfac_eta(ref, X, Y, loss, damping=0.1)
                det = S.eta_exact_details(ref, X, Y, loss, damping=0.1)
                kinds = {e["kind"] for e in res.events}
                assert kinds == {"width", "depth"}, kinds
                for it in sorted({e["iteration"] for e in res.events}):
                    evs = [e for e in res.events if e["iteration"] == it]
                    passed = [e for e in evs if e["passed"]]
                    acc = [e for e in evs if e["accepted"]]
                    assert len(acc) == (1 if passed else 0)
                    if passed:
                        assert acc[0]["score"] == max(e["score"] for e in passed)
                        checked_best += len(passed) > 1
                    for e in evs:
                        assert e["lambda"] == res.lam and e["alpha"] == pytest.approx(1e-3 * lam, rel=1e-13)
                        raw = {"lower_bound": e["lower_bound"], "exact": e["exact_gain"],
                               "kfac": e["lower_bound"] if e["kfac_gain"] is None else e["kfac_gain"]}[gain]
                        assert e["score"] == pytest.approx(raw / (3.0 if e["kind"] == "depth" else 1.0), rel=1e-14)
                        if it > 0:
                            continue
                        cons = hidden_path(ref, e["index"]).consumer if e["kind"] == "width" else e["index"]
                        name = ref.layers[cons].name
                        if gain == "exact" and eta_c == "layer":
                            idx = _layer_indices(ref, name)
                            F = det.F[np.ix_(idx, idx)] + 0.1 * np.eye(idx.size)
                            want = float(det.g[idx] @ np.linalg.solve(F, det.g[idx]))
                        elif gain == "exact" or (e["kind"] == "depth" and eta_c == "network"):
                            want = det.eta
                        else:
                            want = per[name] if eta_c == "layer" else total
                        # measured (seeds 1, 3, every model): bit-identical except exact + layer, where
                        # this test solves the damped block itself (np.linalg.solve) and the library
                        # solves it its own way: max rel 5.8e-16.  rel=1e-9 leaves room for rounding in a
                        # worse-conditioned block; picking the wrong model's score is a different quantity.
                        # (lambda and score above: measured rel 0, their 1e-13/1e-14 are slack for rounding.)
                        assert e["eta_c"] == pytest.approx(want, rel=1e-9), (gain, eta_c, e["kind"])
    assert checked_best >= 3, "too few iterations with several passing proposals"


def test_depth_and_width_cooldowns_count_rounds_and_expire():
    net, X, Y, loss = _growing_case()
    for depth in (False, True):        # depth on (never accepted): the cooling rounds still score
        cfg = _config(tau=0.05, alpha_rel=1e-3, width_cooldown=1, max_additions_per_round=1, depth=depth,
                      depth_cost=1e12)
        state, trial = RoundState(), net.copy()
        counts = [expansion_round(trial, X, Y, loss, cfg, np.random.default_rng(r), state=state).additions
                  for r in range(3)]
        assert counts == [1, 0, 1], (depth, counts)
    # depth: random_case(10) inserts 3 layers in one round without a cooldown; with depth_cooldown=1
    # a round inserts one, and the next round proposes none
    kw = dict(tau=0.05, alpha_rel=1e-3, depth=True, width=False, depth_cost=1.0, max_layers=6,
              n_candidates=4, search_steps=2)
    net, X, Y, loss = random_case(10)
    assert expansion_round(net.copy(), X, Y, loss, _config(depth_cooldown=0, **kw),
                           np.random.default_rng(10)).additions >= 2
    state = RoundState()
    r0 = expansion_round(net, X, Y, loss, _config(depth_cooldown=1, **kw), np.random.default_rng(10), state=state)
    assert r0.additions == 1 and state.depth_wait == 1
    r1 = expansion_round(net, X, Y, loss, _config(depth_cooldown=1, **kw), np.random.default_rng(10), state=state)
    assert r1.additions == 0 and not r1.events and state.depth_wait == 0


def test_max_layers_limits_insertions():
    net, X, Y, loss = random_case(1)
    from senn_ref.grow.expansion_round import num_linear_layers
    n0 = num_linear_layers(net)
    cfg = _config(tau=0.05, alpha_rel=1e-3, depth=True, width=False, depth_cost=1.0, depth_cooldown=0,
                  max_layers=n0 + 1, n_candidates=4, search_steps=2, max_additions_per_round=6)
    expansion_round(net, X, Y, loss, cfg, np.random.default_rng(0))
    assert num_linear_layers(net) <= n0 + 1
    cfg = _config(tau=0.05, alpha_rel=1e-3, depth=True, width=False, max_layers=num_linear_layers(net))
    res = expansion_round(net, X, Y, loss, cfg, np.random.default_rng(0))
    assert res.additions == 0 and not res.events
