"""The K-FAC natural expansion score (claims 3 and 5 of senn-math 11, K-FAC side)."""
import numpy as np
import pytest

from senn_ref.fisher import exact
from senn_ref.kfac import kfac_eta, rational_flat_indices
from senn_ref.layers.activations import Tanh
from senn_ref.layers.conv2d import Conv2D
from senn_ref.layers.dense import Dense
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.network import Network
from senn_ref.testing import relative_error


def exact_eta(net, X, Y, loss, delta=0.0, metric="euclidean"):
    """g^T (F + delta I)^{-1} g with the dense exact GGN (pseudo-inverse when delta = 0)."""
    F = exact(net, X, loss, metric, Y=Y)
    g = mean_grad(net, X, Y, loss)
    if delta == 0.0:
        return float(g @ np.linalg.pinv(F, rcond=1e-10, hermitian=True) @ g)
    return float(g @ np.linalg.solve(F + delta * np.eye(len(g)), g))


def mean_grad(net, X, Y, loss):
    """Flat gradient of the mean loss; the output is flattened per example for the loss."""
    out = net.forward(X)
    E = loss.output_grad(out.reshape(out.shape[0], -1), Y)
    return net.backward(E.reshape(out.shape) / out.shape[0]).flat_grad()


@pytest.mark.parametrize("N", [1, 2, 9])
def test_single_dense_layer_equals_exact_eta(rng, N):
    """K-FAC is exact here (11-kfac.md 4.1), so eta agrees with g^T F^+ g; N = 1, 2 < in + 1
    exercise the pseudo-inverse of a singular A."""
    net = Network([Dense(4, 3, rng, bias_std=1.0)])
    X, Y = rng.standard_normal((N, 4)), rng.standard_normal((N, 3))
    ref = exact_eta(net, X, Y, mse())
    total, per = kfac_eta(net, X, Y, mse())
    assert relative_error(total, ref) < 1e-10, (total, ref)
    assert per == {"dense0": total}
    for mode in ("exact", "factored"):
        assert relative_error(kfac_eta(net, X, Y, mse(), damping_mode=mode)[0], ref) < 1e-10
    assert relative_error(kfac_eta(net, X, Y, mse(), damping=0.3, damping_mode="exact")[0],
                          exact_eta(net, X, Y, mse(), 0.3)) < 1e-10


def test_single_conv_layer_equals_exact_eta(rng):
    """A single conv layer fed straight into a euclidean loss is an exact KFC-expand case
    (12-kfc-conv.md 3), so its eta is exact too (strided, padded, N = 2)."""
    net = Network([Conv2D(2, 2, 3, stride=2, padding=1, rng=rng, bias_std=1.0, in_hw=(5, 4))])
    X = rng.standard_normal((2, 2, 5, 4))
    Y = rng.standard_normal((2, int(np.prod(net.out_shape))))
    total, _ = kfac_eta(net, X, Y, mse(), damping=0.05, damping_mode="exact")
    assert relative_error(total, exact_eta(net, X, Y, mse(), 0.05)) < 1e-10


def test_factored_damping_lowers_eta(rng):
    net = Network([Dense(3, 2, rng, 1.0)])
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    e0 = kfac_eta(net, X, Y, mse())[0]
    ex = kfac_eta(net, X, Y, mse(), damping=0.1, damping_mode="exact")[0]
    fa = kfac_eta(net, X, Y, mse(), damping=0.1, damping_mode="factored")[0]
    assert 0.0 < fa < ex < e0
    assert e0 <= mse().ceiling(net.forward(X), Y) * (1 + 1e-10)      # exact here, so <= lambda


def test_invariance_under_rescaling_around_linear_unit(rng):
    """W1 -> c W1, b1 -> c b1, W2 -> W2 / c preserves the function and (undamped) K-FAC eta,
    layer by layer (11-kfac.md 7): G1 -> G1/c^2, dW1 -> dW1/c; A2 -> D A2 D, dW2 -> dW2 D."""
    net = Network([Dense(3, 4, rng, 1.0), Dense(4, 2, rng, 1.0)])
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    total, per = kfac_eta(net, X, Y, mse())
    for c in (3.7, 0.2, -1.5):
        scaled = net.copy()
        scaled.layers[0].params["W"] *= c
        scaled.layers[0].params["b"] *= c
        scaled.layers[1].params["W"] /= c
        assert np.max(np.abs(scaled.forward(X) - net.forward(X))) < 1e-12
        t2, p2 = kfac_eta(scaled, X, Y, mse())
        assert relative_error(t2, total) < 1e-10, (c, t2, total)
        for k in per:
            assert relative_error(p2[k], per[k]) < 1e-10, (c, k)
    # damping breaks the invariance (documents that the test can fail)
    scaled = net.copy()
    scaled.layers[0].params["W"] *= 10.0
    scaled.layers[0].params["b"] *= 10.0
    scaled.layers[1].params["W"] /= 10.0
    assert relative_error(kfac_eta(scaled, X, Y, mse(), damping=0.1)[0],
                          kfac_eta(net, X, Y, mse(), damping=0.1)[0]) > 1e-3


