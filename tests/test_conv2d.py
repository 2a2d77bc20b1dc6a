"""Conv2D: gradient checks over random geometry, agreement with a brute-force
convolution, the curvature-hook identity, the output-size formula, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.gradcheck import check_layer
from senn_ref.kernels import conv_output_size
from senn_ref.layers.conv2d import Conv2D
from senn_ref.testing import assert_close
from strategies import conv_geometry


@st.composite
def conv_cases(draw):
    """(N, C, O, H, W, kernel, stride, padding) with the kernel fitting the padded input."""
    N, C, H, W, k, s, p = draw(conv_geometry(max_n=3, max_c=3, max_hw=8))
    return N, C, draw(st.integers(1, 3)), H, W, k, s, p


def brute_force_conv(X, W, b, stride, padding):
    """Y[n,o,oh,ow] = b[o] + sum_{c,i,j} W[o,c,i,j] X[n,c,oh*sh+i-ph, ow*sw+j-pw] (zero outside)."""
    N, C, H, Wd = X.shape
    O, _, kh, kw = W.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw) // sw + 1
    Y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            for oh in range(Ho):
                for ow in range(Wo):
                    acc = b[o]
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                r, q = oh * sh + i - ph, ow * sw + j - pw
                                if 0 <= r < H and 0 <= q < Wd:
                                    acc += W[o, c, i, j] * X[n, c, r, q]
                    Y[n, o, oh, ow] = acc
    return Y


@settings(max_examples=60, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**31 - 1), backend=st.sampled_from(["numba", "numpy"]))
def test_conv_gradcheck(case, seed, backend):
    N, C, O, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    layer = Conv2D(C, O, k, s, p, rng=rng, bias_std=1.0, backend=backend, in_hw=(H, W))
    res = check_layer(layer, rng.standard_normal((N, C, H, W)), rng)
    assert res.fd_error < 1e-6, res
    assert res.dot_error < 1e-10, res


@settings(max_examples=15, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**31 - 1), backend=st.sampled_from(["numba", "numpy"]))
def test_conv_matches_brute_force(case, seed, backend):
    # Same products summed in a different order: agreement to 1e-12 relative (plus a tiny
    # absolute floor for outputs that cancel to ~0) is what rounding allows at these sizes.
    N, C, O, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    layer = Conv2D(C, O, k, s, p, rng=rng, bias_std=1.0, backend=backend, in_hw=(H, W))
    X = rng.standard_normal((N, C, H, W))
    expected = brute_force_conv(X, layer.params["W"], layer.params["b"], layer.stride, layer.padding)
    assert_close(layer.forward(X), expected, rtol=1e-12, atol=1e-13, name="conv vs brute force")


@settings(max_examples=15, deadline=None)
@given(case=conv_cases(), seed=st.integers(0, 2**31 - 1))
def test_backends_agree(case, seed):
    N, C, O, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    a = Conv2D(C, O, k, s, p, rng=rng, bias_std=1.0, backend="numba", in_hw=(H, W))
    b = Conv2D(C, O, k, s, p, backend="numpy", in_hw=(H, W))
    b.params = {key: v.copy() for key, v in a.params.items()}
    X = rng.standard_normal((N, C, H, W))
    assert_close(a.forward(X), b.forward(X), rtol=1e-12, atol=1e-13, name="forward")
    dY = rng.standard_normal((N, O) + a.out_hw)
    (dXa, ga), (dXb, gb) = a.backward(dY), b.backward(dY)
    assert_close(dXa, dXb, rtol=1e-12, atol=1e-13, name="dX")
    assert_close(ga["W"], gb["W"], rtol=1e-12, atol=1e-13, name="dW")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_grad_is_sum_of_patch_outer_products(backend, rng):
    # grads["W"].reshape(O, -1) = sum_{n,t} d_{n,t} a_{n,t}^T and grads["b"] = sum_{n,t} d_{n,t}:
    # the identity KFC builds on, with a stride and padding that differ per axis.
    layer = Conv2D(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), rng=rng, backend=backend, in_hw=(7, 5))
    X = rng.standard_normal((5, 3, 7, 5))
    layer.forward(X)
    dY = rng.standard_normal((5, 4) + layer.out_hw)
    _, grads = layer.backward(dY)
    a, d = layer.curvature_inputs(), layer.curvature_outgrads(dY)
    T = layer.out_hw[0] * layer.out_hw[1]
    assert a.shape == (5, T, 3 * 3 * 2) and d.shape == (5, T, 4)
    assert_close(grads["W"].reshape(4, -1), np.einsum("nto,ntk->ok", d, a), rtol=1e-12, atol=1e-13, name="dW")
    assert_close(grads["b"], d.sum(axis=(0, 1)), rtol=1e-12, atol=1e-13, name="db")
    # and the layer output is a_{n,t} . W[o] + b[o] at every location
    Y = layer.forward(X)
    S = np.einsum("ntk,ok->nto", a, layer.params["W"].reshape(4, -1)) + layer.params["b"]
    assert_close(layer.curvature_outgrads(Y), S, rtol=1e-12, atol=1e-13, name="patches reproduce output")


def test_output_size_worked_example():
    # H = 28, kernel 5, stride 2, padding 1: (28 + 2 - 5) // 2 + 1 = 25 // 2 + 1 = 13.
    # W = 10, kernel 3, stride 3, padding 0: (10 - 3) // 3 + 1 = 3 (the last column is unused).
    assert conv_output_size(28, 5, 2, 1) == 13
    assert conv_output_size(10, 3, 3, 0) == 3
    layer = Conv2D(2, 3, (5, 3), stride=(2, 3), padding=(1, 0), in_hw=(28, 10))
    assert layer.output_shape(layer.in_shape) == (3, 13, 3)
    assert layer.forward(np.zeros((1, 2, 28, 10))).shape == (1, 3, 13, 3)


def test_init_and_flat_order(rng):
    layer = Conv2D(4, 50, 3, rng=rng, in_hw=(5, 5))
    W = layer.params["W"]
    assert W.shape == (50, 4, 3, 3) and layer.params["b"].shape == (50,)
    assert list(layer.params) == ["W", "b"]
    # LeCun normal: variance 1/(C kh kw) = 1/36; 1800 samples give a std error of the
    # variance of about sqrt(2/1800)/36, so a 25% band is > 7 standard errors wide.
    assert abs(W.var() * 36 - 1) < 0.25
    zero = Conv2D(4, 5, 3, in_hw=(5, 5))
    assert not zero.params["W"].any() and not zero.params["b"].any()


def test_conv_errors(rng):
    layer = Conv2D(2, 3, 3, padding=1, in_hw=(5, 5))
    good = rng.standard_normal((2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"expected shape \(N, 2, 5, 5\)"):
        layer.forward(rng.standard_normal((2, 3, 5, 5)))           # wrong channel count
    with pytest.raises(ValueError, match=r"expected shape \(N, 2, 5, 5\)"):
        layer.forward(rng.standard_normal((2, 2, 6, 5)))           # wrong spatial size
    with pytest.raises(TypeError, match="floating-point"):
        layer.forward(good.astype(np.int64))
    bad = good.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        layer.forward(bad)
    with pytest.raises(ValueError, match="empty"):
        layer.forward(np.zeros((0, 2, 5, 5)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv2D(2, 3, 6, padding=0, in_hw=(5, 5))
    with pytest.raises(ValueError, match="stride: must be >= 1"):
        Conv2D(2, 3, 3, stride=0, in_hw=(5, 5))
    with pytest.raises(ValueError, match="padding: must be >= 0"):
        Conv2D(2, 3, 3, padding=-1, in_hw=(5, 5))
    with pytest.raises(ValueError, match="unknown backend"):
        Conv2D(2, 3, 3, backend="gpu", in_hw=(5, 5))
    with pytest.raises(TypeError, match="Conv2D rng: expected numpy.random.Generator"):
        Conv2D(2, 3, 3, rng=42, in_hw=(5, 5))
    with pytest.raises(TypeError, match=r"in_hw: expected a pair \(H, W\)"):
        Conv2D(2, 3, 3, in_hw=5)
    with pytest.raises(ValueError, match=r"in_hw: expected a pair \(H, W\)"):
        Conv2D(2, 3, 3, in_hw=(5, 5, 5))
    with pytest.raises(RuntimeError, match="call forward"):
        layer.backward(rng.standard_normal((2, 3, 5, 5)))
    layer.forward(good)
    with pytest.raises(ValueError, match="output cotangent"):
        layer.curvature_outgrads(rng.standard_normal((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="output cotangent"):
        layer.backward(rng.standard_normal((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="unknown parameter"):
        layer.jvp(None, {"V": np.zeros(3)})
    with pytest.raises(ValueError, match="tangent of W"):
        layer.jvp(None, {"W": np.zeros((3, 2, 2, 2))})


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_chunked_batch_equals_single_chunk(backend, rng, monkeypatch):
    # The layer processes the batch in chunks; with a 1-byte budget every example is its
    # own chunk.  All passes must agree with the one-chunk computation and pass gradcheck.
    import senn_ref.layers.conv_chunks as conv_module
    layer = Conv2D(2, 3, 3, stride=2, padding=1, rng=rng, bias_std=1.0, backend=backend, in_hw=(6, 7))
    X, dY = rng.standard_normal((5, 2, 6, 7)), rng.standard_normal((5, 3, 3, 4))
    dX_t, dW_t = rng.standard_normal(X.shape), rng.standard_normal(layer.params["W"].shape)
    Y1 = layer.forward(X)
    dX1, g1 = layer.backward(dY)
    J1 = layer.jvp(dX_t, {"W": dW_t})
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 1)
    assert len(layer._chunks(5)) == 5
    assert_close(layer.forward(X), Y1, rtol=1e-12, atol=1e-13, name="forward")
    dX2, g2 = layer.backward(dY)
    assert_close(dX2, dX1, rtol=1e-12, atol=1e-13, name="dX")
    assert_close(g2["W"], g1["W"], rtol=1e-12, atol=1e-13, name="dW")
    assert_close(layer.jvp(dX_t, {"W": dW_t}), J1, rtol=1e-12, atol=1e-13, name="jvp")
    res = check_layer(layer, X, rng)
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


def _force_thread_pool(conv_module, monkeypatch) -> list:
    """Two workers and a fresh pool whatever the machine's core count; returns a list that
    records every dispatch to the pool (so a test can assert the pool really ran)."""
    monkeypatch.setattr(conv_module, "_WORKERS", 2)
    monkeypatch.setattr(conv_module, "_pool", None)
    calls = []
    real = conv_module._executor

    def counting_executor():
        calls.append(1)
        return real()

    monkeypatch.setattr(conv_module, "_executor", counting_executor)
    return calls


def test_threaded_chunks_are_deterministic(rng, monkeypatch):
    # Many small chunks go through the thread pool (per-example FLOPs are far below the
    # threshold); scheduling must not change a single bit of any result.
    import senn_ref.layers.conv_chunks as conv_module
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 1)
    calls = _force_thread_pool(conv_module, monkeypatch)
    layer = Conv2D(3, 4, 3, padding=1, rng=rng, bias_std=1.0, in_hw=(5, 5))
    X, dY = rng.standard_normal((16, 3, 5, 5)), rng.standard_normal((16, 4, 5, 5))
    first = (layer.forward(X),) + layer.backward(dY)
    assert len(calls) == 2                                   # forward and backward used the pool
    for _ in range(5):
        again = (layer.forward(X),) + layer.backward(dY)
        assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1])
        assert np.array_equal(again[2]["W"], first[2]["W"])


def test_chunks_do_not_depend_on_the_worker_count(rng, monkeypatch):
    # The chunks set the order in which weight-gradient partial sums are added, so they must
    # be the same on a one-core machine (one worker) as on a multi-core one (two): before,
    # their number was rounded to a multiple of the worker count (7 chunks against 8 here,
    # and dW differed in the last bits on a 16->32 14x14 batch of 60).
    import senn_ref.layers.conv_chunks as conv_module
    for N, per_chunk in [(60, 9), (13, 2), (7, 3), (5, 5), (1, 1)]:
        monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 8 * per_chunk)
        parts = {}
        for workers in (1, 2):
            monkeypatch.setattr(conv_module, "_WORKERS", workers)
            parts[workers] = conv_module.chunks(N, 8)
        assert parts[1] == parts[2], (N, per_chunk, parts)
        assert [i for sl in parts[1] for i in range(N)[sl]] == list(range(N))
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 3 * 5 * 5 * 9 * 8 * 3)   # 3 examples a chunk
    X, dY = rng.standard_normal((20, 3, 5, 5)), rng.standard_normal((20, 4, 5, 5))
    results = {}
    for workers in (1, 2):
        calls = _force_thread_pool(conv_module, monkeypatch)
        monkeypatch.setattr(conv_module, "_WORKERS", workers)
        layer = Conv2D(3, 4, 3, padding=1, rng=np.random.default_rng(5), bias_std=1.0, in_hw=(5, 5))
        assert len(layer._chunks(20)) > 1
        results[workers] = (layer.forward(X),) + layer.backward(dY)
        assert bool(calls) == (workers == 2)
    (Y1, dX1, g1), (Y2, dX2, g2) = results[1], results[2]
    assert np.array_equal(Y1, Y2) and np.array_equal(dX1, dX2)
    assert np.array_equal(g1["W"], g2["W"]) and np.array_equal(g1["b"], g2["b"])


def test_thread_pool_survives_fork(rng, monkeypatch):
    # A child forked after the pool started must not wait on the parent's (absent) threads.
    import multiprocessing as mp
    import senn_ref.layers.conv_chunks as conv_module
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 1)
    calls = _force_thread_pool(conv_module, monkeypatch)
    layer = Conv2D(2, 2, 3, padding=1, rng=rng, in_hw=(4, 4))
    X = rng.standard_normal((6, 2, 4, 4))
    expected = layer.forward(X)                       # starts the pool in the parent
    assert calls and conv_module._pool is not None
    with mp.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(layer.forward, (X,)).get(timeout=20)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_replacing_W_widens_input(backend, rng):
    # Growth widens a conv layer's input channels by replacing W (and its output channels by
    # replacing W and b): in_shape and output_shape follow the arrays, forward still works
    # and matches the brute-force convolution with the new arrays.
    layer = Conv2D(2, 3, 3, padding=1, rng=rng, backend=backend, in_hw=(5, 6))
    assert layer.in_shape == (2, 5, 6) and layer.output_shape(layer.in_shape) == (3, 5, 6)
    layer.forward(rng.standard_normal((2, 2, 5, 6)))
    layer.params["W"] = rng.standard_normal((4, 3, 3, 3))
    layer.params["b"] = rng.standard_normal(4)
    assert layer.in_shape == (3, 5, 6) and layer.output_shape(layer.in_shape) == (4, 5, 6)
    X = rng.standard_normal((2, 3, 5, 6))
    expected = brute_force_conv(X, layer.params["W"], layer.params["b"], layer.stride, layer.padding)
    assert_close(layer.forward(X), expected, rtol=1e-12, atol=1e-13, name="widened forward")
    dX, grads = layer.backward(rng.standard_normal((2, 4, 5, 6)))
    assert dX.shape == X.shape and grads["W"].shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, 5, 6\)"):
        layer.forward(rng.standard_normal((2, 2, 5, 6)))


@pytest.mark.parametrize("chunk_bytes", [1, 2 ** 21])
def test_workspace_reuse_matches_fresh_layer(chunk_bytes, rng, monkeypatch):
    # Columns kept in the per-thread workspace must never leak from one input to another:
    # interleave forwards on two inputs, jvps (which unfold the tangent into a workspace),
    # a deep copy, and compare every result bit for bit with a layer used only once per call.
    import copy
    import senn_ref.layers.conv_chunks as conv_module
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", chunk_bytes)
    layer = Conv2D(2, 3, 3, padding=1, rng=rng, bias_std=1.0, in_hw=(5, 5))
    X1, X2 = rng.standard_normal((4, 2, 5, 5)), rng.standard_normal((4, 2, 5, 5))
    dY, dX_t = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 2, 5, 5))
    dW_t = rng.standard_normal(layer.params["W"].shape)

    def fresh(X):
        twin = Conv2D(2, 3, 3, padding=1, in_hw=(5, 5))
        twin.params = {k: v.copy() for k, v in layer.params.items()}
        twin.forward(X)
        return twin.backward(dY), twin.jvp(dX_t, {"W": dW_t})

    def same(got, want, name):
        assert np.array_equal(got, want), name

    (dXa, ga), Ja = fresh(X1)
    (dXb, gb), Jb = fresh(X2)
    layer.forward(X1)
    same(layer.jvp(dX_t, {"W": dW_t}), Ja, "jvp X1")
    clone = copy.deepcopy(layer)
    layer.forward(X2)
    dX, g = layer.backward(dY)
    same(dX, dXb, "dX X2")
    same(g["W"], gb["W"], "dW X2")
    dX, g = clone.backward(dY)                     # the copy still belongs to X1
    same(dX, dXa, "dX clone X1")
    same(g["W"], ga["W"], "dW clone X1")
    same(layer.jvp(dX_t, {"W": dW_t}), Jb, "jvp X2")
    dX, g = layer.backward(dY)
    same(g["W"], gb["W"], "dW X2 after jvp")


def test_unpickled_layer_never_reuses_another_inputs_columns(rng, monkeypatch):
    # A pickled layer is loaded in a fresh process (simulated: any per-process counter of
    # forward labels restarts) and used there; a later forward on a new input must not be
    # served the columns of the input cached before pickling, however labels are counted.
    import itertools
    import pickle
    import senn_ref.layers.conv2d as conv_module
    layer = Conv2D(1, 1, 3, padding=1, rng=rng, bias_std=1.0, in_hw=(4, 4))
    XA, XB = rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((1, 1, 4, 4))
    layer.forward(XA)
    stamp = layer._cache["stamp"]
    blob = pickle.dumps(layer)
    if hasattr(conv_module, "_STAMPS"):                        # a counter restarts in a new process
        monkeypatch.setattr(conv_module, "_STAMPS", itertools.count(0))
    worker = pickle.loads(blob)
    worker.backward(np.ones((1, 1, 4, 4)))                     # workspace: XA's columns, old label
    if isinstance(stamp, int):                                 # other layers advance the counter
        for _ in range(stamp):
            next(conv_module._STAMPS)
    twin = Conv2D(1, 1, 3, padding=1, in_hw=(4, 4))
    twin.params = {k: v.copy() for k, v in worker.params.items()}
    assert np.array_equal(worker.forward(XB), twin.forward(XB))
    dY = rng.standard_normal((1, 1, 4, 4))
    assert np.array_equal(worker.backward(dY)[1]["W"], twin.backward(dY)[1]["W"])


@pytest.mark.parametrize("chunk_bytes", [1, 2 ** 21])
def test_conv_caches_a_private_copy_of_its_input(chunk_bytes, rng, monkeypatch):
    # Mutating the caller's X after forward must change neither backward nor jvp, whether the
    # columns are kept in the workspace (one chunk) or recomputed from the cached input.
    import senn_ref.layers.conv_chunks as conv_module
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", chunk_bytes)
    layer = Conv2D(1, 2, 3, padding=1, rng=rng, bias_std=1.0, in_hw=(4, 4))
    X, dY = rng.standard_normal((6, 1, 4, 4)), rng.standard_normal((6, 2, 4, 4))
    dW_t = rng.standard_normal(layer.params["W"].shape)
    layer.forward(X)
    g, J = layer.backward(dY)[1]["W"].copy(), layer.jvp(None, {"W": dW_t})
    X *= 2.0
    assert np.array_equal(layer.backward(dY)[1]["W"], g)
    assert np.array_equal(layer.jvp(None, {"W": dW_t}), J)


def test_thread_pool_runs_blas_on_one_thread(rng, monkeypatch):
    # Inside the conv thread pool BLAS must use one thread (two pool threads each calling a
    # multithreaded OpenBLAS oversubscribe the cores: conv_chunks docstring); outside, the
    # caller's setting is back.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import senn_ref.layers.conv_chunks as conv_module
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 1)
    calls = _force_thread_pool(conv_module, monkeypatch)

    def blas_threads():
        """Threads of the BLAS NumPy calls (its bundled library when it has one): other BLAS
        libraries loaded after the limit's controller was made are not the conv's concern."""
        infos = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        own = [i for i in infos if "numpy" in i["filepath"]] or infos[:1]
        return [i["num_threads"] for i in own]

    if not blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    seen = []
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        outside = blas_threads()
        conv_module.map_chunks(lambda sl: seen.append(blas_threads()), conv_module.chunks(4, 8))
        after = blas_threads()
    assert calls and len(seen) == 4, (calls, seen)
    assert outside == [2] and all(t == [1] for t in seen), (outside, seen)
    assert after == outside, (after, outside)
