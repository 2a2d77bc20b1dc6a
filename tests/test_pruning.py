"""Pruning (derivations/18-pruning.md): prune_neurons preserves the function of a network whose
pruned units' outgoing weights are zero, keeps the bookkeeping and optimiser state; the freeze
score, removal cost, saliency and OBS step equal their brute-force definitions on the dense
GGN, and their K-FAC per-unit forms equal brute force on the explicit Kronecker block and the
exact forms where K-FAC is exact; refused arguments change nothing."""
import pickle

import numpy as np
import pytest

from grow_cases import CASES, make_case
from senn_ref.fisher import exact
from senn_ref.grow import add_neurons, hidden_path
from senn_ref.grow.prune_neurons import consumer_input_coordinates, prune_neurons
from senn_ref.grow.pruning import (PruningScores, incoming_index, obs_compensation, outgoing_index,
                                   pruning_candidates, pruning_scores, scores_and_compensation)
from senn_ref.grow.pruning_kfac import kfac_group_scores, kfac_obs_folded
from senn_ref.kfac import factored_damping, fold, kfac_eta, kfac_factors, sym_inverse
from senn_ref.optim import KFAC, SGD, Adam, NaturalGradientCG
from senn_ref.score import mean_loss_grad
from senn_ref.testing import assert_close

# (case, producer): dense consumer, deeper dense, conv consumer (stride 2), Flatten then dense,
# conv consumer then Flatten, global-average-pool head
SITES = [("mlp_rational", 0), ("mlp_deep", 2), ("conv_strided", 0), ("conv_strided", 3),
         ("conv_flatten", 0), ("conv_gap", 0)]


def _zero_outgoing(net, path, units):
    W = net.layers[path.consumer].params["W"]
    sel = units if W.ndim == 4 else path.consumer_columns(units)
    W[:, sel] = 0.0


def _shapes(net):
    return {k: p.shape for k, p in net.named_params().items()}


# ------------------------------------------------------------------ the operation
@pytest.mark.parametrize("name", CASES)
def test_prune_of_added_units_restores_the_network(name):
    case = make_case(name, seed=1)
    rng = np.random.default_rng(3)
    for h in case.hidden:
        net = case.net.copy()
        theta, shapes, out = net.get_flat(), _shapes(net), net.forward(case.X)
        units = hidden_path(net, h).units
        W = rng.standard_normal((2,) + net.layers[h].params["W"].shape[1:])
        add_neurons(net, h, W, b=rng.standard_normal(2), rng=rng)
        rec = prune_neurons(net, h, [units, units + 1])
        assert np.max(np.abs(net.forward(case.X) - out)) < 1e-12
        assert np.array_equal(net.get_flat(), theta) and _shapes(net) == shapes
        assert rec.kind == "prune_neurons" and rec.new_index.size == 0
        kept = rec.old_to_new >= 0
        assert np.array_equal(rec.old_to_new[kept], np.arange(theta.size))


@pytest.mark.parametrize("name, h", SITES)
def test_pruned_network_equals_zeroed_outgoing_weights(name, h):
    case = make_case(name, seed=2)
    net = case.net
    path = hidden_path(net, h)
    units = [0] if path.units == 2 else [0, 2]
    ref = net.copy()
    _zero_outgoing(ref, path, units)
    theta = net.get_flat()
    drop = np.concatenate([outgoing_index(net, path, units), incoming_index(net, path, units)])
    rec = prune_neurons(net, h, units)
    assert_close(net.forward(case.X), ref.forward(case.X), rtol=0, atol=1e-13, name="pruned output")
    assert np.array_equal(np.sort(rec.removed_index), np.sort(drop))
    kept = rec.old_to_new >= 0
    assert np.array_equal(net.get_flat()[rec.old_to_new[kept]], theta[kept])
    assert np.array_equal(np.sort(rec.old_to_new[kept]), np.arange(net.num_params()))
    assert hidden_path(net, h).units == path.units - len(units)


