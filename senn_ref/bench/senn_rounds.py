"""Growth rounds measured over many random cases: the rate bound (claim 9) and the proposal search.

* :func:`rate_bound_study` runs recursive expansion rounds (no parameter update within a round)
  on random small MLPs with random ``tau`` and ``alpha_rel`` and records, per round, the number
  of additions next to the bound ``1 + ln(1/alpha_rel)/ln(1 + tau)``, the score before and
  after, and the ceiling lambda.  With ``gain="exact"`` (exact damped GGN, exact Schur gains) the
  bound is a theorem (``derivations/19-criterion.md`` section 2); with ``"lower_bound"`` or
  ``"kfac"`` (block-diagonal K-FAC scores, which can exceed lambda) it is a measurement.
* :func:`search_study` compares, on the same drawn candidates, the best K-FAC lower bound of
  the Adam ascent, of the Langevin sampler and of no search ("random"), plus random search
  given as many candidates as the ascent makes objective evaluations ("random, same budget").

``senn-ref bench senn`` prints both tables (``derivations/19`` and ``20`` quote them);
``tests/test_expansion_round.py`` runs short versions and asserts the exact case.
"""
from __future__ import annotations

import numpy as np

from .. import losses
from .._validate import check_option, check_positive_int
from ..architectures import mlp

#: what a study round varies (drawn per round from its seed)
TAUS = (0.05, 0.2, 1.0, 3.0)
ALPHAS = (1e-3, 1e-2, 0.1, 0.3)


def random_case(seed: int, n: int = 16):
    """A random small regression case ``(net, X, Y, loss)``: ``mlp([2, w, k])`` or, for half of
    the seeds, ``mlp([2, w, w2, k])`` (so that some consumers are hidden layers, where K-FAC is
    not exact), w, w2 in 1..3, k in 1..2, rational or tanh units, X ~ N(0, 1) (n, 2),
    Y ~ N(0, 1) (n, k).  ``derivations/19-criterion.md`` section 2."""
    rng = np.random.default_rng(seed)
    widths = [int(w) for w in rng.integers(1, 4, size=int(rng.integers(1, 3)))]
    k = int(rng.integers(1, 3))
    act = ("rational", "tanh")[int(rng.integers(2))]
    net = mlp([2, *widths, k], activation=act, seed=seed)
    X = rng.standard_normal((n, 2))
    Y = rng.standard_normal((n, k))
    return net, X, Y, losses.mse()


def _round_config(seed: int, gain: str, damping: float, n_candidates: int, search_steps: int):
    from ..trainer.config import SENNConfig
    rng = np.random.default_rng(10_000 + seed)
    return SENNConfig(tau=float(rng.choice(TAUS)), alpha_rel=float(rng.choice(ALPHAS)), gain=gain,
                      score_damping=damping, depth=False, max_width=48, max_additions_per_round=200,
                      n_candidates=n_candidates, search_steps=search_steps, quiet=True)


def rate_bound_study(n_rounds: int = 200, gain: str = "exact", damping: float = 0.1,
                     n_candidates: int = 8, search_steps: int = 4, first_seed: int = 0) -> list[dict]:
    """One recursive round (``expansion_round``, width only) per random case; rows of
    {seed, tau, alpha_rel, additions, rate_bound, lambda, eta_before, eta_after, gain_sum}.

    ``gain_sum`` adds the accepted gains; under the exact Fisher ``eta_after - eta_before`` equals
    it (function-preserving additions, Schur formula), which the tests check.
    ``derivations/19-criterion.md`` section 2; ``tests/test_expansion_round.py``."""
    from ..grow.expansion_round import expansion_round
    n_rounds = check_positive_int(n_rounds, "n_rounds")
    check_option(gain, ("exact", "lower_bound", "kfac"), "gain")
    rows = []
    for seed in range(first_seed, first_seed + n_rounds):
        net, X, Y, loss = random_case(seed)
        cfg = _round_config(seed, gain, damping, n_candidates, search_steps)
        res = expansion_round(net, X, Y, loss, cfg, np.random.default_rng(seed))
        gains = [e["score"] for e in res.events if e["accepted"]]
        rows.append({"seed": seed, "tau": cfg.tau, "alpha_rel": cfg.alpha_rel, "additions": res.additions,
                     "rate_bound": res.rate_bound, "lambda": res.lam, "eta_before": res.eta_before,
                     "eta_after": res.eta_after, "gain_sum": float(np.sum(gains))})
    return rows


