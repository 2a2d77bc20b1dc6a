"""K-FAC proposal form of the width gain (senn_ref/grow/kfac_proposal.py, candidate_path.py).

Checks (derivations/16-kfac-proposal.md): the gain is the consumer's K-FAC score difference of
the network grown by ``add_neurons`` and agrees with the grown consumer's K-FAC/KFC factors
(conv: the new channels' patch entries); equals the exact dense block gain where K-FAC is exact;
lower bound <= gain with equality for inputs uncorrelated with the consumer's; analytic
gradients (activations; W, b, act through rational/tanh/SiLU, avg/max/global pooling, flatten,
dense and conv producers) match finite differences; vectorised == per-candidate loop.
"""
import numpy as np
import pytest
from grow_cases import CASES, fd_check, fd_check_candidates, make_case

from senn_ref import convnet
from senn_ref.fisher.exact import jacobian
from senn_ref.grow.add_neurons import add_neurons
from senn_ref.grow.kfac_proposal import WidthProposals, kfac_width_gain
from senn_ref.grow.width_gain import layer_flat_index
from senn_ref.kfac import kfac_eta, kfac_factors
from senn_ref.kfac.score import mean_loss_grads
from senn_ref.kfac.columns import run_columns
from senn_ref.kfac.layout import fold
from senn_ref.losses import mse
from senn_ref.testing import assert_close

PAIRS = [(name, h) for name in CASES for h in make_case(name, 0).hidden]


def _maxpool_case(seed=0, N=10):
    """conv -> rational -> 2x2 max pool -> conv -> ... -> flatten -> dense (max pooling, size 2)."""
    net = convnet(image_size=4, channels=(2, 2), n_classes=2, pool="max", seed=seed)
    rng = np.random.default_rng(seed + 3)
    return net, rng.standard_normal((N,) + net.in_shape), rng.standard_normal((N, 2)), mse()


def _case(name):
    """(net, X, Y, loss) of a grow_cases case at seed 0, or of the max-pooling case."""
    if name == "maxpool":
        return _maxpool_case()
    c = make_case(name, 0)
    return c.net, c.X, c.Y, c.loss


def _grown(net, layer, W, b, act):
    """A copy of ``net`` grown by ``add_neurons`` with one candidate (k units) and its record."""
    g = net.copy()
    rec = add_neurons(g, layer, W, b, act if act else None)
    return g, rec


def _one(W, b, act, i):
    return W[i], b[i], {k: v[i] for k, v in act.items()}


@pytest.mark.parametrize("damping", [0.0, 0.1])
@pytest.mark.parametrize("name, layer", PAIRS)
def test_gain_is_kfac_score_difference_and_matches_grown_factors(name, layer, damping):
    case = make_case(name, 0)
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, layer, damping=damping)
    cons = case.net.layers[ctx.path.consumer]
    _, per = kfac_eta(case.net, case.X, case.Y, case.loss, damping=damping)
    assert_close(ctx.eta_layer, per[cons.name], 1e-11, name="eta_layer")
    W, b, act = ctx.random_candidates(3, np.random.default_rng(5), k=2)
    sc = ctx.score(W, b, act)
    for i in range(3):
        grown, _ = _grown(case.net, layer, *_one(W, b, act, i))
        gcons = grown.layers[ctx.path.consumer]
        # direct: the grown consumer's factors, its new input coordinates (patch entries for conv)
        f = kfac_factors(grown, case.X, case.Y, case.loss)[gcons.name]
        rec = run_columns(grown, case.X, case.Y, case.loss, "euclidean", "exact", 1, None, [])
        grads = mean_loss_grads(grown, rec)
        V = fold(grads[f"{gcons.name}.W"], grads[f"{gcons.name}.b"])
        n_old = cons.params["W"][0].size                       # old inputs per output
        n_all = gcons.params["W"][0].size
        old = np.r_[np.arange(n_old), n_all]                    # old inputs and the bias (last)
        new = np.arange(n_old, n_all)
        s = np.sqrt(damping)
        A = f.A + s * np.eye(f.A.shape[0])
        Gi = np.linalg.inv(f.G + s * np.eye(f.G.shape[0]))
        Aoo_inv = np.linalg.pinv(A[np.ix_(old, old)])
        D = V[:, new] - V[:, old] @ Aoo_inv @ A[np.ix_(old, new)]
        lb = np.trace(Gi @ D @ np.linalg.pinv(A[np.ix_(new, new)]) @ D.T)
        assert_close(sc.lower_bound[i], lb, 1e-8, atol=1e-12, name=f"{name} lower bound")
        assert sc.lower_bound[i] <= sc.gain[i] * (1 + 1e-10) + 1e-14
        if damping > 0:                                         # Sigma_h >= sqrt(delta) I: exact identity
            _, per_g = kfac_eta(grown, case.X, case.Y, case.loss, damping=damping)
            assert_close(sc.gain[i], per_g[gcons.name] - ctx.eta_layer, 1e-8, atol=1e-10 * per_g[gcons.name],
                         name=f"{name} gain = eta difference")