@pytest.mark.parametrize("name, h", [("mlp_deep", 0), ("conv_strided", 3), ("conv_flatten", 0)])
def test_compensation_is_added_before_removal(name, h):
    case = make_case(name, seed=5)
    net, path = case.net, hidden_path(case.net, h)
    d = 0.1 * np.random.default_rng(0).standard_normal(net.num_params())
    ref = net.copy()
    ref.set_flat(ref.get_flat() + d)
    _zero_outgoing(ref, path, [1])
    rec = prune_neurons(net, h, [1], compensation=d)
    assert_close(net.forward(case.X), ref.forward(case.X), rtol=0, atol=1e-13, name="compensated")
    assert rec.details["compensated"] and len(rec.rewritten) == len(_shapes(ref))
    # with the OBS update (d_b = -w_b) the pruned network computes f(theta + d) exactly
    case = make_case(name, seed=5)
    d = obs_compensation(case.net, case.X, case.Y, case.loss, h, [1], damping=1e-3)
    ref = case.net.copy()
    ref.set_flat(ref.get_flat() + d)
    prune_neurons(case.net, h, [1], compensation=d)
    assert_close(case.net.forward(case.X), ref.forward(case.X), rtol=0, atol=1e-13, name="obs")


OPTS = {"sgd": lambda: SGD(0.05, momentum=0.9), "adam": lambda: Adam(0.01),
        "ngd": lambda: NaturalGradientCG(lr=0.1, damping=0.1, cg_maxiter=200)}


def _train(case, opt, steps):
    for _ in range(steps):
        if getattr(opt, "uses_curvature", False):
            opt.step(case.net, case.X, case.Y, case.loss)
        else:
            _, g = case.net.loss_and_grad(case.X, case.Y, case.loss)
            opt.step(case.net.named_params(), g.grads)


@pytest.mark.parametrize("name, h", [("mlp_rational", 0), ("conv_strided", 0), ("conv_strided", 3)])
@pytest.mark.parametrize("kind", sorted(OPTS))
def test_shrink_state_bit_identical(kind, name, h):
    case = make_case(name, seed=4)
    opt = OPTS[kind]()
    _train(case, opt, 2)
    sd = opt.state_dict()["state"]
    keys = list(case.net.named_params())
    before = {s: np.concatenate([sd[k][s].ravel() for k in keys]) for s in opt.slots}
    rec = prune_neurons(case.net, h, [1], optimizer=opt)
    sd = opt.state_dict()["state"]
    for s, old in before.items():
        new = np.concatenate([sd[k][s].ravel() for k in case.net.named_params()])
        kept = rec.old_to_new >= 0
        assert new.dtype == old.dtype and np.array_equal(new[rec.old_to_new[kept]], old[kept]), s
    theta = case.net.get_flat()
    _train(case, opt, 1)
    assert np.all(np.isfinite(case.net.get_flat())) and not np.array_equal(case.net.get_flat(), theta)


@pytest.mark.parametrize("name, h", [("mlp_rational", 0), ("conv_strided", 0), ("conv_strided", 3),
                                     ("conv_flatten", 0)])
def test_kfac_state_shrinks_bit_identical(name, h):
    case = make_case(name, seed=6)
    opt = KFAC(0.05, damping=0.1, inverse_every=3)
    _train(case, opt, 2)
    path = hidden_path(case.net, h)
    prod, cons = case.net.layers[h].name, case.net.layers[path.consumer].name
    fP, fC = opt.factors[prod].copy(), opt.factors[cons].copy()
    (A_invP, G_invP), (A_invC, G_invC) = opt.inverses[prod], opt.inverses[cons]
    rat = [case.net.layers[j].name for j in path.between if case.net.layers[j].param_names]
    blocks = {n: (opt.blocks[n].copy(), opt.block_inverses[n].copy()) for n in rat}
    gone = consumer_input_coordinates(case.net, path, [1])
    prune_neurons(case.net, h, [1], optimizer=opt)
    keep_u = np.delete(np.arange(path.units), 1)
    keep_a = np.append(np.setdiff1d(np.arange(fC.A.shape[0] - 1), gone), fC.A.shape[0] - 1)
    assert np.array_equal(opt.factors[prod].G, fP.G[np.ix_(keep_u, keep_u)])
    assert np.array_equal(opt.factors[prod].A, fP.A) and np.array_equal(opt.inverses[prod][0], A_invP)
    assert np.array_equal(opt.factors[cons].A, fC.A[np.ix_(keep_a, keep_a)])
    assert np.array_equal(opt.factors[cons].G, fC.G) and np.array_equal(opt.inverses[cons][1], G_invC)
    # the factors that lost rows get the inverse of their shrunk damped factor, not a sub-block
    A_d, G_d = factored_damping(opt.factors[cons].A, opt.factors[prod].G, 0.1)
    assert_close(opt.inverses[cons][0] @ A_d, np.eye(keep_a.size), rtol=0, atol=1e-10)
    assert_close(opt.inverses[prod][1] @ G_d, np.eye(keep_u.size), rtol=0, atol=1e-10)
    assert not np.allclose(opt.inverses[cons][0], A_invC[np.ix_(keep_a, keep_a)], rtol=1e-6)
    for n, (B, Binv) in blocks.items():
        assert np.array_equal(opt.blocks[n], B[keep_u]) and np.array_equal(opt.block_inverses[n], Binv[keep_u])
    theta = case.net.get_flat()
    _train(case, opt, 1)
    assert np.all(np.isfinite(case.net.get_flat())) and not np.array_equal(case.net.get_flat(), theta)


