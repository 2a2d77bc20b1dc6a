"""Claims 6, 10 and 11: growth operations preserve the function, pruning scores equal their
definitions, optimiser and curvature state of surviving units is unchanged by growth.

Claim 6 (senn-math 11.6): ``add_neurons`` (random units on random MLPs and a small convnet),
``insert_layer`` (random well-conditioned B and shift before a random Dense or Conv2D) and
``prune_neurons`` of units whose outgoing weights were zeroed change no output by more than
1e-10 (absolute).  Claim 10 (11.10): ``pruning_scores`` (freeze score, removal cost, saliency;
incoming "free" and "fixed") and ``obs_compensation`` equal brute force on the dense damped GGN
(relative to eta, 1e-8).  Claim 11 (11.11): after training steps with SGD (momentum), Adam
and K-FAC, ``add_neurons``, ``prune_neurons`` and ``insert_layer`` with the optimiser leave every
surviving state entry (slots, K-FAC factors of surviving rows and columns) bit for bit equal
and give new entries fresh (zero) slots: the worst absolute difference must be exactly 0.
``derivations/14-growth-operations.md`` sections 3-4, ``17-depth.md`` sections 2 and 4,
``18-pruning.md`` sections 1-6.
"""
from __future__ import annotations

from importlib import import_module

import numpy as np

from .. import fisher, score
from ..grow import pruning
from ..grow.structure import hidden_path
from .cases import random_damping, random_invertible, random_problem
from .report import Outcome

add_mod = import_module("senn_ref.grow.add_neurons")        # the package re-exports the function
ins_mod = import_module("senn_ref.grow.insert_layer")
prune_mod = import_module("senn_ref.grow.prune_neurons")

PRESERVE_TOL, SCORE_TOL = 1e-10, 1e-8


def _new_units(rng, net, h: int, k: int):
    W = net.layers[h].params["W"]
    return rng.standard_normal((k,) + W.shape[1:]) / np.sqrt(W[0].size), rng.standard_normal(k)


def _convnet(rng):
    from ..architectures import convnet
    return convnet(image_size=6, channels=(2, 3), n_classes=2, seed=int(rng.integers(2 ** 31)),
                   pool=("avg", "max")[int(rng.integers(2))])


def claim_preservation(rng, trials: int) -> Outcome:
    """Claim 6 (module docstring): max |f_after(X) - f_before(X)| per operation (X (N,) + in_shape).
    ``derivations/14-growth-operations.md`` section 3, ``17-depth.md`` section 2."""
    out = Outcome(trials)
    widen, deepen, prune = [], [], []
    for _ in range(trials):
        for net, X in ((random_problem(rng).net, None), (_convnet(rng), rng.standard_normal((3, 1, 6, 6)))):
            X = rng.standard_normal((5,) + net.in_shape) if X is None else X
            hidden = [i for i, la in enumerate(net.layers) if "W" in la.params][:-1]
            h = hidden[int(rng.integers(len(hidden)))]
            y0 = net.forward(X)
            W, b = _new_units(rng, net, h, int(rng.integers(1, 4)))
            add_mod.add_neurons(net, h, W, b, None, rng=rng)
            widen.append(np.abs(net.forward(X) - y0).max())
            pos = [i for i, la in enumerate(net.layers) if "W" in la.params]
            i = pos[int(rng.integers(len(pos)))]
            k = net.layers[i].params["W"].shape[1]
            s = rng.standard_normal(k) if ins_mod.depth_supported(net, i) else None
            ins_mod.insert_layer(net, i, random_invertible(rng, k), s)
            deepen.append(np.abs(net.forward(X) - y0).max())
            hidden = [i for i, la in enumerate(net.layers) if "W" in la.params][:-1]
            hidden = [i for i in hidden if hidden_path(net, i).units > 1]       # one unit must remain
            if not hidden:
                continue
            h = hidden[int(rng.integers(len(hidden)))]
            path = hidden_path(net, h)
            units = np.sort(rng.choice(path.units, size=int(rng.integers(1, path.units)), replace=False))
            idx = pruning.outgoing_index(net, path, units)
            theta = net.get_flat()
            theta[idx] = 0.0
            net.set_flat(theta)
            y1 = net.forward(X)
            prune_mod.prune_neurons(net, h, units)
            prune.append(np.abs(net.forward(X) - y1).max())
    out.add("add_neurons: max |output change|", widen, PRESERVE_TOL)
    out.add("insert_layer: max |output change|", deepen, PRESERVE_TOL)
    out.add("prune_neurons (zero outgoing weights): max |output change|", prune, PRESERVE_TOL)
    return out


