"""senn-ref against JAX (``jax.jit``, float64) on the sizes SENN runs at, side by side.

Needs the optional extra ``[bench]`` (``pip install senn-ref[bench]``: jax, jaxlib).
Each row builds one senn-ref network and a JAX function of the same parameters written
from the same formulas (Dense ``A W^T + b``; tanh; the rational activation
``[(2 v x + c)/(1 + x^2) + l x] / sqrt(v^2 + c^2 + l^2 + eps)``, 05-rational.md section 1),
checks the numbers equal (relative 2-norm error below 1e-10), and only then times both
with :func:`senn_ref.bench.timing.compare` (senn-ref is the baseline, ratio 1; a JAX ratio
below 1 means JAX is faster).  Rows:

* ``exact GGN``: ``fisher.exact(net, X, mse())`` versus ``J^T J / N`` from ``jax.jacrev``
  (rational 1-83-1 and 1-500-1, N = 50; 09-fisher.md section 3b);
* ``SGD step``: ``Network.loss_and_grad`` plus ``p -= lr g`` on every array, versus a
  jitted ``value_and_grad`` and update (rational 1-16-1, N = 50, MSE; tanh 64-64-10,
  N = 1797, softmax cross-entropy with labels);
* ``CG iteration``: the operator product of one natural-gradient CG iteration,
  ``FisherOperator.matvec(v) = (F + 0.1 I) v`` (MSE), versus a jitted ``jvp`` + ``vjp``
  (rational 1-16-1, N = 50; CG's own vector updates, a few NumPy operations on P = 97
  entries, are not in either time; 09-fisher.md section 4).

JAX compiles on the warm-up call; its compile time is not in the ratio.  PyTorch is not
part of this run (it is not installable from the default index on this machine).
"""
from __future__ import annotations

import numpy as np

from ..architectures import mlp
from ..fisher.exact import exact
from ..fisher.matvec import FisherOperator
from ..layers.activations import Tanh
from ..layers.dense import Dense
from ..layers.rational import Rational
from ..network_plan import layerwise, plan_for
from ..losses import mse, softmax_cross_entropy
from ..testing import relative_error
from .timing import compare, machine, progress, ratio_cell

LR = 1e-3
CG_DAMPING = 0.1


def _jax():
    try:
        import jax
    except ImportError as exc:             # pragma: no cover - depends on the environment
        raise SystemExit("senn-ref bench peers needs JAX: pip install 'senn-ref[bench]'") from exc
    jax.config.update("jax_enable_x64", True)
    return jax, jax.numpy


def _jax_forward(net, jnp):
    """``f(params, X)`` for a sequential Dense/Tanh/Rational ``net``; params is a list of the
    arrays in ``net.get_flat()`` order (per layer, ``param_names`` order)."""
    plan = []
    for layer in net.layers:
        if not isinstance(layer, (Dense, Tanh, Rational)):
            raise TypeError(f"peers: no JAX twin for {layer._label()}")
        plan.append((type(layer), len(layer.param_names), getattr(layer, "EPS", 0.0)))

    def f(params, X):
        i = 0
        for kind, count, eps in plan:
            p = params[i:i + count]
            i += count
            if kind is Dense:
                X = X @ p[0].T + p[1]
            elif kind is Tanh:
                X = jnp.tanh(X)
            else:
                v, c, l = p
                X = ((2.0 * v * X + c) / (1.0 + X * X) + l * X) / jnp.sqrt(v * v + c * c + l * l + eps)
        return X
    return f


def _params(net):
    return [np.array(p) for p in net.named_params().values()]


