"""Unfold/fold kernels: Numba equals the NumPy twin, fold is the adjoint of unfold,
unfold matches its defining formula, and bad arguments are rejected."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from senn_ref.kernels import conv_output_size, fold, pool_kernels, unfold
from senn_ref.kernels.dispatch import kernels_for, kernels_into
from senn_ref.testing import assert_close
from strategies import conv_geometry


@settings(max_examples=40, deadline=None)
@given(g=conv_geometry(), seed=st.integers(0, 2**31 - 1))
def test_numba_equals_numpy_twin(g, seed):
    N, C, H, W, k, s, p = g
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, C, H, W))
    P_nb = unfold(X, k, s, p, backend="numba")
    P_np = unfold(X, k, s, p, backend="numpy")
    assert_close(P_nb, P_np, rtol=1e-12, atol=1e-12, name="unfold numba vs numpy")
    Y = rng.standard_normal(P_nb.shape)
    assert_close(fold(Y, (C, H, W), k, s, p, backend="numba"),
                 fold(Y, (C, H, W), k, s, p, backend="numpy"), rtol=1e-12, atol=1e-12,
                 name="fold numba vs numpy")


@settings(max_examples=30, deadline=None)
@given(g=conv_geometry(), seed=st.integers(0, 2**31 - 1))
def test_into_kernels(g, seed):
    # The buffer-writing variants overwrite every entry of a NaN-filled buffer with exactly
    # what the allocating kernels return (same loops), and the Numba and NumPy twins agree.
    N, C, H, W, (kh, kw), (sh, sw), (ph, pw) = g
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    geom = (kh, kw, sh, sw, ph, pw, Ho, Wo)
    rng = np.random.default_rng(seed)
    X, G = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C * kh * kw, Ho * Wo))
    results = {}
    for backend in ("numba", "numpy"):
        (unfold_k, fold_k), (unfold_into, fold_into) = kernels_for(backend), kernels_into(backend)
        P, F = np.full(G.shape, np.nan), np.full(X.shape, np.nan)
        unfold_into(X, P, *geom)
        fold_into(G, F, *geom)
        assert_close(P, unfold_k(X, *geom), rtol=0, atol=0, name=f"unfold_into {backend}")
        assert_close(F, fold_k(G, C, H, W, *geom), rtol=0, atol=0, name=f"fold_into {backend}")
        results[backend] = (P, F)
        # into the first K rows of a (N, K+1, T) buffer (Conv2D's bias row): row K untouched
        big = np.full((N, G.shape[1] + 1, G.shape[2]), np.nan)
        unfold_into(X, big, *geom)
        assert_close(big[:, :-1], P, rtol=0, atol=0, name=f"unfold_into K+1 rows {backend}")
        assert np.isnan(big[:, -1]).all(), "unfold_into wrote past row K"
    assert_close(results["numba"][0], results["numpy"][0], rtol=1e-12, atol=1e-12, name="unfold_into twins")
    assert_close(results["numba"][1], results["numpy"][1], rtol=1e-12, atol=1e-12, name="fold_into twins")


@settings(max_examples=40, deadline=None)
@given(g=conv_geometry(), seed=st.integers(0, 2**31 - 1), backend=st.sampled_from(["numba", "numpy"]))
def test_fold_is_adjoint_of_unfold(g, seed, backend):
    # <unfold(x), y> = <x, fold(y)>: both sides are the same sum of products, so they
    # agree to rounding; 1e-12 relative to sum |x| |y|-scale is far above double rounding.
    N, C, H, W, k, s, p = g
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, C, H, W))
    P = unfold(X, k, s, p, backend=backend)
    Y = rng.standard_normal(P.shape)
    F = fold(Y, (C, H, W), k, s, p, backend=backend)
    lhs, rhs = np.vdot(P, Y), np.vdot(X, F)
    scale = np.linalg.norm(P) * np.linalg.norm(Y) + np.linalg.norm(X) * np.linalg.norm(F)
    assert abs(lhs - rhs) <= 1e-12 * max(scale, 1e-300), (lhs, rhs)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_unfold_matches_definition(backend, rng):
    # P[n, (c*kh+i)*kw+j, oh*Wo+ow] = Xpad[n, c, oh*sh+i, ow*sw+j], written out with loops.
    N, C, H, W, kh, kw, sh, sw, ph, pw = 2, 2, 5, 6, 3, 2, 2, 3, 1, 2
    X = rng.standard_normal((N, C, H, W))
    Xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    Xpad[:, :, ph:ph + H, pw:pw + W] = X
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    expected = np.zeros((N, C * kh * kw, Ho * Wo))
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for oh in range(Ho):
                        for ow in range(Wo):
                            expected[n, (c * kh + i) * kw + j, oh * Wo + ow] = Xpad[n, c, oh * sh + i, ow * sw + j]
    assert_close(unfold(X, (kh, kw), (sh, sw), (ph, pw), backend=backend), expected, rtol=0, atol=0,
                 name="unfold vs definition")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fold_counts_window_memberships(backend):
    # fold(unfold(ones)) counts how many windows read each pixel: for a 3x3 kernel, stride 1,
    # padding 1 on a 4x4 image that is 9 in the interior, 6 on edges, 4 at corners.
    X = np.ones((1, 1, 4, 4))
    counts = fold(unfold(X, 3, 1, 1, backend=backend), (1, 4, 4), 3, 1, 1, backend=backend)
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=float)
    assert_close(counts[0, 0], expected, rtol=0, atol=0, name="window counts")


def test_kernel_argument_errors(rng):
    X = rng.standard_normal((2, 1, 4, 4))
    with pytest.raises(ValueError, match="unknown backend"):
        unfold(X, 2, backend="cuda")
    with pytest.raises(ValueError, match="larger than the padded input"):
        unfold(X, 7, padding=1)
    with pytest.raises(ValueError, match="stride: must be >= 1"):
        unfold(X, 2, stride=0)
    with pytest.raises(ValueError, match="padding: must be >= 0"):
        unfold(X, 2, padding=-1)
    with pytest.raises(ValueError, match="4 dimensions"):
        unfold(X[0], 2)
    with pytest.raises(TypeError, match="floating-point"):
        unfold(X.astype(int), 2)
    with pytest.raises(ValueError, match="NaN"):
        unfold(np.full((1, 1, 3, 3), np.nan), 2)
    with pytest.raises(ValueError, match="expected shape"):
        fold(rng.standard_normal((2, 4, 8)), (1, 4, 4), 2)
    with pytest.raises(ValueError, match="in_shape must be"):
        fold(rng.standard_normal((2, 4, 9)), (4, 4), 2)


@st.composite
def pool_geometries(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(kh, 8)), draw(st.integers(kw, 8))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return N, C, H, W, kh, kw, sh, sw, (H - kh) // sh + 1, (W - kw) // sw + 1


@settings(max_examples=40, deadline=None)
@given(g=pool_geometries(), seed=st.integers(0, 2**31 - 1), ties=st.booleans())
def test_pool_kernels_numba_equal_numpy_twins(g, seed, ties):
    # With ties=True the input has few distinct values, so many windows have tied maxima:
    # both backends must then pick the same (first) winner, i.e. identical argmax arrays.
    N, C, H, W, kh, kw, sh, sw, Ho, Wo = g
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, (N, C, H, W)).astype(float) if ties else rng.standard_normal((N, C, H, W))
    dY, dX = rng.standard_normal((N, C, Ho, Wo)), rng.standard_normal((N, C, H, W))
    nb, npy = pool_kernels("numba"), pool_kernels("numpy")
    Y1, a1 = nb["maxpool_forward"](X, kh, kw, sh, sw, Ho, Wo)
    Y2, a2 = npy["maxpool_forward"](X, kh, kw, sh, sw, Ho, Wo)
    assert_close(Y1, Y2, rtol=0, atol=0, name="max forward")
    assert np.array_equal(a1, a2), "argmax differs between backends"
    assert_close(nb["maxpool_backward"](dY, a1, H, W, kh, kw, sh, sw),
                 npy["maxpool_backward"](dY, a2, H, W, kh, kw, sh, sw), rtol=1e-12, atol=1e-12, name="max bwd")
    assert_close(nb["maxpool_jvp"](dX, a1, kh, kw, sh, sw), npy["maxpool_jvp"](dX, a2, kh, kw, sh, sw),
                 rtol=0, atol=0, name="max jvp")
    assert_close(nb["avgpool_forward"](X, kh, kw, sh, sw, Ho, Wo), npy["avgpool_forward"](X, kh, kw, sh, sw, Ho, Wo),
                 rtol=1e-12, atol=1e-12, name="avg forward")
    assert_close(nb["avgpool_backward"](dY, H, W, kh, kw, sh, sw), npy["avgpool_backward"](dY, H, W, kh, kw, sh, sw),
                 rtol=1e-12, atol=1e-12, name="avg bwd")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("W, kw, sw, pw", [(1, 5, 1, 2), (1, 3, 2, 2), (2, 4, 3, 2), (3, 1, 3, 2), (1, 1, 1, 0)])
def test_unfold_fold_where_padding_dominates(backend, W, kw, sw, pw, rng):
    # Inputs narrower than the padding: whole kernel columns fall into the padding, the
    # case where a kernel's in-bounds range of output columns is empty.  Compared with
    # the six-loop definition through the adjoint identity and the twin.
    X = rng.standard_normal((2, 2, 3, W))
    P = unfold(X, (2, kw), (1, sw), (1, pw), backend=backend)
    assert_close(P, unfold(X, (2, kw), (1, sw), (1, pw), backend="numpy"), rtol=0, atol=0, name="unfold")
    Y = rng.standard_normal(P.shape)
    F = fold(Y, (2, 3, W), (2, kw), (1, sw), (1, pw), backend=backend)
    assert_close(F, fold(Y, (2, 3, W), (2, kw), (1, sw), (1, pw), backend="numpy"), rtol=1e-12, atol=1e-12,
                 name="fold")
    assert abs(np.vdot(P, Y) - np.vdot(X, F)) <= 1e-12 * (np.linalg.norm(P) * np.linalg.norm(Y) + 1e-300)


@settings(max_examples=30, deadline=None)
@given(W=st.integers(16, 30), H=st.integers(1, 6), kw=st.integers(1, 5), kh=st.integers(1, 3),
       pw=st.integers(0, 3), ph=st.integers(0, 2), sh=st.integers(1, 2), seed=st.integers(0, 2**31 - 1))
def test_fold_wide_rows_equal_numpy_twin(W, H, kw, kh, pw, ph, sh, seed):
    """Rows of at least 12 output columns at stride 1 take the sliced, branch-free fold
    (``unfold_numba._fold_rows_sliced``); it equals the NumPy twin (1e-12) and the adjoint
    identity holds.  The generic geometries above rarely reach that width."""
    if kh > H + 2 * ph:
        return
    rng = np.random.default_rng(seed)
    C = 2
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, 1, pw)
    assert Wo >= 12
    P = rng.standard_normal((2, C * kh * kw, Ho * Wo))
    Xnb = fold(P, (C, H, W), (kh, kw), (sh, 1), (ph, pw), backend="numba")
    assert_close(Xnb, fold(P, (C, H, W), (kh, kw), (sh, 1), (ph, pw), backend="numpy"),
                 rtol=1e-12, atol=1e-12, name="wide fold numba vs numpy")
    X = rng.standard_normal((2, C, H, W))
    lhs = np.vdot(unfold(X, (kh, kw), (sh, 1), (ph, pw), backend="numba"), P)
    assert abs(lhs - np.vdot(X, Xnb)) <= 1e-12 * max(1.0, abs(lhs)) * P.size


def test_numba_is_imported_only_when_a_numba_kernel_is_used():
    """kernels.dispatch imports the Numba kernel modules on first use (cold start): importing
    the package and running the NumPy backend never loads numba (loading it takes ~1 s, so
    the numba side is left to every other kernel test)."""
    import subprocess
    import sys
    code = ("import sys, numpy as np\n"
            "import senn_ref, senn_ref.network, senn_ref.layers, senn_ref.fisher, senn_ref.kfac\n"
            "assert 'numba' not in sys.modules, 'import'\n"
            "from senn_ref import backend, mlp\n"
            "net = mlp([2, 3, 1])\n"
            "with backend.using('numpy'):\n"
            "    net.forward(np.ones((4, 2)))\n"
            "assert 'numba' not in sys.modules, 'numpy backend'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
