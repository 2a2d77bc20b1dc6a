"""Depth growth (derivations/17-depth.md): insert_layer preserves the function and carries
optimiser state; the closed-form depth gain equals the generic Schur formula; the lower bound
of DepthProposals never exceeds the exact gain and its gradient matches finite differences."""
import numpy as np
import pytest

from grow_cases import CASES, make_case
from senn_ref.fisher import jacobian
from senn_ref.gradcheck import check_network
from senn_ref.grow.depth_exact import closed_form_context, depth_gain_closed, depth_gain_exact, depth_index
from senn_ref.grow.depth_gain import DepthProposals
from senn_ref.grow.depth_rows import psi
from senn_ref.grow.insert_layer import COND_LIMIT, depth_supported, insert_layer
from senn_ref.grow.structure import is_linear_map
from senn_ref.grow.width_gain import gain_lower_bound
from senn_ref.kfac import kfac_factors
from senn_ref.layers.rational import EPS, identity_param_partials
from senn_ref.optim import KFAC, SGD, Adam, NaturalGradientCG
from senn_ref.score import ceiling
from senn_ref.testing import assert_close

Q = np.sqrt(1.0 + EPS)


def _candidate(k, seed, shift=True, C=None):
    rng = np.random.default_rng(seed)
    shape = (k, k) if C is None else (C, k, k)
    B = np.eye(k) + 0.3 * rng.standard_normal(shape)
    s = 0.5 * rng.standard_normal(shape[:-1])
    return B, (s if shift else np.zeros_like(s))


def _sites():
    out = []
    for name in CASES:
        net = make_case(name, 0).net
        out += [(name, i) for i, la in enumerate(net.layers) if is_linear_map(la)]
    return out


def _grads(net, case):
    return {k: g.copy() for k, g in net.loss_and_grad(case.X, case.Y, case.loss)[1].grads.items()}


@pytest.mark.parametrize("name, i", _sites())
def test_insert_preserves_function_gradients_and_record(name, i):
    case = make_case(name, 3)
    net = case.net
    k = net.layers[i].params["W"].shape[1]
    B, s = _candidate(k, i, shift=depth_supported(net, i))
    before_out = net.forward(case.X).copy()
    before_theta, before_sl = net.get_flat(), net.param_slices()
    g0 = _grads(net, case)
    consumer = net.layers[i].name
    rec = insert_layer(net, i, B, s)
    assert np.abs(net.forward(case.X) - before_out).max() < 1e-10
    g1 = _grads(net, case)
    for key in before_sl:
        if not key.startswith(consumer + "."):
            assert_close(g1[key], g0[key], rtol=1e-9, atol=1e-12, name=key)
    lin, act = rec.added_layers
    assert rec.kind == "insert_layer" and rec.rewritten == (f"{consumer}.W", f"{consumer}.b")
    assert rec.details["condition_number"] == np.linalg.cond(B)        # the check's value, exactly
    assert net.layers[i].name == lin and net.layers[i + 1].name == act and net.layers[i + 2].name == consumer
    assert_close(net.layers[i].params["W"].reshape(k, k), B, rtol=0, name="inserted B")
    assert_close(net.layers[i + 1].params["l"], np.ones(k), rtol=0, name="identity l")
    sl = net.param_slices()
    expect_new = np.concatenate([np.arange(sl[key].start, sl[key].stop) for key in sl
                                 if key.split(".")[0] in (lin, act)])
    np.testing.assert_array_equal(rec.new_index, expect_new)
    theta = net.get_flat()
    keep = np.ones(before_theta.size, dtype=bool)
    for key in rec.rewritten:
        keep[before_sl[key]] = False
    assert np.array_equal(theta[rec.old_to_new[keep]], before_theta[keep])
    res = check_network(net, case.X[:4], np.random.default_rng(0))
    assert res.fd_error < 1e-6 and res.dot_error < 1e-10, res


def _snapshot(net):
    return ([la.name for la in net.layers], net.get_flat(), dict(net._name_counts))


def _assert_unchanged(net, snap):
    names, theta, counts = snap
    assert [la.name for la in net.layers] == names and net._name_counts == counts
    assert np.array_equal(net.get_flat(), theta)