def _ggn_row(label, net, X, jax, jnp, settings):
    f = _jax_forward(net, jnp)
    N = X.shape[0]
    shapes = [p.shape for p in _params(net)]

    @jax.jit
    def ggn(params, X):
        jac = jax.jacrev(lambda ps: f(ps, X).reshape(N, -1))(params)         # list of (N, K, *shape)
        J = jnp.concatenate([j.reshape(j.shape[0] * j.shape[1], -1) for j in jac], axis=1)
        return J.T @ J / N

    params = [jnp.asarray(p) for p in _params(net)]
    loss = mse()
    ours = exact(net, X, loss)
    err = relative_error(np.asarray(ggn(params, X)), ours)
    if not err <= 1e-10:
        raise AssertionError(f"{label}: JAX GGN differs from fisher.exact ({err:.2e}); shapes {shapes}")
    return compare({"senn-ref": lambda: exact(net, X, loss),
                    "jax.jit": lambda: ggn(params, X).block_until_ready()},
                   baseline="senn-ref", label=label, **settings)


def _sgd_row(label, net, X, Y, loss, jax, jnp, settings):
    f = _jax_forward(net, jnp)
    N = X.shape[0]
    if loss.name == "mse":
        def value(params):
            R = f(params, X) - Y
            return 0.5 * jnp.sum(R * R) / N
    else:
        def value(params):
            Z = f(params, X)
            return jnp.mean(jax.nn.logsumexp(Z, axis=1) - Z[jnp.arange(N), Y])

    @jax.jit
    def step(params):
        v, g = jax.value_and_grad(value)(params)
        return v, [p - LR * gp for p, gp in zip(params, g)]

    start = _params(net)
    value_ours, grads = net.loss_and_grad(X, Y, loss)
    value_jax, new = step([jnp.asarray(p) for p in start])
    ours_new = [p - LR * g for p, g in zip(start, grads.grads.values())]
    err = max(relative_error(np.asarray(a), b) for a, b in zip(new, ours_new))
    if not (abs(float(value_jax) - value_ours) <= 1e-10 * abs(value_ours) and err <= 1e-10):
        raise AssertionError(f"{label}: JAX step differs (loss {float(value_jax)} vs {value_ours}, "
                             f"parameters {err:.2e})")
    params = net.named_params()
    jparams = [jnp.asarray(p) for p in start]

    def ours_step():
        _, g = net.loss_and_grad(X, Y, loss)
        for key, gk in g.grads.items():
            params[key] -= LR * gk

    def jax_step():
        _, out = step(jparams)
        jax.block_until_ready(out)

    twin = net.copy()                                    # its own caches: no refresh between contenders
    twin_params = twin.named_params()

    def layerwise_step():
        with layerwise():
            _, g = twin.loss_and_grad(X, Y, loss)
        for key, gk in g.grads.items():
            twin_params[key] -= LR * gk

    contenders = {"senn-ref": ours_step, "jax.jit": jax_step}
    plan = plan_for(net)
    if plan is not None and plan.fast_for(N):            # else senn-ref is the layer-wise path itself
        contenders["layer-wise"] = layerwise_step
    res = compare(contenders, baseline="senn-ref", label=label, **settings)
    for key, p in zip(params, start):                    # leave the network as it was
        params[key][...] = p
    return res


def _cg_row(label, net, X, jax, jnp, settings):
    """One CG iteration's operator product ``(F + delta I) v`` (MSE, euclidean metric):
    ``FisherOperator.matvec`` versus a jitted ``jvp`` + ``vjp`` on flat vectors (the
    parameters unravelled inside the jit, so JAX dispatches two arrays, not a list)."""
    from jax.flatten_util import ravel_pytree
    f = _jax_forward(net, jnp)
    N = X.shape[0]
    theta0, unravel = ravel_pytree([jnp.asarray(p) for p in _params(net)])

    @jax.jit
    def product(theta, v):
        fX = lambda t: f(unravel(t), X)                                      # noqa: E731
        _, Jv = jax.jvp(fX, (theta,), (v,))
        return jax.vjp(fX, theta)[1](Jv)[0] / N + CG_DAMPING * v

    op = FisherOperator(net, X, mse(), damping=CG_DAMPING)
    v = np.random.default_rng(4).standard_normal(op.P)
    ours = op.matvec(v)
    err = relative_error(np.asarray(product(theta0, v)), ours)
    if not err <= 1e-10:
        raise AssertionError(f"{label}: JAX GGN-vector product differs from FisherOperator ({err:.2e})")
    vj = jnp.asarray(v)
    with layerwise():
        op_layerwise = FisherOperator(net.copy(), X, mse(), damping=CG_DAMPING)
    assert op_layerwise._point is None

    def layerwise_product():
        with layerwise():
            op_layerwise.matvec(v)

    return compare({"senn-ref": lambda: op.matvec(v),
                    "jax.jit": lambda: product(theta0, vj).block_until_ready(),
                    "layer-wise": layerwise_product}, baseline="senn-ref", label=label, **settings)


