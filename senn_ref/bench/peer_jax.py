"""The JAX twins of ``senn-ref bench peers`` (``jax.jit``, float64, CPU, default threads).

Same builders as :mod:`senn_ref.bench.peer_torch` (each returns a zero-argument callable
doing the timed work, which blocks until JAX's result is ready, and the numbers
:mod:`senn_ref.bench.peers` checks against senn-ref's before timing), written from the same
formulas: Dense ``A W^T + b``, tanh, the rational activation
``[(2 v x + c)/(1 + x^2) + l x] / sqrt(v^2 + c^2 + l^2 + eps)`` (derivations/05-rational.md
section 1), parameters in ``named_params()`` order:

* SGD step: a jitted ``value_and_grad`` and ``p - lr g`` on every array (MSE
  ``0.5 sum(R^2) / N``; softmax cross-entropy ``mean(logsumexp(Z) - Z[y])``);
* GGN-vector product (one CG iteration's): ``jax.linearize`` + ``jax.vjp`` on the flat
  parameter vector at the point, once, then a jitted ``pullback(jvp(v)) / N + damping v``;
* CG eta: the whole CG solve in one jit (``lax.while_loop``);
* exact GGN: ``J^T J / N``, the rows of ``J`` the per-example Jacobians, ``jax.vmap`` over
  the examples of ``jax.jacrev`` over the list of parameters.  ``jax.jacrev`` of the whole
  batch's output (N K vector-Jacobian products through the full batch, the idiom of this
  benchmark's first version) took 2.7x the time on 1-83-1 and 1.15x on 1-500-1 (one run,
  load about 3).

JAX compiles on the first call (done here, before timing): compile time is not in the
timed calls; the fresh-process row (:mod:`senn_ref.bench.peer_fresh`) counts it.
"""
from __future__ import annotations

import numpy as np

from .peer_forward import forward as peer_forward


def load():
    """``jax`` with 64-bit floats enabled, or None when it is not importable."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


def forward(net, jnp):
    """``f(params, X)`` in JAX (:func:`senn_ref.bench.peer_forward.forward`)."""
    return peer_forward(net, jnp, "JAX")


def _params(net, jnp):
    return [jnp.asarray(np.array(p)) for p in net.named_params().values()]


def ggn(net, X, jax):
    """``(call, G)``: ``call()`` computes ``J^T J / N`` (P, P), ``J`` (N K, P) from ``vmap``
    over examples of ``jax.jacrev``; ``G`` is one result as a NumPy array."""
    jnp = jax.numpy
    f = forward(net, jnp)
    N = X.shape[0]

    @jax.jit
    def product(params, X):
        one = jax.jacrev(lambda ps, x: f(ps, x[None]).reshape(-1))               # list of (K, *shape)
        jac = jax.vmap(one, in_axes=(None, 0))(params, X)                          # list of (N, K, *shape)
        J = jnp.concatenate([j.reshape(j.shape[0] * j.shape[1], -1) for j in jac], axis=1)
        return J.T @ J / N

    params, Xj = _params(net, jnp), jnp.asarray(X)
    return (lambda: product(params, Xj).block_until_ready()), np.asarray(product(params, Xj))


def gvp(net, X, v, damping, jax):
    """``(call, Gv)``: ``call()`` computes ``J^T (J v) / N + damping v`` (P,) as one iteration
    of a CG solve does (:func:`cg_eta`): ``jax.linearize`` and ``jax.vjp`` at the parameters
    once, outside the timed call (senn-ref's ``FisherOperator`` also keeps its point), then a
    jitted ``pullback(jvp(v)) / N + damping v``; ``Gv`` is one result as a NumPy array.
    (Recomputing the forward passes in every call, ``jvp`` + ``vjp`` of ``(theta, v)`` in
    one jit, took 1.74x the time: 65 against 38 us, load 5-9.)"""
    from jax.flatten_util import ravel_pytree
    jnp = jax.numpy
    f = forward(net, jnp)
    N = X.shape[0]
    theta, unravel = ravel_pytree(_params(net, jnp))
    Xj, vj = jnp.asarray(X), jnp.asarray(v)
    fX = lambda t: f(unravel(t), Xj)                                         # noqa: E731
    _, jvp = jax.linearize(fX, theta)
    pullback = jax.vjp(fX, theta)[1]
    product = jax.jit(lambda v: pullback(jvp(v))[0] / N + damping * v)
    return (lambda: product(vj).block_until_ready()), np.asarray(product(vj))


def sgd(net, X, Y, loss_name, lr, jax):
    """``(call, loss, new_params)``: ``call()`` runs the jitted step (value, gradient and
    ``p - lr g``) from the network's parameters; ``loss`` and ``new_params`` (NumPy,
    named_params order) are one such step's results."""
    jnp = jax.numpy
    f = forward(net, jnp)
    N = X.shape[0]
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    if loss_name == "mse":
        def value(params):
            R = f(params, Xj) - Yj
            return 0.5 * jnp.sum(R * R) / N
    else:
        def value(params):
            Z = f(params, Xj)
            return jnp.mean(jax.nn.logsumexp(Z, axis=1) - Z[jnp.arange(N), Yj])

    @jax.jit
    def step(params):
        out, g = jax.value_and_grad(value)(params)
        return out, [p - lr * gp for p, gp in zip(params, g)]

    params = _params(net, jnp)
    first, new = step(params)
    return ((lambda: jax.block_until_ready(step(params))), float(first),
            [np.asarray(p) for p in new])


def cg_eta(net, X, Y, damping, tol, jax):
    """``(call, (eta, iterations))``: ``call()`` computes ``eta = g^T (F + delta I)^{-1} g``
    (MSE ``0.5 sum(R^2) / N``, g its gradient) in one jitted function: ``jax.linearize`` and
    ``jax.vjp`` at the parameters, then plain CG from 0 in a ``lax.while_loop``, stopping as
    ``natural_gradient.cg_solve`` does (``||r|| <= tol ||g||`` or ``2 P`` iterations)."""
    from jax.flatten_util import ravel_pytree
    jnp = jax.numpy
    f = forward(net, jnp)
    N = X.shape[0]
    theta, unravel = ravel_pytree(_params(net, jnp))
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    maxiter = max(2 * theta.shape[0], 10)

    @jax.jit
    def eta(theta):
        fX = lambda t: f(unravel(t), Xj)                                     # noqa: E731
        out, jvp = jax.linearize(fX, theta)
        pull = jax.vjp(fX, theta)[1]
        g = pull((out - Yj) / N)[0]
        bound = tol * jnp.linalg.norm(g)

        def body(state):
            x, r, p, rr, it = state
            Ap = pull(jvp(p))[0] / N + damping * p
            alpha = rr / (p @ Ap)
            r = r - alpha * Ap
            rr_new = r @ r
            return x + alpha * p, r, r + (rr_new / rr) * p, rr_new, it + 1

        x, _, _, _, it = jax.lax.while_loop(lambda s: (jnp.sqrt(s[3]) > bound) & (s[4] < maxiter), body,
                                            (jnp.zeros_like(g), g, g, g @ g, 0))
        return g @ x, it

    value, it = eta(theta)
    return (lambda: eta(theta)[0].block_until_ready()), (float(value), int(it))
