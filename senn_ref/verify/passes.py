"""Claims 1 and 2: hand-written passes against finite differences, kernels against their twins.

Claim 1 (senn-math 11.1): for every layer type with random shapes, strides and paddings, and
for whole random networks, :func:`senn_ref.gradcheck.check_layer` / ``check_network`` compare
the forward-mode pass with Richardson central differences (relative error <= 1e-6) and the
backward pass with the forward-mode pass by the dot-product test <u, VJP(v)> = <JVP(u), v>
(relative error <= 1e-10).  Claim 2 (11.2): every Numba kernel equals its NumPy twin to 1e-12
(relative) on random shapes.  ``derivations/01-conventions.md`` section 1.4,
``03-convolution.md`` section 6, ``05-rational.md`` section 8.
"""
from __future__ import annotations

import numpy as np

from .. import gradcheck
from ..kernels import dispatch
from ..testing import relative_error
from .report import Outcome

FD_TOL, DOT_TOL, TWIN_TOL = 1e-6, 1e-10, 1e-12


def _conv_geometry(rng):
    """Random kernel, stride and padding (ints or pairs) and an input size that fits."""
    k = tuple(int(x) for x in rng.integers(1, 4, size=2))
    s = tuple(int(x) for x in rng.integers(1, 3, size=2))
    p = tuple(int(rng.integers(0, kk)) for kk in k)
    hw = tuple(int(kk + rng.integers(0, 5)) for kk in k)
    return k, s, p, hw


def _layer_cases(rng):
    """(label, layer, X) for every layer type, shapes drawn from ``rng``."""
    from ..layers.activations import SiLU, Tanh
    from ..layers.conv2d import Conv2D
    from ..layers.dense import Dense
    from ..layers.flatten import Flatten
    from ..layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
    from ..layers.rational import Rational

    n_in, n_out, N = (int(x) for x in rng.integers(1, 6, size=3))
    yield f"Dense({n_in}->{n_out})", Dense(n_in, n_out, rng, bias_std=1.0), rng.standard_normal((N, n_in))
    k, s, p, hw = _conv_geometry(rng)
    cin, cout = (int(x) for x in rng.integers(1, 4, size=2))
    X = rng.standard_normal((int(rng.integers(1, 3)), cin) + hw)
    for backend in ("numba", "numpy"):
        layer = Conv2D(cin, cout, k, stride=s, padding=p, rng=rng, bias_std=1.0, backend=backend, in_hw=hw)
        yield f"Conv2D k={k} s={s} p={p} in={hw} [{backend}]", layer, X
    c, size = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, w = (size * int(x) for x in rng.integers(1, 4, size=2))
    yield f"AvgPool2D({size}) on {(c, h, w)}", AvgPool2D(size, in_shape=(c, h, w)), rng.standard_normal((2, c, h, w))
    # distinct, well-separated values so that finite differences never cross an argmax switch
    xmax = rng.permutation(2 * c * h * w).reshape(2, c, h, w).astype(float) * 0.1
    for backend in ("numba", "numpy"):
        yield f"MaxPool2D({size}) [{backend}]", MaxPool2D(size, in_shape=(c, h, w), backend=backend), xmax
    yield "GlobalAvgPool", GlobalAvgPool(in_shape=(c, h, w)), rng.standard_normal((2, c, h, w))
    yield "Flatten", Flatten(in_shape=(c, h, w)), rng.standard_normal((2, c, h, w))
    u = int(rng.integers(1, 5))
    yield f"Rational({u}, random)", Rational(u, init="random", rng=rng), 2 * rng.standard_normal((N, u))
    yield f"Rational({u}, identity)", Rational(u, init="identity"), rng.standard_normal((N, u))
    yield "Rational conv layout", Rational(c, init="random", rng=rng, spatial=(h, w)), \
        rng.standard_normal((2, c, h, w))
    yield f"Tanh({u})", Tanh((u,)), rng.standard_normal((N, u))
    yield f"SiLU({u})", SiLU((u,)), rng.standard_normal((N, u))