@pytest.mark.parametrize("bad, match", [
    ("singular", r"condition number inf exceeds COND_LIMIT"),
    ("ill", r"condition number 1\.0\d*e\+12 exceeds COND_LIMIT = 1e\+06"),
    ("shape_B", r"B: expected shape \(3, 3\)"),
    ("nan_B", r"B: contains 1 NaN"),
    ("shape_s", r"s: expected shape \(3,\)"),
    ("inf_s", r"s: contains 1 NaN or infinite"),
    ("int_B", r"B: expected a real floating-point array"),
    ("not_linear", r"position: net.layers\[1\] is Rational"),
    ("out_of_range", r"position: index 9 out of range"),
    ("optimizer", r"optimizer: entry 0 is a str"),
])
def test_insert_refusals_leave_everything_unchanged(bad, match):
    case = make_case("mlp_rational", 1)
    net = case.net
    opt = Adam(0.01)
    value, g = net.loss_and_grad(case.X, case.Y, case.loss)
    opt.step(net.named_params(), g.grads)
    state = opt.state_dict()
    B, s, pos, o = np.eye(3), np.zeros(3), 2, opt
    if bad == "singular":
        B = np.ones((3, 3))
    elif bad == "ill":
        B = np.diag([1.0, 1.0, 1e-12])
    elif bad == "shape_B":
        B = np.eye(2)
    elif bad == "nan_B":
        B = np.eye(3); B[0, 1] = np.nan
    elif bad == "shape_s":
        s = np.zeros(4)
    elif bad == "inf_s":
        s = np.array([0.0, np.inf, 0.0])
    elif bad == "int_B":
        B = np.eye(3, dtype=int)
    elif bad == "not_linear":
        pos = 1
    elif bad == "out_of_range":
        pos = 9
    elif bad == "optimizer":
        o = ["adam"]
    snap = _snapshot(net)
    with pytest.raises((ValueError, TypeError), match=match):
        insert_layer(net, pos, B, s, optimizer=o)
    _assert_unchanged(net, snap)
    after = opt.state_dict()
    assert after["shapes"] == state["shapes"]
    assert all(np.array_equal(after["state"][k][n], state["state"][k][n]) for k in state["state"]
               for n in state["state"][k])


def test_shift_refused_before_padded_conv_and_accepted_without_padding():
    case = make_case("conv_flatten", 0)                     # conv layers with padding 1
    net = case.net
    i = next(j for j, la in enumerate(net.layers) if is_linear_map(la) and j > 0 and la.padding[0] > 0)
    C = net.layers[i].in_ch
    snap = _snapshot(net)
    with pytest.raises(ValueError, match=r"s: must be 0 in front of Conv2D\(conv2d\d\), which zero-pads"):
        insert_layer(net, i, np.eye(C), np.full(C, 0.1))
    _assert_unchanged(net, snap)
    assert not depth_supported(net, i) and depth_supported(net, i, shift=False)
    assert not depth_supported(net, i + 1) and not depth_supported(net, 99)
    gap = make_case("conv_gap", 0).net                      # conv with padding 0 at index 0
    assert depth_supported(gap, 0) and depth_supported(gap, 4)


OPTIMIZERS = {"sgd": lambda: SGD(0.05, momentum=0.9), "adam": lambda: Adam(0.01),
              "ngd": lambda: NaturalGradientCG(lr=0.1, damping=0.1, cg_maxiter=1000),
              "kfac": lambda: KFAC(0.05, damping=0.1, ema=0.0)}


def _step(opt, case):
    if getattr(opt, "uses_curvature", False):
        return opt.step(case.net, case.X, case.Y, case.loss)
    value, g = case.net.loss_and_grad(case.X, case.Y, case.loss)
    opt.step(case.net.named_params(), g.grads)
    return value