@pytest.mark.parametrize("name, layer", [("mlp_rational", 0), ("mlp_silu", 0), ("mlp_deep", 2)])
def test_gain_equals_exact_consumer_block_gain(name, layer):
    # scalar output, euclidean metric, Dense output layer as consumer: its K-FAC block is exact,
    # so the K-FAC gain is the dense gain of the consumer's block conditioned on itself
    case = make_case(name, 1, N=15)
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, layer)
    W, b, act = ctx.random_candidates(2, np.random.default_rng(2), k=2)
    sc = ctx.score(W, b, act)
    for i in range(2):
        grown, rec = _grown(case.net, layer, *_one(W, b, act, i))
        J = jacobian(grown, case.X)[:, 0, :]                                # (N, P)
        e = (grown.forward(case.X).reshape(-1, 1) - case.Y)[:, 0]
        N = J.shape[0]
        F, g = J.T @ J / N, J.T @ e / N
        cons_all = layer_flat_index(grown, ctx.path.consumer)
        p = np.intersect1d(cons_all, rec.new_index)
        c = np.setdiff1d(cons_all, rec.new_index)
        Fcc_inv = np.linalg.inv(F[np.ix_(c, c)])
        r = g[p] - F[np.ix_(p, c)] @ Fcc_inv @ g[c]
        S = F[np.ix_(p, p)] - F[np.ix_(p, c)] @ Fcc_inv @ F[np.ix_(c, p)]
        assert_close(sc.gain[i], r @ np.linalg.solve(S, r), 1e-9, name="gain vs dense Schur")
        assert_close(sc.lower_bound[i], r @ np.linalg.solve(F[np.ix_(p, p)], r), 1e-9, name="lower bound")
        assert sc.lower_bound[i] < sc.gain[i]


def test_equality_and_duplicates():
    case = make_case("mlp_tanh", 0, N=20)
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, 0)
    rng = np.random.default_rng(0)
    a = ctx.a.reshape(20, -1)
    H = rng.standard_normal((4, 20, 1, 2))
    Q, _ = np.linalg.qr(a)
    H_perp = H - np.einsum("ij,cjtk->citk", Q @ Q.T, H)                # E[h a^T] = 0
    sc = ctx.score_activations(H_perp)
    assert_close(sc.lower_bound, sc.gain, 1e-10, name="uncorrelated: bound = gain")
    assert np.all(sc.gain > 1e-3)
    full = ctx.score_activations(H)
    assert np.all(full.lower_bound <= full.gain) and np.any(full.lower_bound < 0.9 * full.gain)
    dup = ctx.score_activations(np.ascontiguousarray(np.broadcast_to(ctx.a[None, :, :, :2], (1, 20, 1, 2))))
    assert dup.lower_bound[0] < 1e-25 and dup.gain[0] < 1e-20 * ctx.eta_layer + 1e-25


def test_gain_resolves_nearly_collinear_inputs():
    """Review regression: a candidate whose q consumer inputs are nearly collinear (a saturated
    unit's pooled map, or two near-identical units) has Sigma_h eigenvalues far below 1e-10
    max(A_h) that carry real gain.  Sigma_h = A_h - B A^+ B^T formed by subtraction lost them
    (cut at SCHUR_RCOND), so the gain fell below the lower bound (by 2-15 % of eta_layer measured);
    the Gram form E[h_perp h_perp^T] keeps them.  At damping 0 both scores depend only on span(h),
    so inputs (u, u + 1e-6 w) must score as (u, w) (to the Gram matrices' 1e-4 accuracy there)."""
    case = make_case("mlp_tanh", 0, N=20)
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, 0)
    rng = np.random.default_rng(5)
    u, w = rng.standard_normal((2, 6, 20, 1, 1))
    near = ctx.score_activations(np.concatenate([u, u + 1e-6 * w], axis=3))
    ref = ctx.score_activations(np.concatenate([u, w], axis=3))
    assert_close(near.lower_bound, ref.lower_bound, 2e-3, name="lower bound, span(u, u + 1e-6 w)")
    assert_close(near.gain, ref.gain, 2e-3, name="gain, span(u, u + 1e-6 w)")
    assert np.all(near.lower_bound <= near.gain * (1 + 1e-9))