def claim_passes(rng, trials: int) -> Outcome:
    """Claim 1: worst finite-difference and dot-product errors over ``trials`` rounds of every
    layer type plus one random MLP and one small convnet per round."""
    from ..architectures import convnet
    from .cases import random_mlp

    out = Outcome(trials)
    fd, dot = [], []
    for _ in range(trials):
        for _, layer, X in _layer_cases(rng):
            res = gradcheck.check_layer(layer, X, rng)
            fd.append(res.fd_error)
            dot.append(res.dot_error)
        net = random_mlp(rng, int(rng.integers(1, 4)), int(rng.integers(1, 3)))
        res = gradcheck.check_network(net, rng.standard_normal((int(rng.integers(1, 6)),) + net.in_shape), rng)
        fd.append(res.fd_error)
        dot.append(res.dot_error)
    net = convnet(image_size=6, channels=(2, 3), n_classes=2, seed=int(rng.integers(2 ** 31)))
    res = gradcheck.check_network(net, rng.standard_normal((2, 1, 6, 6)), rng)
    fd.append(res.fd_error)
    dot.append(res.dot_error)
    out.add("forward mode vs central differences (relative)", fd, FD_TOL)
    out.add("dot-product test <u, VJP v> = <JVP u, v> (relative)", dot, DOT_TOL)
    out.measurements["checks"] = len(fd)
    return out


def claim_kernel_twins(rng, trials: int) -> Outcome:
    """Claim 2: relative error between every Numba kernel and its NumPy twin (unfold, fold,
    rational forward and backward, max/avg pooling through the layers) on random shapes."""
    from ..layers.pooling import AvgPool2D, MaxPool2D
    from ..layers.rational import Rational

    out = Outcome(trials)
    errs = {"unfold": [], "fold": [], "rational forward": [], "rational backward": [], "pooling": []}
    for _ in range(trials):
        k, s, p, hw = _conv_geometry(rng)
        X = rng.standard_normal((int(rng.integers(1, 4)), int(rng.integers(1, 4))) + hw)
        a = dispatch.unfold(X, k, s, p, backend="numba")
        errs["unfold"].append(relative_error(a, dispatch.unfold(X, k, s, p, backend="numpy")))
        P = rng.standard_normal(a.shape)
        fa = dispatch.fold(P, X.shape[1:], k, s, p, backend="numba")
        errs["fold"].append(relative_error(fa, dispatch.fold(P, X.shape[1:], k, s, p, backend="numpy")))
        c, hh, ww = (int(x) for x in rng.integers(1, 5, size=3))
        Z = rng.standard_normal((int(rng.integers(1, 4)), c, hh, ww)) * 3.0
        seed = int(rng.integers(2 ** 31))
        lay = {be: Rational(c, init="random", rng=np.random.default_rng(seed), spatial=(hh, ww), backend=be)
               for be in ("numba", "numpy")}
        fwd = {be: la.forward(Z) for be, la in lay.items()}
        errs["rational forward"].append(relative_error(fwd["numba"], fwd["numpy"]))
        dY = rng.standard_normal(Z.shape)
        back = {}
        for be, la in lay.items():
            dX, grads = la.backward(dY)
            back[be] = np.concatenate([dX.ravel()] + [g.ravel() for g in grads.values()])
        errs["rational backward"].append(relative_error(back["numba"], back["numpy"]))
        size = int(rng.integers(1, 3))
        shape = (c, size * hh, size * ww)
        Xp = rng.standard_normal((2,) + shape)
        for cls in (MaxPool2D, AvgPool2D):
            pools = {be: cls(size, in_shape=shape, backend=be) for be in ("numba", "numpy")}
            res = {}
            for be, la in pools.items():
                y = la.forward(Xp)
                dX, _ = la.backward(np.ones_like(y) + 0.1 * np.arange(y.size).reshape(y.shape))
                res[be] = np.concatenate([y.ravel(), dX.ravel()])
            errs["pooling"].append(relative_error(res["numba"], res["numpy"]))
    for name, vals in errs.items():
        out.add(f"numba vs numpy: {name}", vals, TWIN_TOL)
    return out