def test_adam_first_step_on_an_inserted_layer_is_ramped():
    """08-optimisers.md section 4: an inserted layer's entries are grown entries, so Adam's next
    step moves them by (1 - beta1) lr g / (|g| + eps) (0.1 lr here), not by the full lr sign(g)
    of a fresh Adam's first step (the old behaviour: digits-conv's loss 0.74 -> 2.91)."""
    case = make_case("mlp_deep", 2)
    net, opt = case.net, Adam(0.01)
    for _ in range(3):
        _step(opt, case)
    B, s = _candidate(net.layers[2].params["W"].shape[1], 5)
    rec = insert_layer(net, 2, B, s, optimizer=opt)
    keys = [f"{n}.{p}" for n in rec.added_layers for p in net.layers[net.index_of(n)].param_names]
    before = {k: net.named_params()[k].copy() for k in keys}
    value, g = net.loss_and_grad(case.X, case.Y, case.loss)
    _step(opt, case)
    biggest = 0.0
    for k in keys:
        step = net.named_params()[k] - before[k]
        fresh = -opt.lr * g.grads[k] / (np.abs(g.grads[k]) + opt.eps)
        assert_close(step, (1.0 - opt.beta1) * fresh, rtol=1e-12, atol=1e-15)
        biggest = max(biggest, np.abs(step).max())
        st = opt.state_dict()["state"][k]
        assert np.all(st["t"] == 1) and np.all(st["grown"] == 1)
    assert 0.09 * opt.lr < biggest <= 0.1 * opt.lr * (1 + 1e-12)     # a step, 10x below a fresh one
    # an optimiser that has not stepped yet gets no state: the whole net then starts fresh
    case2 = make_case("mlp_deep", 2)
    opt2 = Adam(0.01)
    rec2 = insert_layer(case2.net, 2, B, s, optimizer=opt2)
    assert not any(opt2.has_state(f"{n}.W") for n in rec2.added_layers) and not opt2.state_dict()["state"]


@pytest.mark.parametrize("name, i", [("mlp_deep", 2), ("conv_gap", 0), ("conv_flatten", 3), ("conv_strided", 6)])
def test_optimizer_state_survives_and_kfac_consumer_factor_is_exact(name, i):
    case = make_case(name, 2)
    net = case.net
    opts = {kind: make() for kind, make in OPTIMIZERS.items()}
    for kind, opt in opts.items():
        if kind == "kfac":
            at_kfac_step = net.copy()                         # the point its factors were taken at
        _step(opt, case)
    states = {kind: opt.state_dict() for kind, opt in opts.items() if kind != "kfac"}
    kf = opts["kfac"]
    old_factors = {n: f.copy() for n, f in kf.factors.items()}
    old_blocks = {n: b.copy() for n, b in kf.blocks.items()}
    consumer = net.layers[i]
    k = consumer.params["W"].shape[1]
    B, s = _candidate(k, 5, shift=depth_supported(net, i))
    rec = insert_layer(net, i, B, s, optimizer=list(opts.values()))
    for kind, before in states.items():
        after = opts[kind].state_dict()
        new_keys = {f"{n}.{p}" for n in rec.added_layers for p in net.layers[net.index_of(n)].param_names}
        assert set(after["shapes"]) == set(before["shapes"]) | new_keys     # grown state for the new layers
        for key, slots in before["state"].items():
            for slot, arr in slots.items():
                assert np.array_equal(after["state"][key][slot], arr), (kind, key, slot)
        for key in new_keys:                                  # zeros, Adam's entries marked grown
            assert after["shapes"][key] == net.named_params()[key].shape
            for slot, arr in after["state"][key].items():
                assert np.all(arr == opts[kind].grown_fill.get(slot, 0)), (kind, key, slot)
    for n, f in old_factors.items():
        if n != consumer.name:
            assert np.array_equal(kf.factors[n].A, f.A) and np.array_equal(kf.factors[n].G, f.G)
    assert all(np.array_equal(kf.blocks[n], b) for n, b in old_blocks.items())
    assert np.array_equal(kf.factors[consumer.name].G, old_factors[consumer.name].G)
    assert consumer.name not in kf.inverses and not any(kf.has_state(n) for n in rec.added_layers)
    # ema = 0: the stored factors are those of the batch at the parameters K-FAC stepped from;
    # recomputed from that batch on that network grown the same way they equal the transformed ones
    insert_layer(at_kfac_step, i, B, s)
    fresh = kfac_factors(at_kfac_step, case.X, case.Y, case.loss)[consumer.name]
    scale = np.abs(fresh.A).max()
    assert_close(kf.factors[consumer.name].A, fresh.A, rtol=1e-10, atol=1e-12 * scale, name="T A T^T")
    assert_close(kf.factors[consumer.name].G, fresh.G, rtol=1e-10, atol=1e-12 * np.abs(fresh.G).max(), name="G")
    for opt in opts.values():                                 # training continues on the grown net
        assert np.isfinite(_step(opt, case))
    assert all(kf.has_state(n) for n in rec.added_layers)