def test_deep_linear_blockdiagonal_eta_differs_from_exact(rng):
    """Diagonal blocks are exact for deep linear nets but the cross-layer blocks are dropped,
    so the block-diagonal score is not the exact score (11-kfac.md 4.3)."""
    net = Network([Dense(3, 4, rng, 1.0), Dense(4, 2, rng, 1.0)])
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    d = 0.1
    assert relative_error(kfac_eta(net, X, Y, mse(), damping=d, damping_mode="exact")[0],
                          exact_eta(net, X, Y, mse(), d)) > 1e-3


def test_rational_contribution_matches_exact_unit_blocks(rng):
    net = Network([Dense(3, 4, rng, 1.0), Rational(4, "random", rng), Dense(4, 3, rng, 1.0)])
    X, Y = rng.standard_normal((8, 3)), np.eye(3)[rng.integers(0, 3, 8)]
    loss, d = softmax_cross_entropy(), 0.05
    total, per = kfac_eta(net, X, Y, loss, damping=d, metric="true")
    F = exact(net, X, loss, "true", Y=Y)
    g = mean_grad(net, X, Y, loss)
    idx = rational_flat_indices(net, net.layers[1])
    ref = sum(g[i] @ np.linalg.solve(F[np.ix_(i, i)] + d * np.eye(3), g[i]) for i in idx)
    assert relative_error(per["rational0"], ref) < 1e-10
    assert relative_error(total, sum(per.values())) < 1e-14
    t_no, per_no = kfac_eta(net, X, Y, loss, damping=d, metric="true", include_rational=False)
    assert "rational0" not in per_no
    assert relative_error(t_no, total - per["rational0"]) < 1e-12


def test_mc_eta_close_to_exact_mode(rng):
    net = Network([Dense(3, 4, rng, 1.0), Tanh((4,)), Dense(4, 2, rng, 1.0)])
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    ex = kfac_eta(net, X, Y, mse(), damping=0.1)[0]
    mc = kfac_eta(net, X, Y, mse(), damping=0.1, mode="mc", n_samples=2000,
                  rng=np.random.default_rng(3))[0]
    # G from S Gaussian probes per example has entrywise relative spread ~ sqrt(2 / (S N))
    # = 0.013 for S = 2000, N = 6; eta is smooth in G, so 0.05 is about four spreads
    assert relative_error(mc, ex) < 0.05
    # and the MC path really samples: another seed gives another estimate
    mc2 = kfac_eta(net, X, Y, mse(), damping=0.1, mode="mc", n_samples=2000,
                   rng=np.random.default_rng(4))[0]
    assert mc2 != mc


def test_errors(rng):
    net = Network([Dense(3, 2, rng)])
    X, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    with pytest.raises(ValueError, match="damping_mode"):
        kfac_eta(net, X, Y, mse(), damping_mode="tikhonov")
    with pytest.raises(ValueError, match="damping"):
        kfac_eta(net, X, Y, mse(), damping=-0.1)
    with pytest.raises(ValueError, match="finite"):
        kfac_eta(net, X, Y, mse(), damping=np.inf)
    with pytest.raises(ValueError, match="unknown K-FAC mode"):
        kfac_eta(net, X, Y, mse(), mode="sampled")
    with pytest.raises(ValueError, match="unknown metric"):
        kfac_eta(net, X, Y, mse(), metric="gauss")
    with pytest.raises(TypeError, match="include_rational"):
        kfac_eta(net, X, Y, mse(), include_rational="yes")
    with pytest.raises(ValueError, match="no layer with a Kronecker"):
        kfac_eta(Network([Tanh((3,))]), X, X, mse())
