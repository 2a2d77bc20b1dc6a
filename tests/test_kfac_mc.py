"""Monte-Carlo K-FAC factors draw xi per example (issue 11 item 1; 11-kfac.md section 5).

For the output Dense layer of a scalar-output MSE network the back-propagated column is
d_n = xi_{s,n} (euclidean metric, K = 1), so G_mc = (1/(N S)) sum_{n,s} xi_{s,n}^2 and
G_exact = 1: G_mc / G_exact is a chi-square mean with relative spread exactly
sqrt(2 / (N S)).  A draw shared by the batch would leave it at sqrt(2 / S) for every N.
"""
import numpy as np
import pytest

from senn_ref.kfac import kfac_factors
from senn_ref.layers.activations import Tanh
from senn_ref.layers.dense import Dense
from senn_ref.losses import mse
from senn_ref.network import Network
from senn_ref.optim.kfac import KFAC


def scalar_regression(N, seed=3):
    rng = np.random.default_rng(seed)
    net = Network([Dense(2, 5, rng, 0.5), Tanh((5,)), Dense(5, 1, rng, 0.5)])
    X = rng.standard_normal((N, 2))
    Y = np.sin(X[:, :1]) + 0.1 * rng.standard_normal((N, 1))
    return net, X, Y


def relative_spread(N, S, draws=300, layer="dense1"):
    net, X, Y = scalar_regression(N)
    exact = kfac_factors(net, X, Y, mse())[layer].G
    rng = np.random.default_rng(11)
    err = np.array([np.linalg.norm(kfac_factors(net, X, Y, mse(), mode="mc", n_samples=S, rng=rng)[layer].G
                                   - exact) for _ in range(draws)])
    return np.sqrt(np.mean(err ** 2)) / np.linalg.norm(exact)


@pytest.mark.parametrize("N, S", [(4, 1), (64, 1), (256, 1), (16, 8)])
def test_output_layer_spread_is_sqrt_2_over_NS(N, S):
    # 300 draws: the root-mean-square of a chi-square mean is estimated to within ~10 %
    # (sampling error of a second moment with kurtosis 3 + 12/(N S)); tolerance 20 %.
    # Measured: 4,1: 0.75 vs 0.71; 64,1: 0.172 vs 0.177; 256,1: 0.086 vs 0.088; 16,8: 0.120 vs 0.125.
    got, want = relative_spread(N, S), np.sqrt(2.0 / (N * S))
    assert abs(got / want - 1.0) < 0.2, (got, want)


def predicted_spread(N, layer="dense0"):
    """Exact relative RMS spread of the S = 1 Monte-Carlo G of ``layer`` for a scalar output:
    the column of example n is xi_n c_n, so G_mc - G = (1/N) sum_n (xi_n^2 - 1) G_n with
    G_n = c_n c_n^T (the one-example factor) and, the xi_n independent with Var xi^2 = 2,
    E ||G_mc - G||_F^2 = (2 / N^2) sum_n ||G_n||_F^2."""
    net, X, Y = scalar_regression(N)
    G = kfac_factors(net, X, Y, mse())[layer].G
    per = [kfac_factors(net, X[n:n + 1], Y[n:n + 1], mse())[layer].G for n in range(N)]
    return np.sqrt(2.0 * sum(np.sum(g * g) for g in per)) / (N * np.linalg.norm(G))


def test_hidden_layer_spread_is_predicted_and_falls_with_N():
    # the hidden layer's G is not a scalar chi-square, but its spread is known exactly
    # (predicted_spread): 0.514 at N = 16 and 0.120 at N = 256, a factor 4.3 (a batch-shared
    # xi would give sqrt(2) at both).  The estimate from D draws is the root of a mean of D
    # independent squared errors, so its relative standard error is sd(e^2) / (2 mean(e^2)
    # sqrt(D)) (delta method), measured from the same draws (0.073 and 0.049); bound: 5 of them.
    for N in (16, 256):
        net, X, Y = scalar_regression(N)
        exact = kfac_factors(net, X, Y, mse())["dense0"].G
        rng = np.random.default_rng(11)
        e2 = np.array([np.linalg.norm(kfac_factors(net, X, Y, mse(), mode="mc", n_samples=1, rng=rng)["dense0"].G
                                      - exact) ** 2 for _ in range(200)])
        got, want = np.sqrt(e2.mean()) / np.linalg.norm(exact), predicted_spread(N)
        se = e2.std(ddof=1) / (2.0 * e2.mean() * np.sqrt(e2.size))
        assert abs(got / want - 1.0) < 5 * se, (N, got, want, se)
    assert predicted_spread(16) / predicted_spread(256) > 3.5


def test_kfac_mc_steps_are_not_randomly_rescaled():
    """One Dense layer, scalar MSE output: the exact K-FAC step is G_exact^-1 (x) A^-1 applied to
    the gradient with G_exact = 1, so an MC step differs from it only through G_mc.  With
    N = 256 the step-norm ratio has spread sqrt(2/256) = 0.09; every one of 20 seeds must stay
    within 0.7..1.4 (with a batch-shared xi, 8 % of the ratios are above 10)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((256, 3))
    Y = X @ np.array([[0.5], [-1.0], [2.0]]) + 0.3
    start = Network([Dense(3, 1, np.random.default_rng(0), 0.1)])
    theta0 = start.get_flat()

    def step_norm(**options):
        net = Network([Dense(3, 1, np.random.default_rng(0), 0.1)])
        KFAC(lr=1.0, damping=1e-10, ema=0.0, **options).step(net, X, Y, mse())
        return np.linalg.norm(net.get_flat() - theta0)

    exact = step_norm(mode="exact")
    ratios = np.array([step_norm(mode="mc", n_samples=1, rng=np.random.default_rng(s)) / exact
                       for s in range(20)])
    assert np.all((ratios > 0.7) & (ratios < 1.4)), ratios
