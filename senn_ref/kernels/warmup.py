"""Compile (or load from Numba's on-disk cache) the kernels a run will use, before it starts.

``warm(parts=None)`` runs the code that calls the Numba kernels - rational and tanh MLPs
(layer-wise passes, NGD-CG steps that take the compiled whole-network path of
:mod:`senn_ref.network_plan`, and the compiled proposal search of
:mod:`senn_ref.grow.compiled_search`), a rational conv net with max and average pooling, the
candidate-path helpers' raw ``unfold``/``fold`` - once on a few tiny inputs, with the
``"numba"`` backend, through forward, backward and forward-mode passes.  The arguments therefore have the
types the real passes give the kernels (C-contiguous float64 arrays, int64 geometry, a float
``eps``, a bool flag), and every kernel ends up with the one specialisation a run needs:
afterwards a training step compiles nothing (checked in ``tests/test_coldstart.py``).

Why it exists: Numba compiles a kernel the first time it is called with new argument types
and keeps the machine code in its cache (``__pycache__`` beside the kernel's source, or
``NUMBA_CACHE_DIR``).  After a fresh install the cache is empty, and the first training step
of the regression demo waited 18 s on a loaded 2-core machine (load 5-9) for its 14 kernels
(the rational activation and the compiled whole-network passes); a conv net waits for the
unfold and pooling kernels as well.
``senn-ref warmup`` moves that wait to install time (the README's first command and the CI
script call it); it does not make it shorter.  The measurements of this and the other options
tried (compiling less, explicit signatures, ahead-of-time compilation, the NumPy backend) are
printed by ``senn-ref bench coldstart`` (:mod:`senn_ref.bench.coldstart`); the table is in
the README's benchmarks section.
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend as _backend
from .._validate import check_option
from . import dispatch

#: what can be warmed: ``"dense"`` (MLPs: the rational kernels, the compiled whole-network
#: passes and the compiled proposal search) and ``"conv"`` (unfold, fold, pooling and the conv-shaped rational kernels)
PARTS = ("dense", "conv")


def _dense(rng) -> None:
    """Rational and tanh MLPs: the layer-wise passes (``rational_numba``), then NGD-CG steps
    with an MSE and a cross-entropy loss, which take the compiled whole-network path of
    :mod:`senn_ref.network_plan` (``sequential_numba``: forward, loss and gradient, GGN
    products) at these small sizes, the compiled proposal search on their hidden layer
    (``search_numba``), and the tanh MLP's loss and gradient by :mod:`senn_ref.buffered_pass`
    (``buffered_numba``), the path larger batches take; the NGD-CG steps' solves are the
    compiled CG loop (``cg_numba``)."""
    from .. import buffered_pass, losses
    from ..architectures import mlp
    from ..network_plan import layerwise
    from ..optim import NaturalGradientCG
    X = rng.standard_normal((5, 3))
    targets = ((losses.mse(), rng.standard_normal((5, 2))), (losses.softmax_cross_entropy(), np.array([0, 1, 1, 0, 1])))
    for activation in ("rational", "tanh"):
        net = mlp([3, 4, 2], activation=activation, seed=0)
        with layerwise():
            _passes(net, X, rng)
        for loss, Y in targets:
            NaturalGradientCG().step(net, X, Y, loss)
            if activation == "tanh":           # above the compiled path's limits: buffered_numba
                buffered_pass.loss_and_grad(net, X, Y, loss)
        _width_search(net, X, targets[0][1], targets[0][0], rng)


def _width_search(net, X, Y, loss, rng) -> None:
    """The compiled proposal search of :mod:`senn_ref.grow.compiled_search`
    (``search_numba.width_search_numba``) on the hidden layer of a small MLP."""
    from ..grow.compiled_search import compiled_width_search
    from ..grow.kfac_proposal import WidthProposals
    ctx = WidthProposals(net, X, Y, loss, 0, damping=0.1)
    W, b, act = ctx.random_candidates(3, rng)
    if compiled_width_search(ctx, {"W": W, "b": b, **{f"act.{k}": v for k, v in act.items()}}, 2, 0.1) is None:
        raise RuntimeError("warmup: the compiled proposal search did not apply to its warm-up case")


def _conv(rng, pool: str) -> None:
    """A conv net ``Conv2D -> Rational -> pool -> flatten -> Dense`` (``unfold_numba``,
    ``pool_numba``, and the conv-shaped rational kernels)."""
    from ..architectures import convnet
    net = convnet(image_size=6, channels=(2, 2), n_classes=3, pool=pool, seed=0, backend="numba")
    _passes(net, rng.standard_normal((3, 1, 6, 6)), rng)
    conv = net.layers[0]
    conv.curvature_inputs()                                          # unfold_numba


def _passes(net, X, rng) -> None:
    """Forward, backward and forward-mode passes: every kernel call a training step makes
    (per-example and input-only backward passes share the backward's kernels)."""
    Y = net.forward(X)
    net.backward(rng.standard_normal(Y.shape))
    net.jvp({key: rng.standard_normal(p.shape) for key, p in net.named_params().items()})


def _unfold_fold(rng) -> None:
    """The raw ``(unfold, fold)`` pair that ``grow.candidate_path`` calls directly."""
    unfold_k, fold_k = dispatch.kernels_for("numba")
    X = rng.standard_normal((2, 2, 5, 5))
    geom = dispatch.conv_geometry((5, 5), 3, 1, 1)
    P = unfold_k(X, *geom)
    fold_k(P, 2, 5, 5, *geom)


def warm(parts=None) -> dict:
    """Load or compile the Numba kernels of ``parts`` (default: all of :data:`PARTS`).

    Returns ``{part: {"seconds": wall time, "compiled": kernels compiled now, "loaded":
    kernels loaded from the cache}}``; the counts come from the dispatchers' cache hit and
    miss counters (:func:`counts`).  Runs under the ``"numba"`` backend whatever the process
    default is.
    """
    parts = PARTS if parts is None else (parts,) if isinstance(parts, str) else tuple(parts)
    for name in parts:
        check_option(name, PARTS, "parts")
    rng = np.random.default_rng(0)
    jobs = {"dense": lambda: _dense(rng),
            "conv": lambda: (_conv(rng, "avg"), _conv(rng, "max"), _unfold_fold(rng))}
    report = {}
    with _backend.using("numba"):
        for name in parts:
            before = counts()
            t0 = time.perf_counter()
            jobs[name]()
            seconds = time.perf_counter() - t0
            after = counts()
            report[name] = {"seconds": seconds, "compiled": after["compiled"] - before["compiled"],
                            "loaded": after["loaded"] - before["loaded"]}
    return report


def counts() -> dict:
    """``{"compiled": n, "loaded": m, "signatures": {kernel: [signature, ...]}}`` summed over
    the Numba kernel modules imported so far in this process (the per-family modules of
    :mod:`dispatch`, the whole-network kernels of ``sequential_numba``, the proposal search's
    ``search_numba``, the loops of ``buffered_numba`` and the compiled CG loop of ``cg_numba``;
    cache misses are compilations, cache hits loads from disk)."""
    import sys
    modules = dict(dispatch._NUMBA_MODULES)
    for family in ("sequential", "search", "buffered", "cg"):
        module = sys.modules.get(f"{__package__}.{family}_numba")
        if module is not None:
            modules[family] = module
    compiled = loaded = 0
    signatures = {}
    for family, module in sorted(modules.items()):
        for name in sorted(vars(module)):
            fn = getattr(module, name)
            if not hasattr(fn, "signatures") or not hasattr(fn, "_cache_hits"):
                continue
            compiled += sum(fn._cache_misses.values())
            loaded += sum(fn._cache_hits.values())
            signatures[f"{family}.{name}"] = [str(s) for s in fn.signatures]
    return {"compiled": compiled, "loaded": loaded, "signatures": signatures}
