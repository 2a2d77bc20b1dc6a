"""K-FAC optimiser: Kronecker-factored natural-gradient descent with growth-safe state.

Per step (``derivations/11-kfac.md`` section 8):

1. fresh factors ``A_l, G_l`` (Dense/Conv2D) and per-unit blocks ``B_u`` (Rational) at the
   batch, folded into running averages ``S <- ema S + (1 - ema) S_new`` (the first
   observation of a layer initialises its average);
2. every ``inverse_every`` steps the damped inverses are refreshed:
   ``(A + pi sqrt(d) I)^-1``, ``(G + sqrt(d)/pi I)^-1`` (factored Tikhonov) and
   ``(B_u + d I)^+``;
3. the gradient of the mean loss plus ``weight_decay * theta`` is preconditioned -
   ``[dW | db] -> G_inv [dW | db] A_inv`` (bias folded), ``g_u -> B_u_inv g_u`` - and any
   parameter without a block (none among the current layers) takes the plain gradient;
4. with ``kl_clip = kappa`` the step is scaled by
   ``nu = min(1, sqrt(kappa / (lr^2 direction . grad)))``: ``direction . grad`` is the
   K-FAC estimate of ``direction^T F direction``, so the model's predicted output change
   ``1/2 lr^2 nu^2 direction^T F direction`` stays below ``kappa / 2`` (the trust region of
   Ba, Grosse & Martens 2017; 11-kfac.md section 8);
5. ``theta <- theta - nu * lr * direction`` in place.  ``step`` returns the loss before the
   update.

Growth: :meth:`KFAC.pad_state` pads a layer's factors and inverses; old entries are copied
bit for bit and new rows/columns are zero off the diagonal with the mean of the old
diagonal on it (stored inverses get the matching ``1 / (mean + damping)``, so they stay the
exact inverses of the padded damped factors they were computed from; with ``pi="trace"`` they
are dropped and recomputed at the next step).
Pruning: :meth:`KFAC.shrink_state` keeps the surviving rows/columns bit for bit and recomputes
the stored inverse of every factor that lost rows (18-pruning.md section 6).
Persistence: :meth:`KFAC.state_dict` / :meth:`KFAC.load_state_dict` copy all of the above (and
the Monte-Carlo stream's state), checked before anything is replaced; run checkpoints store them
(``derivations/22-run-checkpoints.md`` section 2, ``tests/test_run_state.py``).
Tests: ``tests/test_kfac_optim.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_flag, check_network, check_positive_int, check_scalar
from ..kfac.columns import check_options, run_columns
from ..kfac.damping import _report_cut, block_inverse, factored_damping, sym_inverse
from ..kfac.factors import KronAccumulator, KroneckerFactors, kfac_layers
from ..kfac.layout import fold, has_bias, unfold
from .state import LearningRate, check_keep_index
from ..kfac.rational_block import RATIONAL_RCOND, RationalAccumulator, unit_gradients
from ..kfac.score import mean_loss_grads


class KFAC(LearningRate):
    """K-FAC optimiser; see the module docstring.

    Parameters
    ----------
    lr : step size > 0;  damping : delta >= 0 (factored Tikhonov; 0 = pseudo-inverses)
    weight_decay : L2 coefficient >= 0 added to the gradient of every parameter
    ema : running-average coefficient in [0, 1)  (0 = use only the current batch)
    inverse_every : refresh the inverses every k >= 1 steps (and whenever missing)
    metric, mode, n_samples, rng : curvature options of :func:`senn_ref.kfac.kfac_factors`
    pi : factored-damping ratio (number or "trace")
    kl_clip : None (off) or kappa > 0, the trust-region bound on lr^2 direction^T F direction

    State: ``factors[name]`` (KroneckerFactors running averages), ``inverses[name]``
    ``(A_inv, G_inv)``, ``blocks[name]`` (units, 3, 3) and ``block_inverses[name]``.
    ``derivations/11-kfac.md`` section 8.
    """

    #: ``step`` takes (net, X, Y, loss); read by :func:`senn_ref.train.fit`
    uses_curvature = True

    def __init__(self, lr, damping, weight_decay=0.0, ema=0.95, inverse_every: int = 1,
                 metric: str = "euclidean", mode: str = "exact", n_samples: int = 1, rng=None,
                 pi=1.0, kl_clip=None) -> None:
        self.lr = lr
        self.damping = check_scalar(damping, "damping", minimum=0.0)
        self.weight_decay = check_scalar(weight_decay, "weight_decay", minimum=0.0)
        self.ema = check_scalar(ema, "ema", minimum=0.0)
        if self.ema >= 1.0:
            raise ValueError(f"ema: must be < 1, got {self.ema}")
        self.inverse_every = check_positive_int(inverse_every, "inverse_every")
        self.n_samples, self.rng = check_options(metric, mode, n_samples, rng)
        self.metric, self.mode = metric, mode
        factored_damping(np.eye(1), np.eye(1), self.damping, pi)    # validates pi
        self.pi = pi
        self.kl_clip = None if kl_clip is None else check_scalar(kl_clip, "kl_clip", minimum=0.0, strict=True)
        self.last_scale = 1.0
        self.t = 0
        self.factors: dict = {}
        self.inverses: dict = {}
        self.blocks: dict = {}
        self.block_inverses: dict = {}

    # ------------------------------------------------------------------ step
    def step(self, net, X, Y, loss) -> float:
        """One K-FAC step on the batch ``X`` (N,) + in_shape, ``Y`` (N, K); updates the network's
        parameters in place and returns the mean loss before the update (11-kfac.md 8)."""
        layers = kfac_layers(check_network(net))
        for la in layers:
            self._check_shape(la, (la.params["W"].shape[0], la.params["W"].size // la.params["W"].shape[0]
                                   + int(has_bias(la))))
        kron, rat = KronAccumulator(), RationalAccumulator()
        record = run_columns(net, X, Y, loss, self.metric, self.mode, self.n_samples, self.rng,
                             [kron, rat])
        for name, B in rat.result.items():
            if name in self.blocks and self.blocks[name].shape != B.B.shape:
                raise ValueError(f"K-FAC state of {name!r} has {self.blocks[name].shape[0]} units but the "
                                 f"layer has {B.B.shape[0]}; call pad_state({name!r}, ...) after growing it")
        grads = mean_loss_grads(net, record)
        params = net.named_params()
        if self.weight_decay:
            grads = {k: g + self.weight_decay * params[k] for k, g in grads.items()}
        refresh = self.t % self.inverse_every == 0
        # everything new is computed into locals first and committed only once the update
        # is known to be finite, so a failing step leaves the optimiser and the net unchanged
        factors, inverses, blocks, block_inverses = {}, {}, {}, {}
        for name, f in kron.result.items():
            if name in self.factors:
                new = self.factors[name].copy()
                new.A = self.ema * new.A + (1.0 - self.ema) * f.A
                new.G = self.ema * new.G + (1.0 - self.ema) * f.G
            else:
                new = f.copy()
            factors[name] = new
            if refresh or name not in self.inverses:
                A_d, G_d = factored_damping(new.A, new.G, self.damping, self.pi)
                inverses[name] = (sym_inverse(A_d, f"{name} A (damped)", report_cut=True),
                                  sym_inverse(G_d, f"{name} G (damped)", report_cut=True))
            else:
                inverses[name] = self.inverses[name]
        for name, b in rat.result.items():
            blocks[name] = (self.ema * self.blocks[name] + (1.0 - self.ema) * b.B
                            if name in self.blocks else b.B.copy())
            if refresh or name not in self.block_inverses:
                block_inverses[name] = block_inverse(blocks[name], self.damping, RATIONAL_RCOND, report_cut=True)
            else:
                block_inverses[name] = self.block_inverses[name]
        direction = dict(grads)
        for la in layers:
            A_inv, G_inv = inverses[la.name]
            bias = has_bias(la)
            V = fold(grads[f"{la.name}.W"], grads[f"{la.name}.b"] if bias else None)
            dW, db = unfold(G_inv @ V @ A_inv, la.params["W"].shape, bias)
            direction[f"{la.name}.W"] = dW
            if bias:
                direction[f"{la.name}.b"] = db
        for la in net.layers:
            if la.name in rat.result:
                g = unit_gradients(la, {k: grads[f"{la.name}.{k}"] for k in la.param_names})
                x = np.einsum("upq,uq->up", block_inverses[la.name], g)
                for j, k in enumerate(la.param_names):
                    direction[f"{la.name}.{k}"] = x[:, j]
        nu = 1.0
        if self.kl_clip is not None:
            quad = sum(float(np.vdot(direction[k], grads[k])) for k in params)
            if quad > 0:
                nu = min(1.0, float(np.sqrt(self.kl_clip / (self.lr ** 2 * quad))))
        bad = [k for k in params if not np.all(np.isfinite(direction[k]))]
        if bad:
            raise FloatingPointError(f"K-FAC direction is not finite for {bad}; nothing was updated "
                                     f"(increase the damping)")
        self.factors.update(factors)
        self.inverses.update(inverses)
        self.blocks.update(blocks)
        self.block_inverses.update(block_inverses)
        self.last_scale = nu
        for k, p in params.items():
            p -= (nu * self.lr) * direction[k]
        self.t += 1
        return record.value

    def _check_shape(self, layer, dims) -> None:
        f = self.factors.get(layer.name)
        if f is not None and (f.G.shape[0], f.A.shape[0]) != dims:
            raise ValueError(f"K-FAC state of {layer.name!r} has factors G {f.G.shape}, A {f.A.shape} but "
                             f"the layer needs {dims[0]} x {dims[1]}; call pad_state({layer.name!r}, ...) "
                             f"after growing it")

    # ---------------------------------------------------------------- growth
    def has_state(self, name: str) -> bool:
        return name in self.factors or name in self.blocks

    def pad_state(self, name: str, n_out: int | None = None, n_in: int | None = None,
                  out_index=None, in_index=None) -> bool:
        """Grow the state of layer ``name`` after its output (``n_out``) and/or input (``n_in``)
        dimension grew.

        ``out_index`` / ``in_index``: integer arrays (length old size) giving the positions of
        the old units / inputs in the new layer (default: ``arange(old)``, new ones appended).
        For a Conv2D ``n_in`` counts unfolded patch coordinates ``C*kh*kw``; for a Rational
        layer ``n_out`` is the new number of units (``n_in`` must be None).  The folded bias
        coordinate of ``A`` stays last.  Old entries are copied bit for bit; new rows/columns
        are zero off the diagonal, with the mean of the old diagonal (A: over its non-bias
        coordinates; rational blocks: entrywise mean of the old blocks' diagonals) on it.
        Returns False (doing nothing) when the layer has no state yet.  11-kfac.md section 8.
        """
        if name in self.blocks:
            if n_in is not None:
                raise ValueError(f"pad_state({name!r}): a Rational layer has no input dimension")
            return self._pad_blocks(name, n_out, out_index)
        if name not in self.factors:
            return False
        f = self.factors[name]
        stored = self.inverses.get(name)         # None after a trace-pi pad or before any refresh
        # the diagonal shifts of factored damping (pi = 1 for "trace"; those inverses are
        # dropped below and recomputed at the next step, since the trace pi changes)
        A_d, G_d = factored_damping(np.zeros((1, 1)), np.zeros((1, 1)), self.damping,
                                    1.0 if isinstance(self.pi, str) else self.pi)
        cA, cG = A_d[0, 0], G_d[0, 0]
        n_out_old = f.G.shape[0]
        n_in_old = f.A.shape[0] - int(f.with_bias)
        G_idx = _index(out_index, n_out_old, n_out, "out_index", name)
        A_idx = _index(in_index, n_in_old, n_in, "in_index", name)
        if f.with_bias:
            A_idx = (np.append(A_idx[0], A_idx[1]), A_idx[1] + 1)
        mG = float(np.mean(np.diag(f.G)))
        mA = float(np.mean(np.diag(f.A)[:n_in_old]))
        f.A, f.G = _pad(f.A, A_idx, mA), _pad(f.G, G_idx, mG)
        if stored is None or isinstance(self.pi, str):
            self.inverses.pop(name, None)            # recomputed from the padded factors at the next step
        else:
            A_inv, G_inv = stored
            self.inverses[name] = (_pad(A_inv, A_idx, _fresh_reciprocal(mA + cA, A_idx, f"{name} A (damped)")),
                                   _pad(G_inv, G_idx, _fresh_reciprocal(mG + cG, G_idx, f"{name} G (damped)")))
        return True

    def _pad_blocks(self, name, n_out, out_index) -> bool:
        B = self.blocks[name]
        idx, n_new = _index(out_index, B.shape[0], n_out, "out_index", name)
        m = np.mean(np.diagonal(B, axis1=1, axis2=2), axis=0)          # (3,)
        newB = np.zeros((n_new,) + B.shape[1:])
        newB[:] = np.diag(m)
        newB[idx] = B
        Binv = self.block_inverses[name]
        newBinv = np.empty_like(newB)
        newBinv[:] = block_inverse(np.diag(m)[None], self.damping, RATIONAL_RCOND, report_cut=True)[0]
        newBinv[idx] = Binv
        self.blocks[name], self.block_inverses[name] = newB, newBinv
        return True

    def shrink_state(self, name: str, out_keep=None, in_keep=None) -> bool:
        """Shrink the state of layer ``name`` after pruning some of its outputs and/or inputs.

        ``out_keep`` / ``in_keep``: 1-d integer arrays of the kept output units / input
        coordinates (distinct, in range, in their new order), None = all kept.  For a Conv2D
        the inputs are the unfolded patch coordinates ``c*kh*kw + i*kw + j``; the folded bias
        coordinate of ``A`` is always kept and stays last.  For a Rational layer ``out_keep``
        lists the kept units (``in_keep`` must be None).  Kept entries of ``A``, ``G`` and the
        per-unit blocks and their inverses are copied bit for bit.  A principal submatrix of
        ``(A + c I)^-1`` is not the inverse of the submatrix, so a factor that lost rows gets its
        stored damped inverse *recomputed* from the shrunk factor (as a refresh would; both when
        ``pi="trace"``, whose pi depends on both factors); an untouched factor keeps its inverse
        bit for bit, and a call that removes nothing (``None`` or every index in place) leaves
        the whole state as it was, whatever ``pi``.  A recomputed inverse that needs the
        pseudo-inverse warns as in :meth:`step` (``CurvatureWarning`` "pseudo-inverse",
        ``derivations/22-run-checkpoints.md`` section 5).  Everything is checked first.  Returns
        False when the layer has no state.
        ``derivations/18-pruning.md`` section 6; ``tests/test_pruning.py``.
        """
        if name in self.blocks:
            if in_keep is not None:
                raise ValueError(f"shrink_state({name!r}) in_keep: a Rational layer has no input dimension "
                                 f"(pass None)")
            (keep,) = check_keep_index(out_keep, self.blocks[name].shape[:1], f"shrink_state({name!r}) out_keep")
            if keep is not None and keep.size == 0:
                raise ValueError(f"shrink_state({name!r}) out_keep: at least one unit must remain")
            if keep is not None:
                self.blocks[name] = self.blocks[name][keep]
                self.block_inverses[name] = self.block_inverses[name][keep]
            return True
        if name not in self.factors:
            return False
        f = self.factors[name]
        n_in = f.A.shape[0] - int(f.with_bias)
        (g_keep,) = check_keep_index(out_keep, (f.G.shape[0],), f"shrink_state({name!r}) out_keep")
        (a_keep,) = check_keep_index(in_keep, (n_in,), f"shrink_state({name!r}) in_keep")
        for keep, arg in ((g_keep, "out_keep"), (a_keep, "in_keep")):
            if keep is not None and keep.size == 0:
                raise ValueError(f"shrink_state({name!r}) {arg}: at least one entry must remain")
        if g_keep is not None and np.array_equal(g_keep, np.arange(f.G.shape[0])):
            g_keep = None                       # everything kept in place: the factor is untouched
        if a_keep is not None and np.array_equal(a_keep, np.arange(n_in)):
            a_keep = None
        if a_keep is None and g_keep is None:
            return True                         # nothing removed: state (and inverses) untouched
        if a_keep is not None and f.with_bias:
            a_keep = np.append(a_keep, n_in)
        A = f.A if a_keep is None else f.A[np.ix_(a_keep, a_keep)]
        G = f.G if g_keep is None else f.G[np.ix_(g_keep, g_keep)]
        stored = self.inverses.get(name)
        if stored is not None:
            A_d, G_d = factored_damping(A, G, self.damping, self.pi)
            trace = isinstance(self.pi, str)
            # as the step's refresh: a pseudo-inverted damped factor is a reported fallback
            A_inv = (sym_inverse(A_d, f"{name} A (damped)", report_cut=True)
                     if (a_keep is not None or trace) else stored[0])
            G_inv = (sym_inverse(G_d, f"{name} G (damped)", report_cut=True)
                     if (g_keep is not None or trace) else stored[1])
            self.inverses[name] = (A_inv, G_inv)
        f.A, f.G = A, G
        return True

    def drop_state(self, name: str) -> bool:
        """Forget everything about layer ``name``; returns whether there was any state."""
        had = self.has_state(name)
        for d in (self.factors, self.inverses, self.blocks, self.block_inverses):
            d.pop(name, None)
        return had

    # ----------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Copies of everything a K-FAC step reads besides the hyperparameters:
        ``{"optimizer": "KFAC", "t", "last_scale", "factors": {name: {"A", "G", "with_bias",
        "n_locations"}}, "inverses": {name: (A_inv, G_inv)}, "blocks": {name: (units, 3, 3)},
        "block_inverses": {name: (units, 3, 3)}, "rng": bit-generator state or None}``.
        Dicts keep their order.  ``derivations/22-run-checkpoints.md`` section 2."""
        return {"optimizer": "KFAC", "t": int(self.t), "last_scale": float(self.last_scale),
                "factors": {k: {"A": f.A.copy(), "G": f.G.copy(), "with_bias": bool(f.with_bias),
                                "n_locations": int(f.n_locations)} for k, f in self.factors.items()},
                "inverses": {k: (a.copy(), g.copy()) for k, (a, g) in self.inverses.items()},
                "blocks": {k: b.copy() for k, b in self.blocks.items()},
                "block_inverses": {k: b.copy() for k, b in self.block_inverses.items()},
                "rng": None if self.rng is None else self.rng.bit_generator.state}

    def load_state_dict(self, d) -> None:
        """Replace the state by copies of ``d`` (from :meth:`state_dict`) after checking all of it:
        keys, square float64 finite factors, inverses shaped like their factors, blocks and
        block inverses (units, 3, 3) with the same layers.  Nothing changes on an error
        (ValueError/TypeError naming the entry).  Hyperparameters are kept.
        ``derivations/22-run-checkpoints.md`` section 2."""
        keys = {"optimizer", "t", "last_scale", "factors", "inverses", "blocks", "block_inverses", "rng"}
        if not isinstance(d, dict) or set(d) != keys:
            raise ValueError(f"load_state_dict: expected a dict with keys {sorted(keys)}")
        if d["optimizer"] != "KFAC":
            raise ValueError(f"load_state_dict: state of a {d['optimizer']} optimiser, this is KFAC")
        t = check_positive_int(d["t"], "load_state_dict: t", minimum=0)
        last_scale = check_scalar(d["last_scale"], "load_state_dict: last_scale", minimum=0.0)
        factors, inverses = {}, {}
        for name, f in _entries(d["factors"], "factors"):
            if not isinstance(f, dict) or set(f) != {"A", "G", "with_bias", "n_locations"}:
                raise ValueError(f"load_state_dict: factors[{name!r}] needs A, G, with_bias, n_locations")
            A, G = _square(f["A"], f"factors[{name!r}].A"), _square(f["G"], f"factors[{name!r}].G")
            check_flag(f["with_bias"], f"load_state_dict: factors[{name!r}].with_bias")
            n_loc = check_positive_int(f["n_locations"], f"load_state_dict: factors[{name!r}].n_locations")
            factors[name] = KroneckerFactors(A, G, bool(f["with_bias"]), n_loc)
        for name, pair in _entries(d["inverses"], "inverses"):
            if name not in factors or not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"load_state_dict: inverses[{name!r}] must be a pair for a layer with factors")
            A_inv = _square(pair[0], f"inverses[{name!r}][0]", factors[name].A.shape[0])
            G_inv = _square(pair[1], f"inverses[{name!r}][1]", factors[name].G.shape[0])
            inverses[name] = (A_inv, G_inv)
        blocks = {name: _unit_blocks(b, f"blocks[{name!r}]") for name, b in _entries(d["blocks"], "blocks")}
        block_inverses = {}
        for name, b in _entries(d["block_inverses"], "block_inverses"):
            if name not in blocks:
                raise ValueError(f"load_state_dict: block_inverses[{name!r}] has no blocks")
            block_inverses[name] = _unit_blocks(b, f"block_inverses[{name!r}]", blocks[name].shape[0])
        if set(block_inverses) != set(blocks):
            raise ValueError("load_state_dict: blocks and block_inverses name different layers")
        rng_state = d["rng"]
        if (rng_state is None) != (self.rng is None):
            raise ValueError(f"load_state_dict: rng state {'missing' if rng_state is None else 'given'} "
                             f"but this optimiser {'has' if self.rng is not None else 'has no'} rng (mode {self.mode!r})")
        if rng_state is not None:
            probe = type(self.rng.bit_generator)()
            try:
                probe.state = rng_state
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"load_state_dict: rng: not a {type(probe).__name__} state ({exc})") from exc
            self.rng.bit_generator.state = rng_state
        self.t, self.last_scale = t, last_scale
        self.factors, self.inverses, self.blocks, self.block_inverses = factors, inverses, blocks, block_inverses

    def __repr__(self) -> str:
        return (f"KFAC(lr={self.lr}, damping={self.damping}, weight_decay={self.weight_decay}, "
                f"ema={self.ema}, inverse_every={self.inverse_every}, metric={self.metric!r}, "
                f"mode={self.mode!r}, kl_clip={self.kl_clip})")