def test_shrink_state_refusals_and_trace_pi():
    case = make_case("conv_flatten", seed=1)
    sgd, kf = SGD(0.05, momentum=0.9), KFAC(0.05, damping=0.1, pi="trace")
    _train(case, sgd, 1)
    _train(case, kf, 1)
    key = "conv2d1.W"                                   # (2, 2, 3, 3): the conv consumer
    before, kbefore = _state(sgd), _state(kf)
    for idx in ((None, np.array([0, 0])), (None, np.array([2])), (None, np.array([0.0])),
                (None, None, None, None, None), (slice(0, 1),)):
        with pytest.raises((TypeError, ValueError), match="keep_index"):
            sgd.shrink_state(key, idx)
    for kw in (dict(in_keep=np.array([18])), dict(out_keep=np.array([], dtype=int)),
               dict(in_keep=np.array([1, 1])), dict(in_keep=np.array([], dtype=int))):
        with pytest.raises((TypeError, ValueError), match=next(iter(kw))):
            kf.shrink_state("conv2d1", **kw)
    for kw in (dict(in_keep=np.array([0])), dict(out_keep=np.array([], dtype=int))):
        with pytest.raises(ValueError, match=next(iter(kw))):
            kf.shrink_state("rational0", **kw)
    assert _state(sgd) == before and _state(kf) == kbefore
    assert sgd.shrink_state(key, (None, np.array([1]))) and sgd.state_dict()["shapes"][key] == (2, 1, 3, 3)
    # pi = "trace" depends on both factors: both inverses are recomputed from the shrunk factors
    keep = np.arange(9, 18)
    assert kf.shrink_state("conv2d1", in_keep=keep)
    f = kf.factors["conv2d1"]
    A_d, G_d = factored_damping(f.A, f.G, 0.1, "trace")
    assert_close(kf.inverses["conv2d1"][0], sym_inverse(A_d), rtol=1e-12, name="A_inv")
    assert_close(kf.inverses["conv2d1"][1], sym_inverse(G_d), rtol=1e-12, name="G_inv")
    # removing nothing leaves the state bit for bit, also with pi = "trace" and inverses that are
    # stale against the factors (inverse_every > 1: a recomputation would change them)
    stale = KFAC(0.05, damping=0.1, pi="trace", inverse_every=5)
    _train(case, stale, 2)
    kbefore = _state(stale)
    for kw in ({}, dict(out_keep=np.arange(2)), dict(in_keep=np.arange(18)),
               dict(out_keep=np.arange(2), in_keep=np.arange(18))):
        assert stale.shrink_state("conv2d1", **kw) and _state(stale) == kbefore, kw
    assert not kf.shrink_state("dense9") and not sgd.shrink_state("dense9.W", (None,))


# ------------------------------------------------------------------ brute force on a dense matrix
def brute_force(Fd, g, c, t):
    """(freeze, removal, saliency, OBS d) of block c with displacement t from the damped dense
    curvature Fd: eta - eta_{-c}; 2 [min_{d_c=-t} m - min m]; 2 min{1/2 d Fd d : d_c = -t} and
    its minimiser from the KKT system (least squares for singular systems)."""
    P = g.size
    r = np.setdiff1d(np.arange(P), c)
    pinv = np.linalg.pinv
    eta = g @ pinv(Fd) @ g
    Frr = pinv(Fd[np.ix_(r, r)])
    h = g[r] - Fd[np.ix_(r, c)] @ t
    m_c = -g[c] @ t + 0.5 * t @ Fd[np.ix_(c, c)] @ t - 0.5 * h @ Frr @ h
    E = np.zeros((c.size, P))
    E[np.arange(c.size), c] = 1.0
    K = np.block([[Fd, E.T], [E, np.zeros((c.size, c.size))]])
    sol = np.linalg.lstsq(K, np.concatenate([np.zeros(P), -t]), rcond=None)[0]
    d = sol[:P]
    return eta - g[r] @ Frr @ g[r], 2 * m_c + eta, d @ Fd @ d, d