@pytest.mark.parametrize("damping", [0.0, 0.05])
def test_activation_gradients_match_finite_differences(damping):
    case = make_case("conv_flatten", 0)
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, 3, damping=damping)
    H = ctx.activations(*ctx.random_candidates(2, np.random.default_rng(1), k=1))
    sc = ctx.score_activations(H, grad=True)
    fd_check(lambda h: ctx.score_activations(h).lower_bound, H, sc.grad_lower_bound, 1e-6, "dLB/dH")
    fd_check(lambda h: ctx.score_activations(h).gain, H, sc.grad_gain, 1e-6, "dGain/dH")


CAND_CASES = [("mlp_rational", 0), ("mlp_tanh", 0), ("mlp_silu", 0), ("conv_flatten", 0), ("conv_flatten", 3),
              ("conv_strided", 0), ("conv_strided", 3), ("conv_gap", 0), ("maxpool", 0), ("maxpool", 3)]


@pytest.mark.parametrize("name, layer", CAND_CASES)
def test_candidate_gradients_match_finite_differences(name, layer):
    net, X, Y, loss = _case(name)
    ctx = WidthProposals(net, X, Y, loss, layer, damping=0.01)
    W, b, act = ctx.random_candidates(2, np.random.default_rng(3), k=2)
    sc = ctx.score(W, b, act, grad=True)
    assert np.all(sc.lower_bound > 1e-6)
    lb = lambda W_, b_, a_: ctx.score(W_, b_, a_).lower_bound  # noqa: E731
    fd_check_candidates(lb, W, b, act, sc, f"{name} dLB")


@pytest.mark.parametrize("name, layer", CAND_CASES)
def test_kernel_grad_equals_einsum(name, layer):
    """The producer backward's matmul (kernel_grad) against the einsum it replaced, through
    CandidatePath.backward on real tapes (dense and conv producers, k = 2) and on random arrays
    with T_p > 1: equal to 1e-12 relative (the same sums in another order)."""
    from senn_ref.grow.candidate_path import kernel_grad
    net, X, Y, loss = _case(name)
    ctx = WidthProposals(net, X, Y, loss, layer, damping=0.01)
    cp = ctx.candidates
    W, b, act = ctx.random_candidates(5, np.random.default_rng(4), k=2)
    H, tape = cp.forward(W, b, act)
    dh = np.random.default_rng(5).standard_normal(H.shape)
    dW, db, _ = cp.backward(dh, tape, W)
    # the reference: the same backward with the producer step done by the einsum
    g = cp._from_consumer(dh, tape[-1])
    for la, saved in zip(reversed(cp.stages), reversed(tape[:-1])):
        g = cp._stage_backward(la, g, saved, {})
    dz = g.reshape(W.shape[0], cp.N, W.shape[1], -1)
    ref = np.einsum("cnkt,nft->ckf", dz, cp.x, optimize=True).reshape(W.shape)
    assert_close(dW, ref, 1e-12, atol=1e-12 * np.abs(ref).max(), name=f"{name} dW")
    assert np.array_equal(db, dz.sum(axis=(1, 3)))
    rng = np.random.default_rng(6)
    dz, x = rng.standard_normal((4, 7, 3, 6)), rng.standard_normal((7, 5, 6))
    ref = np.einsum("cnkt,nft->ckf", dz, x)
    got = kernel_grad(dz, np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(-1, 5))
    assert_close(got, ref, 1e-12, atol=1e-12 * np.abs(ref).max(), name="kernel_grad T_p = 6")