def _index(index, n_old: int, n_new, what: str, name: str):
    """Validated ``(old positions in the new dimension, new size)``."""
    n_new = n_old if n_new is None else check_positive_int(n_new, f"pad_state({name!r}) new size")
    if n_new < n_old:
        raise ValueError(f"pad_state({name!r}): new size {n_new} is smaller than the old size {n_old}")
    idx = np.arange(n_old) if index is None else np.asarray(index)
    if idx.dtype.kind not in "iu" or idx.shape != (n_old,):
        raise ValueError(f"pad_state({name!r}): {what} must be {n_old} integers, got {index!r}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_new or np.unique(idx).size != n_old):
        raise ValueError(f"pad_state({name!r}): {what} must be distinct positions in 0..{n_new - 1}")
    return idx.astype(np.int64), n_new


def _fresh_reciprocal(d: float, idx, name: str) -> float:
    """The stored inverse's diagonal for new rows whose damped factor diagonal is ``d``: ``1/d``,
    or 0 when ``d <= 0`` (zero damping and an all-zero factor diagonal) - the pseudo-inverse
    fallback, reported like :meth:`KFAC.step`'s (``CurvatureWarning`` "pseudo-inverse";
    derivations/22-run-checkpoints.md section 5)."""
    if d > 0:
        return 1.0 / d
    old, n = idx
    _report_cut(n - len(old), n, name)
    return 0.0


def _pad(M, idx, fill: float) -> np.ndarray:
    """New (n, n) matrix: ``new[ix_(old, old)] = M``, other entries 0, new diagonal ``fill``."""
    old, n = idx
    new = np.zeros((n, n))
    fresh = np.setdiff1d(np.arange(n), old)
    new[fresh, fresh] = fill
    new[np.ix_(old, old)] = M
    return new


def _entries(d, what: str):
    if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
        raise ValueError(f"load_state_dict: {what} must be a dict keyed by layer name")
    return list(d.items())


def _square(a, what: str, n: int | None = None) -> np.ndarray:
    """A float64 finite (n, n) copy of ``a`` (any n when None), else an error naming ``what``."""
    a = np.asarray(a)
    if a.dtype != np.float64 or a.ndim != 2 or a.shape[0] != a.shape[1] or (n is not None and a.shape[0] != n):
        raise ValueError(f"load_state_dict: {what} must be a float64 ({n if n is not None else 'n'}, "
                         f"{n if n is not None else 'n'}) matrix, got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"load_state_dict: {what} contains NaN or infinite values")
    return a.copy()


def _unit_blocks(a, what: str, units: int | None = None) -> np.ndarray:
    """A float64 finite (units, 3, 3) copy of ``a``, else an error naming ``what``."""
    a = np.asarray(a)
    if a.dtype != np.float64 or a.ndim != 3 or a.shape[1:] != (3, 3) or (units is not None and a.shape[0] != units):
        raise ValueError(f"load_state_dict: {what} must be float64 (units, 3, 3), got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"load_state_dict: {what} contains NaN or infinite values")
    return a.copy()