def test_inserted_dense_factors_follow_from_the_consumer():
    # 17-depth.md section 4: at insertion the new Dense sees the consumer's old input (same A)
    # and its output cotangent is B^-T W^T d (G = B^-T W^T G W B^-1)
    case = make_case("mlp_deep", 4)
    net, i = case.net, 2
    old = kfac_factors(net, case.X, case.Y, case.loss)[net.layers[i].name]
    W = net.layers[i].params["W"].copy()
    B, s = _candidate(W.shape[1], 7)
    rec = insert_layer(net, i, B, s)
    new = kfac_factors(net, case.X, case.Y, case.loss)[rec.added_layers[0]]
    assert_close(new.A, old.A, rtol=1e-12, atol=1e-15, name="A of the inserted Dense")
    M = np.linalg.solve(B.T, W.T)                              # B^-T W^T
    assert_close(new.G, M @ old.G @ M.T, rtol=1e-10, atol=1e-14, name="G of the inserted Dense")


def test_kfac_transform_of_a_multichannel_conv_with_a_shift():
    # 17-depth.md section 4: the grow_cases sites have no unpadded conv consumer with C > 1 input
    # channels and a kernel larger than 1x1, where T's shift column (kron(s, 1): each s_c repeated
    # over its kh kw patch entries) and kron(B, I) are both exercised; stride 2 and padding 0 here
    from senn_ref.layers import Conv2D, Dense, Flatten, Tanh
    from senn_ref.losses import mse
    from senn_ref.network import Network
    rng = np.random.default_rng(43)
    net = Network([Conv2D(2, 3, 3, stride=2, padding=0, rng=rng, bias_std=0.5, in_hw=(9, 9)),
                   Tanh((3, 4, 4)),
                   Conv2D(3, 4, 2, stride=2, padding=0, rng=rng, bias_std=0.5, in_hw=(4, 4)),
                   Flatten(in_shape=(4, 2, 2)), Dense(16, 2, rng)])
    X, Y, loss = rng.standard_normal((7, 2, 9, 9)), rng.standard_normal((7, 2)), mse()
    kf = KFAC(0.05, damping=0.1, ema=0.0)
    at_step = net.copy()
    kf.step(net, X, Y, loss)
    B, s = np.eye(3) + 0.4 * rng.standard_normal((3, 3)), rng.standard_normal(3)
    before = net.forward(X).copy()
    name = net.layers[2].name
    insert_layer(net, 2, B, s, optimizer=kf)
    assert np.abs(net.forward(X) - before).max() < 1e-10
    insert_layer(at_step, 2, B, s)
    fresh = kfac_factors(at_step, X, Y, loss)[name]
    assert_close(kf.factors[name].A, fresh.A, rtol=1e-10, atol=1e-12 * np.abs(fresh.A).max(), name="T A T^T")


def test_psi_equals_identity_partials():
    z = np.array([-1e3, -2.0, -0.3, 0.0, 0.7, 5.0, 1e200])
    dv, dc, dl = identity_param_partials(z)
    assert_close(psi(z, ("v", "c", "l")), Q * np.stack([dv, dc, dl], axis=-1), rtol=1e-15, atol=1e-300)


def _big_case(name, k_extra):
    """A case with N K > P of the grown network, so the gains are not trivially zero (damping 0)."""
    c0 = make_case(name, 0)
    N = int(1.3 * (c0.net.num_params() + k_extra) / c0.net.out_shape[0]) + 5
    return make_case(name, 0, N=N)


# (case, consumer index, params): dense consumers, an unpadded 1x1 / first-layer conv with a
# shift, a dense consumer after a Flatten, a padded conv ("all": s is a genuine new direction)
GENERIC = [("mlp_rational", 0, "vc"), ("mlp_softmax", 2, "vcl"), ("mlp_deep", 2, "all"),
           ("conv_gap", 0, "vc"), ("conv_strided", 3, "vc"), ("conv_flatten", 7, "vc"),
           ("conv_flatten", 3, "all")]


