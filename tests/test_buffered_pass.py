"""The layer-wise loss and gradient in reused buffers (senn_ref.buffered_pass) against the plain
layer-wise path (Network.forward, loss.value_and_grad, Network.backward): the same NumPy
operations in the same order, so the results must be equal bit for bit (np.array_equal).
derivations/24-sequential-fast-path.md section 6.
"""
import copy
import pickle

import numpy as np
import pytest

from senn_ref import backend, buffered_pass, network_plan
from senn_ref.architectures import mlp
from senn_ref.gradcheck import central_difference
from senn_ref.grow.add_neurons import add_neurons
from senn_ref.layers.activations import SiLU, Tanh
from senn_ref.layers.dense import Dense
from senn_ref.losses import mse, softmax_cross_entropy
from senn_ref.network import Network


def net_of(rng, sizes, act, lead=False):
    layers = [_act(act, sizes[0])] if lead else []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, rng, bias_std=0.5))
        if i < len(sizes) - 2:
            layers.append(_act(act, b))
    return Network(layers)


def _act(act, width):
    return Tanh((width,)) if act == "tanh" else SiLU((width,))


def targets(rng, kind, N, K):
    if kind == "mse":
        return mse(), rng.standard_normal((N, K))
    if kind == "labels":
        return softmax_cross_entropy(), rng.integers(0, K, N)
    P = rng.random((N, K))
    return softmax_cross_entropy(), P / P.sum(axis=1, keepdims=True)


def layerwise(net, X, Y, loss):
    """The plain layer-wise loss_and_grad, and the caches it leaves."""
    F = net.forward(X)
    N = F.shape[0]
    value, E = loss.value_and_grad(F.reshape(N, -1), Y)
    res = net.backward(E.reshape(F.shape) / N)
    return value, res, [dict(la._cache) for la in net.layers]