@pytest.mark.parametrize("name, layer", [("mlp_rational", 0), ("conv_flatten", 3), ("maxpool", 0)])
def test_lower_bound_only_path_gives_the_same_numbers(name, layer):
    """score(gain=False) (what the search calls) returns the very same lower bound and gradients
    as score(); kfac_width_gain's q = 1 path (no LAPACK) equals the eigh pseudo-inverse bit for bit;
    the candidates' fused rational kernel equals the public rational_partials bit for bit."""
    from senn_ref.grow.candidate_path import candidate_rational
    from senn_ref.grow.kfac_proposal import _psd_pinv, _psd_pinv_top
    from senn_ref.layers.rational import rational_partials
    net, X, Y, loss = _case(name)
    ctx = WidthProposals(net, X, Y, loss, layer, damping=0.01)
    for k in (1, 2):
        W, b, act = ctx.random_candidates(4, np.random.default_rng(7), k=k)
        full, fast = ctx.score(W, b, act, grad=True), ctx.score(W, b, act, grad=True, gain=False)
        assert fast.gain is None and np.all(np.isfinite(full.gain))
        for field in ("lower_bound", "grad_W", "grad_b"):
            assert np.array_equal(getattr(full, field), getattr(fast, field)), field
        for key in act:
            assert np.array_equal(full.grad_act[key], fast.grad_act[key]), key
    M = np.random.default_rng(8).standard_normal((6, 1, 1)) ** 2
    M[2] = 0.0
    got, top = _psd_pinv_top(M, 1e-14)
    assert np.array_equal(got, _psd_pinv(M, 1e-14 * np.abs(np.linalg.eigvalsh(M)[:, -1])))
    assert np.array_equal(top, M[:, 0, 0]) and got[2, 0, 0] == 0.0
    rng = np.random.default_rng(9)
    for shape in ((5, 7, 3), (5, 7, 3, 2, 4)):
        y = 3.0 * rng.standard_normal(shape)
        act = {n: rng.standard_normal((5, 3)) for n in "vcl"}
        bshape = (5, 1, 3) + (1,) * (len(shape) - 3)
        ref = rational_partials(y, *[act[n].reshape(bshape) for n in "vcl"], eps=1e-8)
        for backend in ("numpy", "numba"):
            for got, want in zip(candidate_rational(y, act, 1e-8, backend), ref):
                assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("name, layer", [("mlp_deep", 2), ("conv_flatten", 0), ("conv_strided", 0)])
def test_vectorised_equals_loop(name, layer):
    c = make_case(name, 1)
    ctx = WidthProposals(c.net, c.X, c.Y, c.loss, layer, damping=0.01)
    W, b, act = ctx.random_candidates(6, np.random.default_rng(9), k=2)
    sc = ctx.score(W, b, act, grad=True)
    for i in range(6):
        one = ctx.score(W[i:i + 1], b[i:i + 1], {k: v[i:i + 1] for k, v in act.items()}, grad=True)
        for field in ("lower_bound", "gain", "grad_W", "grad_b"):
            ref = getattr(one, field)[0]
            assert_close(getattr(sc, field)[i], ref, 1e-12, atol=1e-12 * np.abs(ref).max(), name=field)
        for k in act:
            assert_close(sc.grad_act[k][i], one.grad_act[k][0], 1e-12, atol=1e-12 * np.abs(one.grad_act[k]).max())


def test_random_candidates_draws_as_released_code():
    c = make_case("conv_flatten", 0)
    ctx = WidthProposals(c.net, c.X, c.Y, c.loss, 3)
    W, b, act = ctx.random_candidates(3000, np.random.default_rng(4), k=2)
    assert W.shape == (3000, 2, 2, 3, 3) and b.shape == (3000, 2) and set(act) == {"v", "c", "l"}
    ref = np.random.default_rng(4)
    assert np.array_equal(W, ref.standard_normal(W.shape) / np.sqrt(18))
    assert np.array_equal(b, ref.standard_normal((3000, 2)))
    for k in ("v", "c", "l"):
        assert np.array_equal(act[k], ref.standard_normal((3000, 2)))
    assert abs(W.std() * np.sqrt(18) - 1) < 0.02 and abs(b.std() - 1) < 0.03
    t = make_case("mlp_tanh", 0)
    assert WidthProposals(t.net, t.X, t.Y, t.loss, 0).random_candidates(2, ref)[2] == {}