def _brute_force(F, g, c, t):
    """(freeze, removal, saliency, OBS d) from the definitions on the dense damped F:
    eta - g_r^T F_rr^+ g_r;  2 [min_{u_c = -t} m(u) - min m],  m(u) = g.u + u F u / 2;
    min {d F d : d_c = -t} with its minimiser d_r = F_rr^+ F_rc t (Schur complement)."""
    pinv = np.linalg.pinv
    r = np.setdiff1d(np.arange(g.size), c)
    eta = g @ pinv(F) @ g
    Frr = pinv(F[np.ix_(r, r)])
    hvec = g[r] - F[np.ix_(r, c)] @ t
    m_c = -g[c] @ t + 0.5 * t @ F[np.ix_(c, c)] @ t - 0.5 * hvec @ Frr @ hvec
    d = np.zeros(g.size)
    d[c] = -t
    d[r] = Frr @ F[np.ix_(r, c)] @ t
    return eta - g[r] @ Frr @ g[r], 2 * m_c + eta, d @ F @ d, d


def claim_pruning_scores(rng, trials: int) -> Outcome:
    """Claim 10 (module docstring): |score - brute force| / eta, every unit and one pair.
    ``derivations/18-pruning.md`` sections 2-4."""
    out = Outcome(trials)
    errs, obs = [], []
    for _ in range(trials):
        pb = random_problem(rng, N=int(rng.integers(4, 16)), metric="euclidean")
        while max(hidden_path(pb.net, i).units for i in pb.hidden) < 2:       # one unit must remain
            pb = random_problem(rng, N=pb.X.shape[0], metric="euclidean")
        net = pb.net
        wide = [i for i in pb.hidden if hidden_path(net, i).units > 1]
        h = wide[int(rng.integers(len(wide)))]
        path = hidden_path(net, h)
        d = random_damping(rng, 0.0)     # delta > 0: at delta = 0 the brute force's pinv cut-offs are not ours
        F = fisher.exact(net, pb.X, pb.loss, metric="euclidean", Y=pb.Y) + d * np.eye(net.num_params())
        _, g = score.mean_loss_grad(net, pb.X, pb.Y, pb.loss)
        theta = net.get_flat()
        groups = [[u] for u in range(path.units)] + ([[0, path.units - 1]] if path.units > 1 else [])
        for incoming in ("free", "fixed"):
            s = pruning.pruning_scores(net, pb.X, pb.Y, pb.loss, h, damping=d, groups=groups, incoming=incoming)
            for j, grp in enumerate(groups):
                o = pruning.outgoing_index(net, path, grp)
                c = o if incoming == "free" else np.concatenate([o, pruning.incoming_index(net, path, grp)])
                t = np.concatenate([theta[o], np.zeros(c.size - o.size)])
                bf = _brute_force(F, g, c, t)
                scale = max(s.eta, 1e-300)
                errs += [abs(s.freeze[j] - bf[0]) / scale, abs(s.removal[j] - bf[1]) / scale,
                         abs(s.saliency[j] - bf[2]) / scale]
        u = [int(rng.integers(path.units))]
        dd = pruning.obs_compensation(net, pb.X, pb.Y, pb.loss, h, u, damping=d)
        o = pruning.outgoing_index(net, path, u)
        c = np.concatenate([o, pruning.incoming_index(net, path, u)])
        bf = _brute_force(F, g, c, np.concatenate([theta[o], np.zeros(c.size - o.size)]))
        scale = max(bf[2], 1e-300)
        obs.append(abs(dd @ F @ dd - bf[2]) / scale)             # the objective (unique even if d is not)
        obs.append(np.abs(dd[c] - bf[3][c]).max() / max(np.abs(bf[3][c]).max(), 1e-300))
    out.add("freeze, removal, saliency vs brute force, / eta", errs, SCORE_TOL)
    out.add("OBS step: objective and constrained entries vs brute force (relative)", obs, SCORE_TOL)
    return out


def _flat_state(opt, net) -> dict:
    """Slot -> the optimiser's state in the network's flat order (absent keys: zeros)."""
    sd = opt.state_dict()["state"]
    out = {}
    for slot in opt.slots:
        parts = [np.asarray(sd[k][slot], dtype=np.float64).ravel() if k in sd and slot in sd[k]
                 else np.zeros(p.size) for k, p in net.named_params().items()]
        out[slot] = np.concatenate(parts)
    return out