def _dense(case, delta):
    F = exact(case.net, case.X, case.loss, metric="euclidean", Y=case.Y)
    _, g = mean_loss_grad(case.net, case.X, case.Y, case.loss)
    return F + delta * np.eye(g.size), g


EXACT_SITES = [("mlp_tanh", 0, 0.0), ("mlp_silu", 0, 0.0), ("mlp_rational", 0, 1e-2),
               ("mlp_deep", 2, 1e-3), ("conv_strided", 3, 1e-2), ("conv_flatten", 0, 1e-2)]


@pytest.mark.parametrize("name, h, delta", EXACT_SITES)
def test_exact_scores_equal_brute_force(name, h, delta):
    case = make_case(name, seed=3)
    net, path = case.net, hidden_path(case.net, h)
    Fd, g = _dense(case, delta)
    theta = net.get_flat()
    groups = [[u] for u in range(path.units)] + [[0, 1]]
    for incoming in ("free", "fixed"):
        s = pruning_scores(net, case.X, case.Y, case.loss, h, damping=delta, groups=groups, incoming=incoming)
        bf = []
        for grp in groups:
            out = outgoing_index(net, path, grp)
            c = out if incoming == "free" else np.concatenate([out, incoming_index(net, path, grp)])
            t = np.concatenate([theta[out], np.zeros(c.size - out.size)])
            bf.append(brute_force(Fd, g, c, t)[:3])
        bf = np.array(bf)
        scale = 1e-8 * s.eta
        assert_close(s.freeze, bf[:, 0], rtol=1e-8, atol=scale, name=f"freeze {incoming}")
        assert_close(s.removal, bf[:, 1], rtol=1e-8, atol=scale, name=f"removal {incoming}")
        assert_close(s.saliency, bf[:, 2], rtol=1e-8, atol=scale, name=f"saliency {incoming}")
        assert_close(s.eta - s.eta_without, s.freeze, rtol=1e-8, atol=scale, name="eta - eta_-c")
        assert np.all(s.freeze > 1e-6 * s.eta)        # non-trivial values were compared


@pytest.mark.parametrize("name, h, delta", [("mlp_tanh", 0, 0.0), ("mlp_deep", 0, 1e-3),
                                            ("conv_strided", 0, 1e-2)])
def test_obs_is_kkt_minimiser(name, h, delta):
    case = make_case(name, seed=8)
    net, path = case.net, hidden_path(case.net, h)
    Fd, g = _dense(case, delta)
    theta = net.get_flat()
    out = outgoing_index(net, path, [1])
    c = np.concatenate([out, incoming_index(net, path, [1])])
    t = np.concatenate([theta[out], np.zeros(c.size - out.size)])
    d = obs_compensation(net, case.X, case.Y, case.loss, h, [1], damping=delta)
    _, _, sal, d_kkt = brute_force(Fd, g, c, t)
    assert_close(d, d_kkt, rtol=1e-8, atol=1e-8 * np.abs(d_kkt).max(), name="OBS vs KKT")
    s = pruning_scores(net, case.X, case.Y, case.loss, h, damping=delta, groups=[[1]], incoming="fixed")
    assert_close(d @ Fd @ d, sal, rtol=1e-8, name="objective")
    assert_close(s.saliency[0], sal, rtol=1e-8, name="saliency")
    free = np.setdiff1d(np.arange(d.size), c)
    rng = np.random.default_rng(0)
    for _ in range(5):                          # any feasible perturbation raises the objective
        e = np.zeros(d.size)
        e[free] = 1e-3 * rng.standard_normal(free.size)
        assert (d + e) @ Fd @ (d + e) > d @ Fd @ d + 0.5 * e @ Fd @ e