def assert_equal_arrays(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    if not np.array_equal(a, b):
        diff = np.abs(a - b).ravel()
        worst = np.argsort(diff)[::-1][:5]
        raise AssertionError(f"{what}: not bit-identical; worst |diff| {diff[worst]} at flat {worst}, "
                             f"values {a.ravel()[worst]} vs {b.ravel()[worst]}")


def check_equal(net, X, Y, loss):
    """buffered_pass equals the layer-wise path bit for bit: value, gradients (keys, order,
    values), output cotangents, caches; and Network.loss_and_grad takes it."""
    fast = buffered_pass.loss_and_grad(net, X, Y, loss)
    assert fast is not None, "the buffered pass did not apply"
    value, grads = fast
    caches = [dict(la._cache) for la in net.layers]
    t_value, t_res, t_caches = layerwise(net, X, Y, loss)
    assert value == t_value, (value, t_value)
    assert list(grads.grads) == list(t_res.grads) == list(net.named_params())
    for k in t_res.grads:
        assert_equal_arrays(grads.grads[k], t_res.grads[k], f"gradient {k}")
    assert len(grads.output_grads) == len(t_res.output_grads) == len(net.layers)
    for i, (a, b) in enumerate(zip(grads.output_grads, t_res.output_grads)):
        assert_equal_arrays(a, b, f"output cotangent of layer {i}")
    for i, (c, t) in enumerate(zip(caches, t_caches)):
        assert c.keys() == t.keys(), (i, c.keys(), t.keys())
        for key in c:
            if isinstance(c[key], np.ndarray):
                assert_equal_arrays(c[key], t[key], f"cache {key} of layer {i}")
            else:
                assert c[key] == t[key], (i, key)
    plan = network_plan.plan_for(net)
    if plan is None or not plan.fast_for(X.shape[0]):         # else the compiled path (its own test)
        value2, grads2 = net.loss_and_grad(X, Y, loss)
        assert value2 == value and np.array_equal(grads2.flat_grad(), grads.flat_grad())
    return grads


CASES = [([3, 8, 7, 2], "tanh", "labels", False), ([4, 9, 5, 3], "silu", "probs", False),
         ([2, 5, 3], "tanh", "mse", True), ([6, 40, 30, 20, 4], "silu", "labels", False),
         ([20, 64, 10], "tanh", "probs", False), ([5, 3], "tanh", "labels", False)]


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
@pytest.mark.parametrize("sizes, act, kind, lead", CASES)
def test_buffered_pass_equals_layerwise_bit_for_bit(sizes, act, kind, lead, backend_name):
    rng = np.random.default_rng(sum(sizes))
    net = net_of(rng, sizes, act, lead)
    N = 300                                   # above the compiled path's limits for most cases
    X = 1.5 * rng.standard_normal((N, sizes[0]))
    loss, Y = targets(rng, kind, N, sizes[-1])
    with backend.using(backend_name):
        check_equal(net, X, Y, loss)
        check_equal(net, X[:17], Y[:17], loss)                 # a smaller batch reuses the buffers


def test_digits_mlp_bit_for_bit():
    """The benchmark's row: tanh 64-64-10, N = 1797, labels (numba backend: too large for the
    compiled path, so Network.loss_and_grad takes the buffered pass)."""
    rng = np.random.default_rng(3)
    net = mlp([64, 64, 10], activation="tanh", seed=0)
    X = rng.standard_normal((1797, 64))
    Y = rng.integers(0, 10, 1797)
    with backend.using("numba"):
        assert not network_plan.plan_for(net).fast_for(1797)
        check_equal(net, X, Y, softmax_cross_entropy())


def test_gradient_against_central_differences():
    rng = np.random.default_rng(11)
    net = net_of(rng, [3, 6, 5, 4], "tanh")
    X = rng.standard_normal((40, 3))
    loss, Y = targets(rng, "labels", 40, 4)
    theta = net.get_flat()
    value, grads = buffered_pass.loss_and_grad(net, X, Y, loss)
    g = grads.flat_grad()

    def f(t):
        net.set_flat(t)
        return np.array([loss.value(net.forward(X), Y)])

    for k in range(3):
        u = rng.standard_normal(theta.size)
        fd = central_difference(f, theta, u)[0]
        assert abs(fd - g @ u) <= 1e-7 * max(1.0, abs(fd)), (k, fd, g @ u)
    net.set_flat(theta)


def test_buffers_reused_only_when_no_one_holds_them():
    """Results dropped: the next call writes into the same buffers.  Results kept (output
    cotangents, a cached input, a cache dict held as FisherOperator holds them): never
    overwritten by a later call."""
    rng = np.random.default_rng(5)
    net = net_of(rng, [4, 16, 3], "tanh")
    loss, Y = targets(rng, "labels", 50, 3)
    X1, X2 = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))

    def ws_base():                                            # its id: a reference would hold it
        return id(net.layers[0]._cache["A"].base)

    buffered_pass.loss_and_grad(net, X1, Y, loss)
    first = ws_base()
    buffered_pass.loss_and_grad(net, X2, Y, loss)
    assert ws_base() == first                                # caches replaced, buffer reused
    _, kept = buffered_pass.loss_and_grad(net, X1, Y, loss)
    kept_cot = [a.copy() for a in kept.output_grads]
    cached_A = net.layers[2]._cache["A"]
    cached_A_copy = cached_A.copy()
    held_dict = net.layers[1]._cache
    held_slope = held_dict["slope"].copy()
    _, other = buffered_pass.loss_and_grad(net, X2, Y, loss)
    assert not np.array_equal(other.output_grads[0], kept_cot[0])
    for a, b in zip(kept.output_grads, kept_cot):
        assert np.array_equal(a, b), "a kept output cotangent was overwritten"
    assert np.array_equal(cached_A, cached_A_copy), "a kept cached input was overwritten"
    assert np.array_equal(held_dict["slope"], held_slope), "a held cache dict was overwritten"
    assert ws_base() != id(cached_A.base)
    del kept, cached_A, held_dict, other
    for X in (X1, X2, X1):                                   # the usual loop holds one result
        res = buffered_pass.loss_and_grad(net, X, Y, loss)
        check = layerwise(net, X, Y, loss)[1]
        assert np.array_equal(res[1].flat_grad(), check.flat_grad())
    assert len(net._buffered_pass._pools["ws"]) <= buffered_pass.POOL