def _train(opt, net, X, Y, loss, steps: int = 2):
    for _ in range(steps):
        if getattr(opt, "uses_curvature", False):
            opt.step(net, X, Y, loss)
        else:
            _, gr = net.loss_and_grad(X, Y, loss)
            opt.step(net.named_params(), gr.grads)


def _first_order_diff(opt, before, net, rec) -> float:
    """Worst change of surviving slot entries and worst deviation of new entries from what growth
    gives them (0; Adam's ``grown`` flag 1: ``derivations/08-optimisers.md`` section 4.1)."""
    after = _flat_state(opt, net)
    worst = 0.0
    keep = rec.old_to_new >= 0
    for slot, old in before.items():
        new = after[slot]
        worst = max(worst, float(np.abs(new[rec.old_to_new[keep]] - old[keep]).max(initial=0.0)),
                    float(np.abs(new[rec.new_index] - opt.grown_fill.get(slot, 0)).max(initial=0.0)))
    return worst


def _kfac_diff(opt, before: dict, net, h: int, units_old: int) -> float:
    """Surviving rows/columns of every K-FAC factor after adding units to producer ``h``."""
    path = hidden_path(net, h)
    prod, cons = net.layers[path.producer].name, net.layers[path.consumer].name
    new_cols = path.consumer_columns(np.arange(units_old, path.units))
    n_in = net.layers[path.consumer].params["W"].shape[1]
    old_pos = np.append(np.setdiff1d(np.arange(n_in), new_cols), n_in)        # bias last
    worst = 0.0
    for name, (A, G) in before.items():
        f = opt.factors[name]
        if name == prod:
            pairs = ((f.A, A), (f.G[:units_old, :units_old], G))
        elif name == cons:
            pairs = ((f.A[np.ix_(old_pos, old_pos)], A), (f.G, G))
        else:
            pairs = ((f.A, A), (f.G, G))
        worst = max([worst] + [float(np.abs(x - y).max()) for x, y in pairs])
    return worst


def claim_growth_state(rng, trials: int) -> Outcome:
    """Claim 11 (module docstring): worst absolute change of surviving state (must be 0).
    ``derivations/14-growth-operations.md`` section 4, ``18-pruning.md`` section 6."""
    from ..optim import KFAC, SGD, Adam
    out = Outcome(trials)
    first, kfac_w, other = [], [], []
    for _ in range(trials):
        pb = random_problem(rng, classification=False, metric="euclidean")
        h = pb.hidden[int(rng.integers(len(pb.hidden)))]
        for make in (lambda: SGD(0.05, momentum=0.9), lambda: Adam(0.01)):
            net, opt = pb.net.copy(), make()
            _train(opt, net, pb.X, pb.Y, pb.loss)
            before = _flat_state(opt, net)
            rec = add_mod.add_neurons(net, h, *_new_units(rng, net, h, int(rng.integers(1, 3))), None,
                                      optimizer=opt, rng=rng)
            first.append(_first_order_diff(opt, before, net, rec))
            _train(opt, net, pb.X, pb.Y, pb.loss, 1)
            before = _flat_state(opt, net)
            units = hidden_path(net, h).units                                 # >= 2 after add_neurons
            rec = prune_mod.prune_neurons(net, h, [int(rng.integers(units))], optimizer=opt)
            other.append(_first_order_diff(opt, before, net, rec))
            pos = [i for i, la in enumerate(net.layers) if "W" in la.params]
            i = pos[int(rng.integers(len(pos)))]
            before = _flat_state(opt, net)
            k = net.layers[i].params["W"].shape[1]
            rec = ins_mod.insert_layer(net, i, random_invertible(rng, k), None, optimizer=opt)
            other.append(_first_order_diff(opt, before, net, rec))
        net, opt = pb.net.copy(), KFAC(lr=0.05, damping=0.1, ema=0.9)
        _train(opt, net, pb.X, pb.Y, pb.loss)
        before = {k: (f.A.copy(), f.G.copy()) for k, f in opt.factors.items()}
        units_old = hidden_path(net, h).units
        add_mod.add_neurons(net, h, *_new_units(rng, net, h, int(rng.integers(1, 3))), None,
                            optimizer=opt, rng=rng)
        kfac_w.append(_kfac_diff(opt, before, net, h, units_old))
    out.add("add_neurons: SGD/Adam surviving slots changed, new slots not fresh (abs)", first, 0.0)
    out.add("prune_neurons / insert_layer: SGD/Adam surviving slots changed (abs)", other, 0.0)
    out.add("add_neurons: K-FAC factors of surviving rows/columns changed (abs)", kfac_w, 0.0)
    return out