@pytest.mark.parametrize("curvature", ["exact", "kfac"])
@pytest.mark.parametrize("name, h", [("mlp_rational", 0), ("conv_strided", 3)])
def test_shared_setup_equals_the_public_functions_bit_for_bit(name, h, curvature):
    """What pruning_round uses (one curvature setup) gives exactly pruning_scores and
    obs_compensation with their defaults."""
    case = make_case(name, seed=4)
    net, args = case.net, (case.X, case.Y, case.loss, h)
    kw = {"damping": 1e-2, "metric": "euclidean", "curvature": curvature}
    s, compensation = scores_and_compensation(net, *args, **kw)
    ref = pruning_scores(net, *args, **kw)
    for field in ("freeze", "removal", "saliency", "eta_without", "eta"):
        assert np.array_equal(getattr(s, field), getattr(ref, field)), field
    assert s.groups == ref.groups and (s.curvature, s.scope, s.incoming) == (ref.curvature, ref.scope, ref.incoming)
    for units in ([0], [1]):
        d, d_ref = compensation(units), obs_compensation(net, *args, units, **kw)
        assert np.array_equal(d, d_ref) and np.abs(d).max() > 0, units
    with pytest.raises(ValueError, match="units"):
        compensation([hidden_path(net, h).units])


# ------------------------------------------------------------------ K-FAC per-unit forms
# undamped only where the consumer's A is nonsingular (conv_strided 3: 19 inputs, 12 examples)
KFAC_SITES = [("mlp_rational", 0, 0.0), ("mlp_deep", 0, 0.0), ("conv_strided", 0, 0.0),
              ("conv_flatten", 0, 0.0), ("mlp_rational", 0, 0.05), ("conv_strided", 0, 0.05),
              ("conv_strided", 3, 0.05), ("conv_flatten", 0, 0.05)]


@pytest.mark.parametrize("name, h, delta", KFAC_SITES)
def test_kfac_forms_equal_kronecker_brute_force(name, h, delta):
    case = make_case(name, seed=9)
    net, path = case.net, hidden_path(case.net, h)
    cons = net.layers[path.consumer]
    f = kfac_factors(net, case.X, case.Y, case.loss)[cons.name]
    A, G = factored_damping(f.A, f.G, delta)
    _, grads = net.loss_and_grad(case.X, case.Y, case.loss)
    V = fold(grads.grads[f"{cons.name}.W"], grads.grads[f"{cons.name}.b"])
    Wf = fold(cons.params["W"], cons.params["b"])
    K, n_in = np.kron(G, A), A.shape[0]
    for grp in ([0], [1], [0, 1]):
        C = consumer_input_coordinates(net, path, grp)
        c = (np.arange(G.shape[0])[:, None] * n_in + C[None, :]).reshape(-1)   # folded row-major
        t = Wf[:, C].reshape(-1)
        fr, rm, sal, d = brute_force(K, V.reshape(-1), c, t)
        mine = kfac_group_scores(A, G, V, Wf, C)
        tol = 1e-8 * max(fr, 1e-12)
        assert_close(np.array(mine[:3]), np.array([fr, rm, sal]), rtol=1e-8, atol=tol, name=f"{grp}")
        D = kfac_obs_folded(A, Wf, C)
        assert_close(D.reshape(-1), d, rtol=1e-8, atol=1e-8 * np.abs(d).max(), name="K-FAC OBS")


def test_kfac_scores_match_kfac_eta_and_the_exact_output_block():
    # scalar output, euclidean metric: the output layer's block is exactly G (x) A with G = 1
    for name, seed in (("mlp_rational", 0), ("mlp_silu", 1)):
        case = make_case(name, seed=seed, N=16)
        net, h = case.net, case.hidden[-1]
        k = pruning_scores(net, case.X, case.Y, case.loss, h, curvature="kfac")
        e = pruning_scores(net, case.X, case.Y, case.loss, h, scope="consumer")
        for field in ("freeze", "removal", "saliency", "eta_without"):
            assert_close(getattr(k, field), getattr(e, field), rtol=1e-8, atol=1e-10 * e.eta, name=field)
        d_k = obs_compensation(net, case.X, case.Y, case.loss, h, [0], curvature="kfac")
        d_e = obs_compensation(net, case.X, case.Y, case.loss, h, [0], incoming="free", scope="consumer")
        assert_close(d_k, d_e, rtol=1e-8, atol=1e-10, name="OBS")
    case = make_case("conv_strided", seed=2)
    k = pruning_scores(case.net, case.X, case.Y, case.loss, 3, damping=0.1, curvature="kfac")
    _, per_layer = kfac_eta(case.net, case.X, case.Y, case.loss, damping=0.1)
    assert_close(k.eta, per_layer[case.net.layers[6].name], rtol=1e-12)
    assert_close(k.eta - k.eta_without, k.freeze, rtol=1e-8)