def test_a_kept_cache_view_is_never_overwritten():
    """Each kind of hold alone (test_buffers_reused_only_when_no_one_holds_them holds several
    at once, so one hold can mask a miss of another).  A view from a layer's cache - the view
    object itself, a copy of the cache dict, a memoryview or an as_strided of it - references
    the work buffer once however many hold it, so the buffer's count cannot tell; the view's
    count must (before, each of these was overwritten by the next call).  A held cache dict
    (as FisherOperator holds them) keeps its views' buffer busy by the dict's count."""
    rng = np.random.default_rng(11)
    net = net_of(rng, [4, 7, 6, 3], "tanh")
    loss, Y = targets(rng, "labels", 30, 3)
    Xs = [rng.standard_normal((30, 4)) * s for s in (1.0, 2.0, 0.5, 3.0)]
    holds = {                                       # (what to keep, how to read the array from it)
        "A of a Dense layer": (lambda: net.layers[2]._cache["A"], lambda k: k),
        "the input copy": (lambda: net.layers[0]._cache["A"], lambda k: k),
        "a Tanh slope": (lambda: net.layers[1]._cache["slope"], lambda k: k),
        "a copy of a cache dict": (lambda: dict(net.layers[2]._cache), lambda k: k["A"]),
        "a memoryview": (lambda: memoryview(net.layers[3]._cache["slope"]), np.asarray),
        "as_strided": (lambda: np.lib.stride_tricks.as_strided(net.layers[1]._cache["slope"]),
                       lambda k: k),
        "the cache dict itself": (lambda: net.layers[3]._cache, lambda k: k["slope"]),
    }
    for what, (hold, read) in holds.items():
        buffered_pass.loss_and_grad(net, Xs[0], Y, loss)
        kept = hold()
        copy_ = np.array(read(kept), copy=True)
        for X in Xs[1:]:
            assert buffered_pass.loss_and_grad(net, X, Y, loss) is not None
        assert np.array_equal(read(kept), copy_), f"{what}: overwritten by a later call"
        del kept


def test_non_finite_falls_back_to_the_layerwise_errors():
    rng = np.random.default_rng(8)
    net = net_of(rng, [3, 5, 2], "tanh")
    X = rng.standard_normal((20, 3))
    loss, Y = targets(rng, "labels", 20, 2)
    net.layers[0].params["W"][0, 0] = 1e308                 # pre-activation overflows to inf
    X[:, 0] = 10.0
    with np.errstate(over="ignore"):
        assert buffered_pass.loss_and_grad(net, X, Y, loss) is None
        with pytest.raises(ValueError) as fast_err:
            net.loss_and_grad(X, Y, loss)
        with pytest.raises(ValueError) as plain_err:
            layerwise(net, X, Y, loss)
    assert str(fast_err.value) == str(plain_err.value)
    assert "NaN or infinite" in str(fast_err.value)
    # finite forward, cotangent dA = dS W overflowing in the backward (huge MSE targets)
    net = net_of(rng, [3, 5, 2], "tanh")
    net.layers[2].params["W"][...] = 1e3
    X = rng.standard_normal((20, 3))
    T = np.full((20, 2), 1e307)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isfinite(net.forward(X)).all()
        assert buffered_pass.loss_and_grad(net, X, T, mse()) is None
        with pytest.raises(ValueError) as fast_err:
            net.loss_and_grad(X, T, mse())
        with pytest.raises(ValueError) as plain_err:
            layerwise(net, X, T, mse())
    assert str(fast_err.value) == str(plain_err.value)
    assert "Tanh" in str(fast_err.value) and "NaN or infinite" in str(fast_err.value)