@pytest.mark.parametrize("name, i, params", GENERIC)
def test_closed_form_equals_generic(name, i, params):
    case = _big_case(name, 0)
    k = case.net.layers[i].params["W"].shape[1]
    case = _big_case(name, k * k + 4 * k)
    B, s = _candidate(k, 11, shift=depth_supported(case.net, i))
    metric = "true" if case.classification else "euclidean"
    generic = depth_gain_exact(case.net, case.X, case.Y, case.loss, i, B, s, metric=metric, params=params)
    closed = depth_gain_closed(case.net, case.X, case.Y, case.loss, i, B, s, metric=metric, params=params)
    assert generic > 1e-4
    assert_close(closed, generic, rtol=1e-8, name=f"{name} {params}")


@pytest.mark.parametrize("name, i", [("mlp_rational", 2), ("conv_gap", 0)])
def test_closed_form_with_damping_is_the_phi_gain(name, i):
    # damping > 0: the closed form is the Schur gain of the parameterisation Phi (old parameters
    # in the original coordinates, new = v, c of the grown net); brute force from two Jacobians
    case = make_case(name, 1, N=10)
    net, delta = case.net, 0.05
    k = net.layers[i].params["W"].shape[1]
    B, s = _candidate(k, 13)
    J_o = jacobian(net, case.X)
    grown = net.copy()
    rec = insert_layer(grown, i, B, s)
    J_p = jacobian(grown, case.X)[:, :, depth_index(grown, rec, "vc")]
    e = case.loss.output_grad(net.forward(case.X).reshape(len(case.X), -1), case.Y)
    N = len(case.X)

    def eta(J):
        Jf = J.reshape(-1, J.shape[2])
        g = Jf.T @ e.reshape(-1) / N
        return g @ np.linalg.solve(Jf.T @ Jf / N + delta * np.eye(Jf.shape[1]), g)

    brute = eta(np.concatenate([J_o, J_p], axis=2)) - eta(J_o)
    closed = depth_gain_closed(net, case.X, case.Y, case.loss, i, B, s, damping=delta)
    assert brute > 1e-3
    assert_close(closed, brute, rtol=1e-8, name="Phi gain")


@pytest.mark.parametrize("name, i", [("mlp_deep", 2), ("mlp_softmax", 0), ("conv_gap", 0), ("conv_strided", 0)])
def test_lower_bound_below_exact_and_equal_to_its_formula(name, i):
    case = _big_case(name, 0)
    k = case.net.layers[i].params["W"].shape[1]
    case = _big_case(name, k * k + 4 * k)
    shift = depth_supported(case.net, i)
    B, s = _candidate(k, 17, shift=shift, C=2)
    B[0], s[0] = np.eye(k), 0.0                               # the identity candidate
    for delta in (0.0, 0.01):
        ctx = DepthProposals(case.net, case.X, case.Y, case.loss, i, damping=delta)
        lb = ctx.score(B, s).lower_bound
        for c in range(2):
            cf = closed_form_context(case.net, case.X, case.Y, case.loss, i, B[c], s[c], damping=delta)
            r, Bp = cf.residual(), cf.B_p
            formula = r @ np.linalg.lstsq(Bp.T @ Bp + delta * np.eye(r.size), r, rcond=1e-13)[0]
            assert_close(lb[c], formula, rtol=1e-8, name="r^T (F_pp + delta)^+ r")
            phi_vc = depth_gain_closed(case.net, case.X, case.Y, case.loss, i, B[c], s[c], damping=delta)
            assert 0 < lb[c] <= phi_vc * (1 + 1e-10)
            if delta == 0:
                exact = depth_gain_exact(case.net, case.X, case.Y, case.loss, i, B[c], s[c])
                assert lb[c] <= exact * (1 + 1e-10)
                if shift:                                     # same residual and block on the grown net
                    grown = case.net.copy()
                    rec = insert_layer(grown, i, B[c], s[c])
                    generic = gain_lower_bound(grown, case.X, case.Y, case.loss, depth_index(grown, rec, "vc"))
                    assert_close(lb[c], generic, rtol=1e-8, name="gain_lower_bound on the grown net")


