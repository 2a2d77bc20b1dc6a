"""Proposal search (senn_ref/grow/search.py): Adam ascent, MALA, random; derivations/20 sections 1-2."""
import numpy as np
import pytest

from senn_ref.grow.search import mala_step, search


def _quadratic(target, scale=1.0):
    def objective(params, grad):
        d = params["x"] - target
        values = -scale * np.sum(d * d, axis=1)
        return values, ({"x": -2.0 * scale * d} if grad else None)
    return objective


def test_ascent_reaches_the_maximum_and_never_ends_below_the_start(rng):
    target = np.array([0.3, -1.2, 2.0])
    x0 = rng.standard_normal((16, 3))
    res = search(_quadratic(target), {"x": x0}, steps=300, lr=0.1)
    assert np.all(res.values >= res.initial)
    err = np.abs(res.params["x"] - target).max()
    assert err < 5e-3, f"worst distance to the maximiser {err:.2e}"
    assert res.best == int(np.argmax(res.values))
    assert np.allclose(x0, x0)                                         # input untouched
    np.testing.assert_array_equal(res.params["x"][res.best], res.best_params()["x"])


def test_ascent_is_invariant_to_the_scale_of_the_score(rng):
    target = np.array([1.0, -1.0])
    x0 = rng.standard_normal((5, 2))
    a = search(_quadratic(target), {"x": x0}, steps=40)
    b = search(_quadratic(target, 1e-7), {"x": x0}, steps=40)
    d = np.abs(a.params["x"] - b.params["x"]).max()
    assert d < 1e-12, d


def test_random_returns_the_initial_candidates_and_skips_nonfinite(rng):
    x0 = rng.standard_normal((6, 2))

    def objective(params, grad):
        v = -np.sum(params["x"] ** 2, axis=1)
        v[2] = np.nan
        v[4] = np.inf
        return v, None
    res = search(objective, {"x": x0}, method="random")
    assert res.evaluations == 1 and np.all(np.isneginf(res.values[[2, 4]]))
    assert res.best not in (2, 4)
    np.testing.assert_array_equal(res.params["x"], x0)


def test_mala_samples_the_tempered_target():
    # score = -x^2/2 at temperature T: pi ~ exp(-x^2/(2T)) = N(0, T).  Many independent chains
    # in parallel, all started far out at x = 3; after burn-in their empirical mean and variance
    # must match the target.  Why the bounds hold: an accepted step maps x to
    # (1 - eps^2 / (2T)) x + eps z = 0.19 x + 0.9 z, and the acceptance is ~0.84 from the first
    # step, so after 150 steps the start is forgotten (0.19^100 ~ 1e-72) and the C final states
    # are independent draws from N(0, T).  Monte-Carlo standard errors: mean sqrt(T / C) = 0.011,
    # variance / T sqrt(2 / C) = 0.022 (Var of a sample variance = 2 sigma^4 / C).  Bounds at
    # 5 standard errors: a false failure has probability < 1e-6 per check, for any seed, while
    # the sampler without the proposal correction (next test) is 16 standard errors off.
    C, T = 4000, 0.5
    rng = np.random.default_rng(7)

    def objective(params, grad):
        x = params["x"]
        return -0.5 * np.sum(x * x, axis=1), ({"x": -x} if grad else None)
    cur = {"x": np.full((C, 1), 3.0)}
    values, grads = objective(cur, True)
    eps = {"x": np.full(C, 0.9)}
    rates = []
    for _ in range(150):
        cur, values, grads, acc = mala_step(objective, cur, values, grads, eps, T, rng)
        rates.append(acc.mean())
    x = cur["x"][:, 0]
    se_mean, se_var = np.sqrt(T / C), np.sqrt(2.0 / C)
    assert abs(x.mean()) < 5 * se_mean, (x.mean(), se_mean)
    assert abs(x.var() / T - 1.0) < 5 * se_var, (x.var(), se_var)
    assert 0.3 < np.mean(rates[50:]) < 0.99