def run(quick: bool = False) -> list[dict]:
    """Time every row; returns ``{"row", "senn_ref_s", "jax_s", "jax_over_ours", "spread",
    "layerwise_over_ours"}`` (the last: rows that take the compiled path of
    :mod:`senn_ref.network_plan`, the 1-D SGD and CG rows, also time the layer-wise path,
    :func:`~senn_ref.network_plan.layerwise`, in the same rounds; None for the others)."""
    jax, jnp = _jax()
    settings = (dict(min_rounds=3, max_rounds=8, budget_seconds=8.0) if quick
                else dict(min_rounds=5, max_rounds=30, budget_seconds=40.0))
    data = np.random.default_rng(3)
    X1 = data.standard_normal((50, 1))
    rows_spec = [("exact GGN rational 1-83-1, N=50", "ggn", mlp([1, 83, 1], seed=0), X1, None, None)]
    rows_spec.append(("SGD step rational 1-16-1, N=50", "sgd", mlp([1, 16, 1], seed=0), X1,
                      np.sin(3.0 * X1), mse()))
    rows_spec.append(("CG iteration rational 1-16-1, N=50", "cg", mlp([1, 16, 1], seed=0), X1, None, None))
    if not quick:
        rows_spec.insert(1, ("exact GGN rational 1-500-1, N=50", "ggn", mlp([1, 500, 1], seed=0), X1, None, None))
        Xd = data.standard_normal((1797, 64))
        rows_spec.append(("SGD step tanh 64-64-10, N=1797", "sgd", mlp([64, 64, 10], activation="tanh", seed=0),
                          Xd, data.integers(0, 10, 1797), softmax_cross_entropy()))
    print(f"senn-ref vs jax.jit {jax.__version__} (float64): median time per call, JAX/senn-ref ratio "
          f"(< 1: JAX faster; +- half the interquartile range; * = not stable); {machine()}")
    print(f"{'row':<36} {'senn-ref':>12} {'jax.jit':>12} {'jax/senn-ref':>16} {'layer-wise/senn-ref':>20}",
          flush=True)
    out = []
    for i, (label, kind, net, X, Y, loss) in enumerate(rows_spec, 1):
        progress(i, len(rows_spec), label)
        if kind == "ggn":
            res = _ggn_row(label, net, X, jax, jnp, settings)
        elif kind == "cg":
            res = _cg_row(label, net, X, jax, jnp, settings)
        else:
            res = _sgd_row(label, net, X, Y, loss, jax, jnp, settings)
        ours, theirs = res["senn-ref"], res["jax.jit"]
        star = "" if res.stable else "*"
        old = res.timings.get("layer-wise")
        print(f"{label:<36} {ours.seconds * 1e3:>9.3g} ms {theirs.seconds * 1e3:>9.3g} ms "
              f"{ratio_cell(theirs) + star:>16} {ratio_cell(old) if old else '':>20}", flush=True)
        out.append({"row": label, "senn_ref_s": ours.seconds, "jax_s": theirs.seconds,
                    "jax_over_ours": theirs.ratio, "spread": theirs.spread,
                    "layerwise_over_ours": old.ratio if old else None})
    return out
