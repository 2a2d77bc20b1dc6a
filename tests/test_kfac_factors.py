"""K-FAC / KFC factors and rational blocks against the dense exact Fisher (claims 3 of senn-math 11).

Where K-FAC is exact (derivations/11-kfac.md section 4, 12-kfc-conv.md section 3) the
Kronecker product must equal the exact diagonal block to 1e-10 relative; where it is not,
the tests assert a clearly non-zero error so that the assumption stays documented.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.fisher import exact
from senn_ref.kfac import (fold, folded_permutation, kfac_factors, kron_block_network_order,
                           layer_flat_indices, rational_blocks, rational_flat_indices, unfold)
from senn_ref.layers.activations import Tanh
from senn_ref.layers.conv2d import Conv2D
from senn_ref.layers.dense import Dense
from senn_ref.layers.flatten import Flatten
from senn_ref.layers.rational import Rational
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.network import Network
from senn_ref.testing import assert_close, assert_rel_error, relative_error


def block_errors(net, X, Y, loss, metric="euclidean", **kw):
    """Relative Frobenius error of G (x) A against the exact block, per K-FAC layer."""
    F = exact(net, X, loss, metric, Y=Y)
    fac = kfac_factors(net, X, Y, loss, metric, **kw)
    out = {}
    for la in net.layers:
        if la.name in fac:
            idx = layer_flat_indices(net, la)
            out[la.name] = relative_error(kron_block_network_order(fac[la.name]), F[np.ix_(idx, idx)])
    return out


def labels(rng, N, K):
    return np.eye(K)[rng.integers(0, K, N)]


# ---------------------------------------------------------------- ordering, worked example
def test_worked_example_ordering():
    """in=2, out=2, N=1: layer 0 of  f = w^T (W a + b)  with a = (2, 3), w = (5, 7).

    By hand: df/dW_ij = w_i a_j, df/db_i = w_i, so in the network order
    (W00, W01, W10, W11, b0, b1) the gradient is j = (10, 15, 14, 21, 5, 7) and the exact
    block is j j^T.  G = w w^T, A = (2, 3, 1)(2, 3, 1)^T.
    """
    net = Network([Dense(2, 2, np.random.default_rng(0), bias_std=1.0), Dense(2, 1)])
    net.layers[1].params["W"][...] = [[5.0, 7.0]]
    X, Y = np.array([[2.0, 3.0]]), np.array([[0.5]])
    j_net = np.array([10.0, 15.0, 14.0, 21.0, 5.0, 7.0])
    j_folded = np.array([10.0, 15.0, 5.0, 14.0, 21.0, 7.0])     # [W | b] row-major
    by_hand = np.outer(j_net, j_net)
    assert_close(exact(net, X, mse())[:6, :6], by_hand, 1e-13, name="exact block (sanity)")
    f = kfac_factors(net, X, Y, mse())["dense0"]
    assert_close(f.G, [[25.0, 35.0], [35.0, 49.0]], 1e-14, name="G")
    assert_close(f.A, np.outer([2.0, 3.0, 1.0], [2.0, 3.0, 1.0]), 1e-14, name="A")
    p = folded_permutation(2, 2)
    assert p.tolist() == [0, 1, 3, 4, 2, 5]
    assert np.array_equal(j_folded[p], j_net)
    assert_close(np.kron(f.G, f.A), np.outer(j_folded, j_folded), 1e-14, name="G(x)A, folded order")
    assert_close(np.kron(f.G, f.A)[np.ix_(p, p)], by_hand, 1e-14, name="G(x)A, network order")
    assert_close(kron_block_network_order(f), by_hand, 1e-14, name="kron_block_network_order")
    # the two classic mistakes give a different matrix
    assert relative_error(np.kron(f.A, f.G)[np.ix_(p, p)], by_hand) > 0.1      # A (x) G
    assert relative_error(np.kron(f.G, f.A), by_hand) > 0.1                     # no permutation


def test_fold_unfold_roundtrip(rng):
    dW, db = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(3)
    M = fold(dW, db)
    assert M.shape == (3, 9)
    assert np.array_equal(M[:, -1], db)
    W2, b2 = unfold(M, dW.shape)
    assert np.array_equal(W2, dW) and np.array_equal(b2, db)
    vec_net = np.concatenate([dW.ravel(), db])
    assert np.array_equal(M.ravel()[folded_permutation(3, 8)], vec_net)
    assert np.array_equal(folded_permutation(3, 4, with_bias=False), np.arange(12))


# ---------------------------------------------------------------- dense: where K-FAC is exact
@settings(max_examples=8, deadline=None)
@given(n_in=st.integers(1, 4), n_out=st.integers(1, 3), N=st.integers(1, 9), seed=st.integers(0, 10**6))
def test_single_dense_layer_exact_any_N(n_in, n_out, N, seed):
    rng = np.random.default_rng(seed)
    net = Network([Dense(n_in, n_out, rng, bias_std=1.0)])
    X, Y = rng.standard_normal((N, n_in)), rng.standard_normal((N, n_out))
    for metric in ("euclidean", "true"):            # identical for MSE: M_n = I
        err = block_errors(net, X, Y, mse(), metric)["dense0"]
        assert err < 1e-10, (metric, err)


@pytest.mark.parametrize("metric", ["euclidean", "true", "empirical"])
def test_every_dense_layer_exact_at_N1(rng, metric):
    net = Network([Dense(3, 4, rng, 1.0), Tanh((4,)), Dense(4, 4, rng, 1.0),
                   Rational(4, "random", rng), Dense(4, 3, rng, 1.0)])
    X, Y = rng.standard_normal((1, 3)), labels(rng, 1, 3)
    for name, err in block_errors(net, X, Y, softmax_cross_entropy(), metric).items():
        assert err < 1e-10, (name, err)


def test_deep_linear_network_blocks_exact(rng):
    """Affine layers, euclidean metric: d_{n,r} = (W_L...W_{l+1})^T e_r does not depend on n
    (11-kfac.md section 4.3), so every diagonal block is exact for any N."""
    net = Network([Dense(3, 4, rng, 1.0), Dense(4, 5, rng, 1.0), Dense(5, 2, rng, 1.0)])
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((9, 2))
    errs = block_errors(net, X, Y, mse())
    assert max(errs.values()) < 1e-10, errs


def test_nonlinear_network_not_exact(rng):
    """Documents the approximation: with a non-linearity and N > 1 the hidden block is not G (x) A
    (the last layer, fed straight into a euclidean loss, still is)."""
    net = Network([Dense(3, 4, rng, 1.0), Tanh((4,)), Dense(4, 2, rng, 1.0)])
    X, Y = 2.0 * rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    errs = block_errors(net, X, Y, mse())
    assert errs["dense0"] > 1e-2, errs
    assert errs["dense1"] < 1e-10, errs


def test_true_metric_softmax_single_layer_not_exact_for_N_gt_1(rng):
    """M_n = diag(p_n) - p_n p_n^T varies with n, so even a single layer is not exact for N > 1."""
    net = Network([Dense(3, 3, rng, 1.0)])
    X, Y = 2.0 * rng.standard_normal((6, 3)), labels(rng, 6, 3)
    assert block_errors(net, X, Y, softmax_cross_entropy(), "true")["dense0"] > 1e-3


# ---------------------------------------------------------------- conv: KFC expand
def test_kfc_expand_exact_for_location_wise_linear_tail(rng):
    """Layer l is exact when everything after it acts location-wise and linearly (1x1 convs),
    with the euclidean metric over all output locations (12-kfc-conv.md section 3): here a
    3x3 stride-2 padded conv followed by two 1x1 convs, N = 3; every block is exact."""
    c1 = Conv2D(2, 3, 3, stride=2, padding=1, rng=rng, bias_std=1.0, in_hw=(5, 5))
    hw = c1.out_hw
    net = Network([c1, Conv2D(3, 2, 1, rng=rng, bias_std=1.0, in_hw=hw),
                   Conv2D(2, 2, (1, 1), rng=rng, bias_std=1.0, in_hw=hw)])
    X = rng.standard_normal((3, 2, 5, 5))
    Y = rng.standard_normal((3, 2 * hw[0] * hw[1]))
    errs = block_errors(net, X, Y, mse())
    assert max(errs.values()) < 1e-10, errs


def test_kfc_not_exact_generic_conv_even_at_N1(rng):
    """A 3x3 conv followed by another 3x3 conv mixes locations: the first block has cross-location
    terms sum_{t != t'} (d_t d_t'^T) (x) (p_t p_t'^T) that KFC drops, even at N = 1.  The last
    layer (fed straight into the euclidean loss) stays exact."""
    net = Network([Conv2D(2, 3, 3, padding=1, rng=rng, bias_std=1.0, in_hw=(4, 4)),
                   Conv2D(3, 2, (3, 2), stride=(1, 2), rng=rng, bias_std=1.0, in_hw=(4, 4))])
    X = rng.standard_normal((1, 2, 4, 4))
    Y = rng.standard_normal((1, int(np.prod(net.out_shape))))
    errs = block_errors(net, X, Y, mse())
    assert errs["conv2d0"] > 1e-3, errs
    assert errs["conv2d1"] < 1e-10, errs


def test_conv_factor_definitions(rng):
    """A = (1/N) sum_{n,t} p p^T (bias corner = T), G = (1/N)(1/T) sum_{n,t,r} d d^T."""
    conv = Conv2D(2, 3, 2, stride=2, rng=rng, bias_std=1.0, in_hw=(4, 5))
    net = Network([conv, Flatten(in_shape=net_shape(conv)), Dense(int(np.prod(net_shape(conv))), 2, rng)])
    N = 4
    X, Y = rng.standard_normal((N, 2, 4, 5)), rng.standard_normal((N, 2))
    f = kfac_factors(net, X, Y, mse())["conv2d0"]
    net.forward(X)
    P = conv.curvature_inputs()
    T = P.shape[1]
    assert f.n_locations == T == conv.out_hw[0] * conv.out_hw[1]
    Pf = np.concatenate([P, np.ones((N, T, 1))], axis=2).reshape(N * T, -1)
    assert_close(f.A, Pf.T @ Pf / N, 1e-12, 1e-14, name="A")
    assert f.A[-1, -1] == pytest.approx(T, rel=1e-14)
    G = np.zeros((3, 3))
    for r in range(2):
        E = np.zeros((N, 2))
        E[:, r] = 1.0
        d = conv.curvature_outgrads(net.backward(E).output_grads[0]).reshape(N * T, 3)
        G += d.T @ d / (N * T)
    assert_close(f.G, G, 1e-12, 1e-15, name="G")


def net_shape(conv):
    return conv.output_shape(conv.in_shape)


# ---------------------------------------------------------------- rational blocks
@pytest.mark.parametrize("metric", ["euclidean", "true", "empirical"])
def test_rational_blocks_equal_exact_diagonal_blocks(rng, metric):
    net = Network([Dense(3, 4, rng, 1.0), Rational(4, "random", rng), Dense(4, 4, rng, 1.0),
                   Rational(4, "identity"), Dense(4, 3, rng, 1.0)])
    X, Y = rng.standard_normal((7, 3)), labels(rng, 7, 3)
    F = exact(net, X, softmax_cross_entropy(), metric, Y=Y)
    blocks = rational_blocks(net, X, Y, softmax_cross_entropy(), metric)
    for la in net.layers:
        if isinstance(la, Rational):
            idx = rational_flat_indices(net, la)
            for u in range(la.units):
                Fu = F[np.ix_(idx[u], idx[u])]
                assert_rel_error(blocks[la.name].B[u], Fu, 1e-10, name=f"{la.name} unit {u}")


def test_rational_blocks_spatial_layer(rng):
    conv = Conv2D(2, 3, 3, padding=1, rng=rng, bias_std=1.0, in_hw=(3, 3))
    net = Network([conv, Rational(3, "random", rng, spatial=(3, 3)), Flatten(in_shape=(3, 3, 3)),
                   Dense(27, 2, rng)])
    X, Y = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2))
    F = exact(net, X, mse())
    blocks = rational_blocks(net, X, Y, mse())
    la = net.layers[1]
    idx = rational_flat_indices(net, la)
    for u in range(3):
        assert_rel_error(blocks[la.name].B[u], F[np.ix_(idx[u], idx[u])], 1e-10, name=f"unit {u}")


# ---------------------------------------------------------------- Monte Carlo and "code" mode
def _mc_errors(net, X, Y, exact_f, S, seeds):
    errs = []
    for s in seeds:
        f = kfac_factors(net, X, Y, mse(), mode="mc", n_samples=S, rng=np.random.default_rng(s))
        errs.append(np.mean([relative_error(f[k].G, exact_f[k].G) for k in exact_f]))
    return float(np.mean(errs))


def _mc_setup():
    rng = np.random.default_rng(7)
    net = Network([Dense(3, 4, rng, 1.0), Tanh((4,)), Dense(4, 3, rng, 1.0)])
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    return net, X, Y, kfac_factors(net, X, Y, mse())


def test_mc_factors_converge_fast():
    """A is exact in every mode; the MC error of G shrinks by ~sqrt(16) = 4 from S = 25 to 400
    (asserted: by more than 2, averaged over 4 seeds)."""
    net, X, Y, ex = _mc_setup()
    f = kfac_factors(net, X, Y, mse(), mode="mc", n_samples=3, rng=np.random.default_rng(0))
    for k in ex:
        assert np.array_equal(f[k].A, ex[k].A)
    e_small = _mc_errors(net, X, Y, ex, 25, range(4))
    e_large = _mc_errors(net, X, Y, ex, 400, range(4))
    assert e_large < e_small / 2.0, (e_small, e_large)


@pytest.mark.slow
def test_mc_factors_converge_like_inverse_sqrt_samples():
    net, X, Y, ex = _mc_setup()
    S = np.array([16, 64, 256, 1024, 4096])
    errs = np.array([_mc_errors(net, X, Y, ex, int(s), range(8)) for s in S])
    slope = np.polyfit(np.log(S), np.log(errs), 1)[0]
    assert -0.65 < slope < -0.35, (slope, errs)


def test_code_mode_uses_normalised_output_gradient(rng):
    net = Network([Dense(3, 2, rng, 1.0)])
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    f = kfac_factors(net, X, Y, mse(), mode="code")["dense0"]
    E = net.forward(X) - Y
    D = E / np.linalg.norm(E, axis=1, keepdims=True)
    assert_close(f.G, D.T @ D / 5, 1e-12, 1e-15, name="G (code mode)")


# ---------------------------------------------------------------- errors
def test_errors(rng):
    net = Network([Dense(3, 2, rng)])
    X, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    with pytest.raises(ValueError, match="unknown K-FAC mode"):
        kfac_factors(net, X, Y, mse(), mode="kfc")
    with pytest.raises(ValueError, match="unknown metric"):
        kfac_factors(net, X, Y, mse(), metric="fisher")
    with pytest.raises(TypeError, match="n_samples"):
        kfac_factors(net, X, Y, mse(), mode="mc", n_samples=2.0)
    with pytest.raises(ValueError, match="n_samples"):
        kfac_factors(net, X, Y, mse(), mode="mc", n_samples=0)
    with pytest.raises(TypeError, match="rng"):
        kfac_factors(net, X, Y, mse(), mode="mc", rng=3)
    with pytest.raises(ValueError, match="no layer with a Kronecker"):
        kfac_factors(Network([Rational(3, "random", rng)]), X, X, mse())
    with pytest.raises(ValueError, match="NaN"):
        kfac_factors(net, np.full((4, 3), np.nan), Y, mse())
    with pytest.raises(ValueError, match="shape"):
        kfac_factors(net, X, Y[:, :1], mse())