def test_a_langevin_sampler_without_the_proposal_correction_is_biased():
    # A sampler that ignores the proposal densities (plain Metropolis ratio with a Langevin
    # drift) is biased: the check above would catch it.  Build that biased variant here and
    # confirm its variance is off, so the stationarity test has the power to fail.
    C, T, eps = 4000, 0.5, 0.9
    rng = np.random.default_rng(8)
    x = np.full(C, 3.0)
    for _ in range(150):
        prop = x - 0.5 * eps ** 2 * x / T + eps * rng.standard_normal(C)
        log_ratio = (-0.5 * prop ** 2 + 0.5 * x ** 2) / T
        acc = np.log(rng.uniform(size=C)) < log_ratio
        x = np.where(acc, prop, x)
    assert abs(x.var() / T - 1.0) > 5 * np.sqrt(2.0 / C)          # measured 0.36: 16 standard errors


def test_langevin_search_improves_and_is_deterministic():
    target = np.array([0.5, 0.5])
    x0 = np.random.default_rng(1).standard_normal((32, 2)) * 2
    a = search(_quadratic(target), {"x": x0}, method="langevin", steps=60, rng=np.random.default_rng(3))
    b = search(_quadratic(target), {"x": x0}, method="langevin", steps=60, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.params["x"], b.params["x"])
    assert np.all(a.values >= a.initial) and a.values.max() > a.initial.max()
    assert a.accept_rate is not None and 0.2 < a.accept_rate < 0.95


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "gradient"}, "search method"),
    ({"steps": -1}, "search steps"),
    ({"lr": 0.0}, "search lr"),
    ({"method": "langevin"}, "needs rng"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        search(_quadratic(np.zeros(1)), {"x": np.zeros((2, 1))}, **kwargs)


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="candidates"):
        search(_quadratic(np.zeros(1)), {"x": np.zeros((2, 1)), "y": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="NaN"):
        search(_quadratic(np.zeros(1)), {"x": np.full((2, 1), np.nan)})


def test_ascent_is_adam_with_bias_correction_and_per_array_steps(rng):
    # an independent per-array Adam loop (bias-corrected moments, step lr * rms(initial array),
    # best point kept) must give the same numbers as the packed implementation
    A0, b0 = rng.standard_normal((5, 3, 2)), 5.0 * rng.standard_normal((5, 4))
    tA, tb = rng.standard_normal((3, 2)), rng.standard_normal(4)

    def objective(p, grad):
        dA, db = p["A"] - tA, p["b"] - tb
        v = -np.sum(np.sin(dA) ** 2, axis=(1, 2)) - np.sum(np.abs(db) ** 1.5, axis=1)
        return v, ({"A": -np.sin(2 * dA), "b": -1.5 * np.sign(db) * np.sqrt(np.abs(db))} if grad else None)
    steps, lr = 12, 0.1
    res = search(objective, {"A": A0, "b": b0}, steps=steps, lr=lr)
    cur = {"A": A0.copy(), "b": b0.copy()}
    step = {k: lr * np.sqrt(np.mean(v * v)) for k, v in cur.items()}
    m = {k: np.zeros_like(v) for k, v in cur.items()}
    s = {k: np.zeros_like(v) for k, v in cur.items()}
    v, g = objective(cur, True)
    best, best_v = {k: x.copy() for k, x in cur.items()}, v.copy()
    for t in range(1, steps + 1):
        for k in cur:
            m[k] = 0.9 * m[k] + 0.1 * g[k]
            s[k] = 0.999 * s[k] + 0.001 * g[k] ** 2
            cur[k] = cur[k] + step[k] * (m[k] / (1 - 0.9 ** t)) / np.sqrt(s[k] / (1 - 0.999 ** t))
        v, g = objective(cur, True)
        better = v > best_v
        for k in cur:
            best[k][better] = cur[k][better]
        best_v = np.where(better, v, best_v)
    np.testing.assert_allclose(res.values, best_v, rtol=1e-12, atol=1e-14)
    for k in best:
        np.testing.assert_allclose(res.params[k], best[k], rtol=1e-12, atol=1e-14)


def test_mala_samples_an_asymmetric_target_with_two_step_sizes():
    # 1-D skewed target score = x - x^4/4 (exact moments by quadrature) and a second, independent
    # array with its own step size: both must be sampled at temperature T (the q-ratio matters
    # with eps this large; the first three moments of x are checked).  The C final states are
    # independent draws (as in the test above; 400 steps, y contracts by 0.74 per accepted step),
    # so each bound is 5 Monte-Carlo standard errors computed from the target's own moments
    # (quadrature): se(mean) = sqrt(m2 / C), se(variance) = sqrt((m4 - m2^2) / C),
    # se(third central moment) = sqrt((m6 - m3^2 - 6 m4 m2 + 9 m2^3) / C) (its asymptotic
    # variance), y ~ N(0, T/4) as in the test above.  Measured deviations: 0.05, 1.9, 0.5 se (x);
    # 0.5, 2.0 se (y).
    C, T = 8000, 0.7
    rng = np.random.default_rng(11)

    def objective(params, grad):
        x, y = params["x"][:, 0], params["y"][:, 0]
        v = x - x ** 4 / 4 - 2.0 * y * y
        return v, ({"x": (1 - x ** 3)[:, None], "y": (-4.0 * y)[:, None]} if grad else None)
    grid = np.linspace(-6, 6, 200001)
    w = np.exp((grid - grid ** 4 / 4) / T)
    w /= w.sum()
    m1 = np.sum(grid * w)
    v1, s1, m4, m6 = (np.sum((grid - m1) ** p * w) for p in (2, 3, 4, 6))
    se_mean, se_var = np.sqrt(v1 / C), np.sqrt((m4 - v1 ** 2) / C)
    se_m3 = np.sqrt((m6 - s1 ** 2 - 6 * m4 * v1 + 9 * v1 ** 3) / C)
    cur = {"x": np.zeros((C, 1)), "y": np.full((C, 1), 2.0)}
    values, grads = objective(cur, True)
    eps = {"x": np.full(C, 0.5), "y": np.full(C, 0.3)}
    for _ in range(400):
        cur, values, grads, _acc = mala_step(objective, cur, values, grads, eps, T, rng)
    x, y = cur["x"][:, 0], cur["y"][:, 0]
    assert abs(x.mean() - m1) < 5 * se_mean, (x.mean(), m1, se_mean)
    assert abs(x.var() - v1) < 5 * se_var, (x.var(), v1, se_var)
    m3 = np.mean((x - x.mean()) ** 3)
    assert abs(m3 - s1) < 5 * se_m3, (m3, s1, se_m3)
    assert abs(y.mean()) < 5 * np.sqrt(T / 4 / C), (y.mean(), T / 4)
    assert abs(y.var() / (T / 4) - 1) < 5 * np.sqrt(2.0 / C), (y.var(), T / 4)


def test_langevin_temperature_is_relative_to_the_score_scale():
    # T = temperature * median |initial score|: scaling the score scales T, so the chain is the same
    target = np.array([0.5, -0.5])
    x0 = np.random.default_rng(2).standard_normal((16, 2)) * 2
    a = search(_quadratic(target), {"x": x0}, method="langevin", steps=30, rng=np.random.default_rng(4))
    b = search(_quadratic(target, 1e-7), {"x": x0}, method="langevin", steps=30, rng=np.random.default_rng(4))
    # exact arithmetic gives identical chains; rounding of scale * d / (scale * T) leaves a few ulp per
    # step (measured max |a - b| 3.3e-16 at |x| <= 0.6 after 30 steps).  One differing accept/reject
    # decision would move a chain by a whole proposal, so atol 1e-9 sits far from both
    np.testing.assert_allclose(a.params["x"], b.params["x"], rtol=0, atol=1e-9)
    assert a.accept_rate == b.accept_rate
