"""``senn-ref verify``: re-run the core numerical checks on this machine.

For every layer type (and whole networks) it runs :func:`senn_ref.gradcheck.check_layer`
or :func:`~senn_ref.gradcheck.check_network` - Richardson central differences for the
forward-mode pass and the dot-product test for the backward pass - and compares every
Numba kernel with its NumPy twin.  Prints one row per check and returns the rows; the
CLI exits non-zero if any check fails.  Tolerances: fd 1e-6, dot 1e-10, twins 1e-12
(derivations/01-conventions.md section 1.4).
"""
from __future__ import annotations

import numpy as np

from .gradcheck import check_layer, check_network
from .testing import relative_error

FD_TOL, DOT_TOL, TWIN_TOL = 1e-6, 1e-10, 1e-12


def _layer_cases(rng):
    from .layers.activations import SiLU, Tanh
    from .layers.conv2d import Conv2D
    from .layers.dense import Dense
    from .layers.flatten import Flatten
    from .layers.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
    from .layers.rational import Rational

    yield "Dense(5->3)", Dense(5, 3, rng, bias_std=1.0), rng.standard_normal((4, 5))
    for backend in ("numba", "numpy"):
        for k, s, p in ((3, 1, 1), (2, 2, 0), ((3, 2), (2, 1), (1, 2))):
            layer = Conv2D(2, 3, k, stride=s, padding=p, rng=rng, bias_std=1.0, backend=backend, in_hw=(7, 6))
            yield f"Conv2D k={k} s={s} p={p} [{backend}]", layer, rng.standard_normal((2, 2, 7, 6))
    yield "AvgPool2D(2)", AvgPool2D(2, in_shape=(2, 6, 6)), rng.standard_normal((3, 2, 6, 6))
    # distinct, well-separated values so that finite differences never cross an argmax switch
    xmax = rng.permutation(72).reshape(1, 2, 6, 6).astype(float) * 0.1
    yield "MaxPool2D(2)", MaxPool2D(2, in_shape=(2, 6, 6)), xmax
    yield "GlobalAvgPool", GlobalAvgPool(in_shape=(3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    yield "Flatten", Flatten(in_shape=(3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    yield "Rational (random)", Rational(4, init="random", rng=rng), rng.standard_normal((5, 4))
    yield "Rational (identity)", Rational(4, init="identity"), rng.standard_normal((5, 4))
    yield "Rational conv layout", Rational(3, init="random", rng=rng, spatial=(4, 4)), \
        rng.standard_normal((2, 3, 4, 4))
    yield "Tanh", Tanh((6,)), rng.standard_normal((3, 6))
    yield "SiLU", SiLU((6,)), rng.standard_normal((3, 6))


def _kernel_cases(rng):
    from .kernels import dispatch

    X = rng.standard_normal((3, 2, 9, 8))
    for k, s, p in ((3, 1, 1), (2, 2, 0), ((3, 2), (2, 1), (1, 2))):
        a = dispatch.unfold(X, k, s, p, backend="numba")
        b = dispatch.unfold(X, k, s, p, backend="numpy")
        yield f"unfold k={k} s={s} p={p}", relative_error(a, b)
        P = rng.standard_normal(a.shape)
        fa = dispatch.fold(P, X.shape[1:], k, s, p, backend="numba")
        fb = dispatch.fold(P, X.shape[1:], k, s, p, backend="numpy")
        yield f"fold k={k} s={s} p={p}", relative_error(fa, fb)
    from .layers.rational import Rational

    Z = rng.standard_normal((4, 3, 5, 5)) * 3.0
    layers = {be: Rational(3, init="random", rng=np.random.default_rng(1), spatial=(5, 5), backend=be)
              for be in ("numba", "numpy")}
    out = {be: layer.forward(Z) for be, layer in layers.items()}
    yield "rational forward", relative_error(out["numba"], out["numpy"])
    dY = rng.standard_normal(Z.shape)
    back = {}
    for be, layer in layers.items():
        dX, grads = layer.backward(dY)
        back[be] = np.concatenate([dX.ravel()] + [g.ravel() for g in grads.values()])
    yield "rational backward", relative_error(back["numba"], back["numpy"])


def run(seed: int = 0, verbose: bool = True) -> list[dict]:
    """Run all checks; returns rows {check, fd_error, dot_error, ok}."""
    from .architectures import convnet, mlp

    rng = np.random.default_rng(seed)
    rows = []
    for name, layer, X in _layer_cases(rng):
        res = check_layer(layer, X, rng)
        rows.append({"check": name, "fd_error": res.fd_error, "dot_error": res.dot_error,
                     "ok": res.ok(FD_TOL, DOT_TOL)})
    nets = (("mlp [3,8,8,2] rational", mlp([3, 8, 8, 2], seed=seed), rng.standard_normal((6, 3))),
            ("mlp [3,8,2] tanh", mlp([3, 8, 2], activation="tanh", seed=seed), rng.standard_normal((6, 3))),
            ("convnet 8x8", convnet(seed=seed), rng.standard_normal((3, 1, 8, 8))))
    for name, net, X in nets:
        res = check_network(net, X, rng)
        rows.append({"check": name, "fd_error": res.fd_error, "dot_error": res.dot_error,
                     "ok": res.ok(FD_TOL, DOT_TOL)})
    for name, err in _kernel_cases(rng):
        rows.append({"check": f"numba vs numpy: {name}", "fd_error": float("nan"), "dot_error": err,
                     "ok": err <= TWIN_TOL})
    if verbose:
        print(f"{'check':<50} {'fd error':>10} {'adjoint/twin':>13}  result")
        for r in rows:
            fd = "-" if np.isnan(r["fd_error"]) else f"{r['fd_error']:.2e}"
            print(f"{r['check']:<50} {fd:>10} {r['dot_error']:>13.2e}  {'ok' if r['ok'] else 'FAIL'}")
        bad = sum(not r["ok"] for r in rows)
        print(f"{len(rows) - bad} passed, {bad} failed (tolerances: fd {FD_TOL:g}, adjoint {DOT_TOL:g}, "
              f"twins {TWIN_TOL:g})")
    return rows