def test_kfac_forms_with_vanishing_schur_complement():
    # delta = 0 with a singular consumer A (N < inputs + 1) or a duplicate unit: the unit's Schur
    # complement S_A is 0 in exact arithmetic; inverting its rounding noise crashed (negative
    # noise: "S_A not PSD") or gave wrong scores (2.5e-4 relative on conv_strided 3).  Output
    # layer, euclidean metric: K-FAC is exact there, so it must equal the exact consumer block.
    from senn_ref import mlp
    from senn_ref.losses import mse
    rng = np.random.default_rng(0)
    net = mlp([2, 8, 2], activation="tanh", seed=0)
    X, Y = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    conv = make_case("conv_strided", seed=0)
    for net, X, Y, loss, h in ((net, X, Y, mse(), 0), (conv.net, conv.X, conv.Y, conv.loss, 3)):
        k = pruning_scores(net, X, Y, loss, h, curvature="kfac")
        e = pruning_scores(net, X, Y, loss, h, scope="consumer")
        for field in ("freeze", "removal", "saliency", "eta_without"):
            assert_close(getattr(k, field), getattr(e, field), rtol=0, atol=1e-10 * e.eta, name=field)
    # a duplicate of unit 0 in a hidden consumer's input: all three scores 0, and the OBS step
    # hands its outgoing weights to its twin, so pruning with it keeps the function
    case = make_case("mlp_deep", seed=1, N=16)
    net = case.net
    add_neurons(net, 0, net.layers[0].params["W"][:1], b=net.layers[0].params["b"][:1], rng=rng)
    for k in net.layers[1].param_names:
        net.layers[1].params[k][-1] = net.layers[1].params[k][0]
    net.layers[2].params["W"][:, -1] = 0.3
    s = pruning_scores(net, case.X, case.Y, case.loss, 0, curvature="kfac")
    assert s.freeze[-1] == 0.0 and s.removal[-1] == 0.0 and s.saliency[-1] == 0.0 and s.freeze[1] > 0
    d = obs_compensation(net, case.X, case.Y, case.loss, 0, [3], curvature="kfac")
    out = net.forward(case.X)
    prune_neurons(net, 0, [3], compensation=d)
    assert_close(net.forward(case.X), out, rtol=0, atol=1e-12, name="duplicate pruned with OBS")
    # the factored damping ratio pi reaches the consumer's block
    case = make_case("conv_strided", seed=9)
    cons = case.net.layers[3]
    f = kfac_factors(case.net, case.X, case.Y, case.loss)[cons.name]
    A, G = factored_damping(f.A, f.G, 0.05, 2.0)
    _, grads = case.net.loss_and_grad(case.X, case.Y, case.loss)
    V = fold(grads.grads[f"{cons.name}.W"], grads.grads[f"{cons.name}.b"])
    Wf = fold(cons.params["W"], cons.params["b"])
    s = pruning_scores(case.net, case.X, case.Y, case.loss, 0, damping=0.05, curvature="kfac", pi=2.0,
                       groups=[[1]])
    C = consumer_input_coordinates(case.net, hidden_path(case.net, 0), [1])
    c = (np.arange(G.shape[0])[:, None] * A.shape[0] + C[None, :]).reshape(-1)
    fr, rm, sal, _ = brute_force(np.kron(G, A), V.reshape(-1), c, Wf[:, C].reshape(-1))
    assert_close(np.array([s.freeze[0], s.removal[0], s.saliency[0]]), np.array([fr, rm, sal]), rtol=1e-8,
                 name="pi = 2")