def test_bad_labels_raise_the_loss_error():
    rng = np.random.default_rng(9)
    net = net_of(rng, [3, 5, 2], "tanh")
    X = rng.standard_normal((20, 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        net.loss_and_grad(X, np.full(20, 2), softmax_cross_entropy())


def test_rebuilt_after_growth_not_used_when_unsupported_or_layerwise():
    rng = np.random.default_rng(10)
    net = net_of(rng, [3, 6, 4, 2], "silu")
    X = rng.standard_normal((30, 3))
    loss, Y = targets(rng, "mse", 30, 2)
    check_equal(net, X, Y, loss)
    first = net._buffered_pass
    add_neurons(net, 0, rng.standard_normal((2, 3)), rng=rng)
    check_equal(net, X, Y, loss)
    assert net._buffered_pass is not first and net._buffered_pass.P == net.num_params()
    with network_plan.layerwise():
        assert buffered_pass.loss_and_grad(net, X, Y, loss) is None
    clone = net.copy()
    assert "_buffered_pass" not in clone.__dict__
    again = pickle.loads(pickle.dumps(net._buffered_pass))
    assert all(not pool for pool in again._pools.values())
    assert all(not pool for pool in copy.deepcopy(net._buffered_pass)._pools.values())
    rational = mlp([3, 4, 2], activation="rational", seed=0)
    assert buffered_pass.loss_and_grad(rational, X, Y, loss) is None


@pytest.mark.parametrize("K", [2, 7, 8, 9, 10, 16, 17, 64, 127, 128])
def test_kernels_equal_their_numpy_statements(K):
    """Each fused loop of kernels/buffered_numba against the NumPy statements it replaces (its
    twin), bit for bit, on entries of every size (tails where the tanh slope is subnormal)."""
    from senn_ref.kernels import buffered_numba as kb
    rng = np.random.default_rng(K)
    N = 53
    S0 = rng.standard_normal((N, K)) * np.exp(rng.uniform(-30, 6.5, (N, K)))   # up to ~1300
    b = rng.standard_normal(K)
    S, t = S0.copy(), np.empty((N, K))
    assert kb.finish_affine(S, b, t, True)
    ref = S0 + b
    assert_equal_arrays(S, ref, "S + b")
    assert_equal_arrays(t, np.negative(np.abs(ref)), "-|S|")
    S_bad = S0.copy()
    S_bad[3, K - 1] = np.inf
    assert not kb.finish_affine(S_bad, b, t[:, :0], False)
    S_bad[3, K - 1] = np.nan
    assert not kb.finish_affine(S_bad, b, t[:, :0], False)
    with np.errstate(under="ignore"):
        e = np.exp(t)
        slope = np.empty((N, K))
        kb.tanh_slope_from_exp(e, slope)
        from senn_ref.layers.activations import _tanh_and_slope
        twin_t, twin_slope = _tanh_and_slope(ref)
    assert_equal_arrays(slope, twin_slope, "tanh slope")
    assert (slope[np.abs(ref) > 360] < 1e-300).any() or (np.abs(ref) <= 360).all()
    F = rng.standard_normal((N, K)) * 20
    labels = rng.integers(0, K, N)
    E, m, s, fy = np.empty((N, K)), np.empty(N), np.empty(N), np.empty(N)
    kb.softmax_shift(F, E, m)
    np.exp(E, out=E)
    kb.softmax_ce_grad(F, E, labels.astype(np.int64), float(N), s, fy)
    value = float(np.mean((m - fy) + np.log(s)))
    t_value, t_E = softmax_cross_entropy().value_and_grad(F, labels)
    assert value == t_value, (value, t_value)
    assert_equal_arrays(E, t_E / N, "softmax cross-entropy gradient")
    dY, dS, db = rng.standard_normal((N, K)), np.empty((N, K)), np.empty(K)
    kb.slope_product_colsum(dY, slope, dS, db)
    assert_equal_arrays(dS, dY * slope, "dY * slope")
    assert_equal_arrays(db, (dY * slope).sum(axis=0), "column sums")