@pytest.mark.parametrize("name, i, delta", [("mlp_rational", 0, 0.0), ("mlp_softmax", 2, 0.1),
                                            ("conv_gap", 0, 0.1), ("conv_strided", 3, 0.0),
                                            ("conv_flatten", 3, 0.1)])
def test_lower_bound_gradient_matches_finite_differences(name, i, delta):
    case = make_case(name, 5, N=60 if delta == 0 else 16)
    k = case.net.layers[i].params["W"].shape[1]
    shift = depth_supported(case.net, i)
    B, s = _candidate(k, 19, shift=shift, C=3)
    ctx = DepthProposals(case.net, case.X, case.Y, case.loss, i, damping=delta)
    sc = ctx.score(B, s, grad=True)
    assert sc.grad_B.shape == B.shape and sc.grad_s.shape == s.shape and np.all(sc.lower_bound > 0)
    rng = np.random.default_rng(23)
    dB, ds = rng.standard_normal(B.shape), rng.standard_normal(s.shape) * shift
    h = 1e-4

    def diff(t):
        return (ctx.score(B + t * dB, s + t * ds).lower_bound - ctx.score(B - t * dB, s - t * ds).lower_bound) / (2 * t)

    fd = (4 * diff(h / 2) - diff(h)) / 3
    analytic = np.einsum("cij,cij->c", sc.grad_B, dB) + np.einsum("ci,ci->c", sc.grad_s, ds)
    assert_close(analytic, fd, rtol=1e-6, name="directional derivative")


def test_score_handles_bad_candidates():
    case = make_case("conv_flatten", 0)
    ctx = DepthProposals(case.net, case.X, case.Y, case.loss, 3, damping=0.1)  # padded conv
    C = ctx.k
    B = np.stack([np.eye(C), np.ones((C, C)), np.diag([1.0] + [2 * COND_LIMIT] * (C - 1))])
    sc = ctx.score(B, np.zeros((3, C)), grad=True)
    assert np.isfinite(sc.lower_bound[0]) and np.all(sc.lower_bound[1:] == -np.inf)
    assert np.all(sc.grad_B[1:] == 0) and np.all(sc.grad_s == 0)
    with pytest.raises(ValueError, match="s: must be 0 before a zero-padded"):
        ctx.score(B, np.ones((3, C)))
    with pytest.raises(ValueError, match=r"s: expected shape \(3, 2\)"):
        ctx.score(B, np.zeros((2, C)))
    with pytest.raises(ValueError, match="unknown natural"):
        DepthProposals(case.net, case.X, case.Y, case.loss, 3, natural="kfac")
    with pytest.raises(ValueError, match="position: net.layers"):
        DepthProposals(case.net, case.X, case.Y, case.loss, 1)


def test_cg_residual_matches_exact_and_eta_layer_is_kfac():
    from senn_ref.kfac import kfac_eta
    case = make_case("mlp_deep", 6)
    B, s = _candidate(3, 29, C=2)
    ex = DepthProposals(case.net, case.X, case.Y, case.loss, 2, damping=0.1)
    cg = DepthProposals(case.net, case.X, case.Y, case.loss, 2, damping=0.1, natural="cg")
    assert_close(cg.score(B, s).lower_bound, ex.score(B, s).lower_bound, rtol=1e-7)
    per_layer = kfac_eta(case.net, case.X, case.Y, case.loss, damping=0.1)[1]
    assert ex.eta_layer == per_layer[case.net.layers[2].name] and cg.eta == pytest.approx(ex.eta, rel=1e-7)


def test_preservation_holds_near_the_condition_limit():
    # 17-depth.md section 1: the error grows like eps cond(B); at cond = COND_LIMIT / 10 it is
    # still far below 1e-10 for these O(1) data, and the limit itself is refused just above
    case = make_case("mlp_deep", 8)
    rng = np.random.default_rng(31)
    U, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    V, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    B = U @ np.diag([1.0, 1e-3, 10.0 / COND_LIMIT]) @ V.T
    before = case.net.forward(case.X).copy()
    net = case.net.copy()
    insert_layer(net, 2, B, rng.standard_normal(3))
    assert np.abs(net.forward(case.X) - before).max() < 1e-10
    with pytest.raises(ValueError, match="exceeds COND_LIMIT"):
        insert_layer(case.net, 2, U @ np.diag([1.0, 1e-3, 0.5 / COND_LIMIT]) @ V.T)