def test_pruning_candidates():
    f, r = np.array([0.1, 0.5, 0.2, 0.05]), np.array([0.3, 0.1, 0.2, 0.9])
    s = PruningScores(f, r, r, 1.0 - f, 1.0, ((0,), (1,), (2,), (0, 2)), "exact", 0.0, "free", "network", 3)
    assert pruning_candidates(s, tau=0.35) == [(2,), (0,)]            # (1,) fails freeze, (0, 2) removal
    assert pruning_candidates(s, tau=1.0) == [(1,), (2,), (0,), (0, 2)]
    assert pruning_candidates(s, tau=1.0, min_width=2) == [(1,), (2,), (0,)]
    assert pruning_candidates(s, tau=0.35, eta_c=0.5) == []
    assert pruning_candidates(s, tau=1.0, min_width=3) == []
    for kw in (dict(tau=-1.0), dict(tau=1.0, min_width=0), dict(tau=1.0, eta_c=np.nan)):
        with pytest.raises((TypeError, ValueError)):
            pruning_candidates(s, **kw)
    # a unit with zero outgoing weights: zero OBS saliency, and its removal cost is its freeze
    # score (t = 0 in (2.3): pruning it only forgoes re-enabling it)
    case = make_case("mlp_tanh", seed=0)
    case.net.layers[2].params["W"][:, 1] = 0.0
    for incoming in ("free", "fixed"):
        sc = pruning_scores(case.net, case.X, case.Y, case.loss, 0, damping=1e-3, incoming=incoming)
        assert sc.saliency[1] == 0.0 and sc.saliency.min() == 0.0 and sc.units == 3
        assert_close(sc.removal[1], sc.freeze[1], rtol=1e-12, name="removal = freeze at w = 0")
        assert (1,) in pruning_candidates(sc, tau=1.01 * sc.freeze[1] / sc.eta)


# ------------------------------------------------------------------ refusals
def _state(o) -> bytes:
    if isinstance(o, KFAC):
        return pickle.dumps((o.factors, o.inverses, o.blocks, o.block_inverses))
    return pickle.dumps(o.state_dict())


def _snapshot(net, opts):
    return net.get_flat(), _shapes(net), [_state(o) for o in opts]


def test_refused_arguments_change_nothing():
    case = make_case("conv_strided", seed=0)
    net = case.net
    opts = [SGD(0.05, momentum=0.9), KFAC(0.05, damping=0.1)]
    for o in opts:
        _train(case, o, 1)
    snap = _snapshot(net, opts)
    P = net.num_params()
    bad = [dict(units=[]), dict(units=[0, 0]), dict(units=[3]), dict(units=[0, 1, 2]), dict(units=[0.0]),
           dict(units=True), dict(units=[0], compensation=np.zeros(P - 1)),
           dict(units=[0], compensation=np.full(P, np.nan)), dict(units=[0], compensation=np.zeros(P, int)),
           dict(units=[0], optimizer=[opts[0], object()]), dict(units=[0], optimizer=[opts[0], opts[0]])]
    for kw in bad:
        with pytest.raises((TypeError, ValueError)):
            prune_neurons(net, 0, optimizer=kw.pop("optimizer", opts), **kw)
        s = _snapshot(net, opts)
        assert np.array_equal(s[0], snap[0]) and s[1] == snap[1] and s[2] == snap[2], kw
    for layer in (1, 6, -1, 2.0):
        with pytest.raises((TypeError, ValueError)):
            prune_neurons(net, layer, [0])
    wrong = KFAC(0.05, damping=0.1)
    _train(case, wrong, 1)
    snap = _snapshot(net, opts)
    wrong.factors[net.layers[3].name].A = np.eye(3)      # state of another shape: refused first
    with pytest.raises(ValueError, match="optimizer"):
        prune_neurons(net, 0, [0], optimizer=[opts[0], wrong])
    assert np.array_equal(net.get_flat(), snap[0]) and _state(opts[0]) == snap[2][0]
    for kw in (dict(curvature="fisher"), dict(incoming="none"), dict(scope="all"), dict(damping=-1.0),
               dict(metric="l2"), dict(groups=[]), dict(groups=[[0, 0]]), dict(groups=[[5]]),
               dict(incoming="fixed", scope="consumer")):
        with pytest.raises((TypeError, ValueError)):
            pruning_scores(net, case.X, case.Y, case.loss, 0, **kw)
    with pytest.raises(ValueError):
        obs_compensation(net, case.X, case.Y, case.loss, 0, [0, 1, 2])
    assert np.array_equal(net.get_flat(), snap[0])