def summarize_rate_rows(rows: list[dict]) -> dict:
    """{rounds, violations (additions >= bound), max_fraction (max additions / bound),
    over_ceiling (rounds whose final score exceeds lambda), mean_additions}.
    ``derivations/19-criterion.md`` section 2."""
    adds = np.array([r["additions"] for r in rows], dtype=float)
    bound = np.array([r["rate_bound"] for r in rows])
    over = np.array([r["eta_after"] > r["lambda"] for r in rows])
    return {"rounds": len(rows), "violations": int(np.sum(adds >= bound)),
            "max_fraction": float(np.max(adds / bound)), "over_ceiling": int(over.sum()),
            "mean_additions": float(adds.mean())}


def search_study(n_rounds: int = 100, n_candidates: int = 20, steps: int = 10, damping: float = 0.1,
                 first_seed: int = 0) -> np.ndarray:
    """Best lower bound per round (n_rounds, 4): columns random, ascent, langevin, random with
    ``n_candidates * (steps + 1)`` candidates (the ascent's number of objective evaluations).
    The first three start from the same candidates (same rng seed).
    ``derivations/20-proposal-search.md`` section 1; ``tests/test_expansion_round.py``."""
    from ..grow.proposals import best_width_proposal
    n_rounds = check_positive_int(n_rounds, "n_rounds")
    out = np.zeros((n_rounds, 4))
    for j, seed in enumerate(range(first_seed, first_seed + n_rounds)):
        net, X, Y, loss = random_case(seed)
        runs = (("random", n_candidates), ("ascent", n_candidates), ("langevin", n_candidates),
                ("random", n_candidates * (steps + 1)))
        for col, (method, n) in enumerate(runs):
            p = best_width_proposal(net, X, Y, loss, 0, n_candidates=n, rng=np.random.default_rng(seed),
                                    method=method, steps=steps, damping=damping)
            out[j, col] = p.lower_bound
    return out


def run(quick: bool = False) -> dict:
    """Print the rate-bound table (exact, K-FAC lower bound, exact K-FAC gain) and the search table
    (``derivations/19-criterion.md`` section 2, ``20-proposal-search.md`` section 1)."""
    n = 60 if quick else 300
    print(f"rate bound 1 + ln(1/alpha_rel)/ln(1+tau), {n} random recursive rounds each "
          f"(tau in {TAUS}, alpha_rel in {ALPHAS}, score damping 0.1):")
    print(f"{'decision gain':>14} {'violations':>10} {'max N/bound':>11} {'eta > lambda':>12} {'mean N':>7}")
    out = {}
    for gain in ("exact", "lower_bound", "kfac"):
        s = summarize_rate_rows(rate_bound_study(n, gain=gain))
        out[gain] = s
        print(f"{gain:>14} {s['violations']:>6}/{s['rounds']:<3} {s['max_fraction']:11.3f} "
              f"{s['over_ceiling']:>8}/{s['rounds']:<3} {s['mean_additions']:7.2f}")
    m = 40 if quick else 200
    R = search_study(m)
    names = ("random", "ascent", "langevin", "random, same budget")
    print(f"\nproposal search, {m} random layers, 20 candidates, 10 steps, damping 0.1: best lower bound")
    print(f"  ascent >= random: {np.mean(R[:, 1] >= R[:, 0]):.3f}   ascent >= random with the same number "
          f"of evaluations: {np.mean(R[:, 1] >= R[:, 3]):.3f}   langevin >= random: {np.mean(R[:, 2] >= R[:, 0]):.3f}")
    med = np.median(R / R[:, :1], axis=0)
    print("  median ratio to random: " + ", ".join(f"{a} {b:.2f}" for a, b in zip(names, med)))
    out["search"] = R
    return out