def test_arguments_are_checked_before_anything():
    c = make_case("mlp_rational", 0)
    theta = c.net.get_flat()
    with pytest.raises(ValueError, match="layer"):
        WidthProposals(c.net, c.X, c.Y, c.loss, 2)                           # output layer
    with pytest.raises(ValueError, match="damping"):
        WidthProposals(c.net, c.X, c.Y, c.loss, 0, damping=-1.0)
    with pytest.raises(ValueError, match="metric"):
        WidthProposals(c.net, c.X, c.Y, c.loss, 0, metric="fisher")
    ctx = WidthProposals(c.net, c.X, c.Y, c.loss, 0)
    assert np.array_equal(c.net.get_flat(), theta)
    W, b, act = ctx.random_candidates(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="W"):
        ctx.score(W[:, :, :1], b, act)
    with pytest.raises(ValueError, match="b"):
        ctx.score(W, b[:1], act)
    with pytest.raises(ValueError, match="act"):
        ctx.score(W, b, {"v": act["v"]})
    bad = W.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ctx.score(bad, b, act)
    with pytest.raises(TypeError, match="rng"):
        ctx.random_candidates(2, 0)
    with pytest.raises(ValueError, match="H"):
        ctx.score_activations(np.zeros((1, 3, 1, 2)))
    with pytest.raises(ValueError, match="shift"):
        kfac_width_gain(np.ones((1, 12, 1, 1)), ctx.R, ctx.G_inv, ctx.a, ctx.A_inv, shift=-1.0)
    with pytest.raises(ValueError, match="G_inv"):
        kfac_width_gain(np.ones((1, 12, 1, 1)), ctx.R, ctx.A_inv, ctx.a, ctx.A_inv)
    with pytest.raises(TypeError, match="grad"):
        ctx.score(W, b, act, grad="yes")


def test_true_metric_softmax_gain_is_score_difference():
    c = make_case("mlp_softmax", 2)
    ctx = WidthProposals(c.net, c.X, c.Y, c.loss, 0, damping=0.1, metric="true")
    W, b, act = ctx.random_candidates(2, np.random.default_rng(8), k=1)
    sc = ctx.score(W, b, act)
    for i in range(2):
        grown, _ = _grown(c.net, 0, *_one(W, b, act, i))
        _, per = kfac_eta(grown, c.X, c.Y, c.loss, damping=0.1, metric="true")
        cons = grown.layers[ctx.path.consumer].name
        assert_close(sc.gain[i], per[cons] - ctx.eta_layer, 1e-9, name="true-metric gain")


def test_gain_benchmark_quick_rows(capsys):
    from senn_ref.bench import gain
    rows = gain.run(quick=True, widths=(4,), depths=(2, 3), N=16, n_depth=3, n_loop=3, budget_seconds=0.5)
    assert "vectorised" in capsys.readouterr().out
    assert [r["part"] for r in rows] == ["depth", "depth", "vectorised"]
    for r in rows[:2]:
        assert np.isfinite(r["seconds_per_candidate"]) and r["seconds_per_candidate"] > 0
        assert np.isfinite(r["ratio"]) and r["ratio"] > 0 and np.isfinite(r["spread"])
    assert rows[0]["ratio"] == 1.0
    assert rows[2]["loop_s"] > 0 and rows[2]["vectorised_s"] > 0 and np.isfinite(rows[2]["ratio"])


def test_candidate_tape_is_not_overwritten_by_the_next_forward():
    """A tape of CandidatePath.forward stays valid after another forward at the same shapes, and
    scoring leaves the network's Tanh layer alone (its forward keeps the slope in buffers of
    its own; the candidate path must not write into them)."""
    case = make_case("mlp_tanh", 0, N=20)
    tanh = case.net.layers[1]
    case.net.forward(case.X)
    slope = tanh._cache["slope"].copy()
    ctx = WidthProposals(case.net, case.X, case.Y, case.loss, 0, damping=0.01)
    cp = ctx.candidates
    W1, b1, a1 = ctx.random_candidates(3, np.random.default_rng(1), k=2)
    W2, b2, a2 = ctx.random_candidates(3, np.random.default_rng(2), k=2)
    H1, tape1 = cp.forward(W1, b1, a1)
    dh = np.random.default_rng(3).standard_normal(H1.shape)
    before = cp.backward(dh, tape1, W1)
    buffers = tanh.__dict__.get("_buffers")
    cp.forward(W2, b2, a2)                                # same shapes as the first call
    after = cp.backward(dh, tape1, W1)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert tanh.__dict__.get("_buffers") is buffers
    assert np.array_equal(tanh._cache["slope"], slope)