def test_search_improves_the_bound_and_its_best_insertion_preserves_the_function():
    # integration with grow/proposals.py: Adam ascent on the analytic gradient keeps each
    # candidate's best, and the identity is candidate 0 of depth_candidates, so the result is at
    # least the best starting candidate's bound and the identity's (certain).  "Improves" is the
    # strict inequality over the best start: it fails only if none of the 8 x 10 ascent steps
    # raised a bound, which first-order Taylor rules out for a small enough step along the
    # non-zero gradient (measured: 1.1e-3 against 2.8e-5 at the best start, identity 2.3e-6)
    from senn_ref.grow.proposals import best_depth_proposal
    case = make_case("mlp_deep", 0, N=60)
    ctx = DepthProposals(case.net, case.X, case.Y, case.loss, 2)
    identity = ctx.score(np.eye(3)[None], np.zeros((1, 3))).lower_bound[0]
    prop = best_depth_proposal(case.net, case.X, case.Y, case.loss, 2, n_candidates=8,
                               rng=np.random.default_rng(0), steps=10)
    assert prop.kind == "depth" and prop.eta_layer == ctx.eta_layer
    assert prop.lower_bound >= identity and prop.lower_bound > prop.initial_best > 0
    assert_close(ctx.score(prop.params["B"][None], prop.params["s"][None]).lower_bound[0], prop.lower_bound,
                 rtol=1e-12, name="reported bound")
    before = case.net.forward(case.X).copy()
    insert_layer(case.net, 2, prop.params["B"], prop.params["s"])
    assert np.abs(case.net.forward(case.X) - before).max() < 1e-10


@pytest.mark.parametrize("name, i", [("mlp_deep", 2), ("mlp_softmax", 0), ("conv_gap", 0)])
def test_consumer_conditioned_bound_lies_between(name, i):
    # 17-depth.md section 6: r^T (F_pp + delta)^+ r <= r^T S_c^+ r <= Delta eta_Phi(v, c); at damping 0
    # the conditioned bound equals gain_lower_bound(condition_on=the consumer) on the grown network
    from senn_ref.grow.width_gain import layer_flat_index
    case = _big_case(name, 0)
    k = case.net.layers[i].params["W"].shape[1]
    case = _big_case(name, k * k + 4 * k)
    B, s = _candidate(k, 37, C=2)
    B[0], s[0] = np.eye(k), 0.0
    for delta in (0.0, 0.01):
        plain = DepthProposals(case.net, case.X, case.Y, case.loss, i, damping=delta).score(B, s).lower_bound
        cond = DepthProposals(case.net, case.X, case.Y, case.loss, i, damping=delta, condition="consumer")
        sc = cond.score(B, s, grad=True)
        for c in range(2):
            phi_vc = depth_gain_closed(case.net, case.X, case.Y, case.loss, i, B[c], s[c], damping=delta)
            assert plain[c] <= sc.lower_bound[c] * (1 + 1e-10) and sc.lower_bound[c] <= phi_vc * (1 + 1e-10)
            if delta == 0:
                grown = case.net.copy()
                rec = insert_layer(grown, i, B[c], s[c])
                generic = gain_lower_bound(grown, case.X, case.Y, case.loss, depth_index(grown, rec, "vc"),
                                           condition_on=layer_flat_index(grown, i + 2))
                # a projection off the consumer's columns: rounding is absolute, ~eps cond * lambda
                lam = ceiling(case.net, case.X, case.Y, case.loss)
                assert_close(sc.lower_bound[c], generic, rtol=1e-8, atol=1e-10 * lam, name="conditioned bound")
        rng = np.random.default_rng(41)
        dB, ds = rng.standard_normal(B.shape), rng.standard_normal(s.shape)
        h = 1e-4

        def diff(t):
            return (cond.score(B + t * dB, s + t * ds).lower_bound
                    - cond.score(B - t * dB, s - t * ds).lower_bound) / (2 * t)

        fd = (4 * diff(h / 2) - diff(h)) / 3
        analytic = np.einsum("cij,cij->c", sc.grad_B, dB) + np.einsum("ci,ci->c", sc.grad_s, ds)
        assert_close(analytic, fd, rtol=1e-6, name="conditioned gradient")
