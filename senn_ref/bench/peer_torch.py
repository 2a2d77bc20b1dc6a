"""The PyTorch twins of ``senn-ref bench peers`` (float64, CPU, eager, torch's default threads).

Each builder takes a senn-ref network and data and returns a zero-argument callable that
does the timed work in PyTorch, plus the numbers :mod:`senn_ref.bench.peers` checks against
senn-ref's before anything is timed.  The network is written again from the same formulas
as the JAX twin (:mod:`senn_ref.bench.peer_jax`): Dense ``A W^T + b``, tanh, the rational
activation ``[(2 v x + c)/(1 + x^2) + l x] / sqrt(v^2 + c^2 + l^2 + eps)``
(derivations/05-rational.md section 1); the parameters are the network's arrays in
``named_params()`` order.  The idioms are the ones a PyTorch user would write:

* SGD step: forward, ``loss.backward()``, then ``p -= lr * p.grad`` under ``torch.no_grad()``
  (MSE ``0.5 sum(R^2) / N``; softmax cross-entropy ``F.cross_entropy``, the mean);
* GGN-vector product (one CG iteration's operator, MSE): ``torch.func.jvp`` of
  ``theta -> f(theta, X)`` on the flat parameter vector, then the pullback of one
  ``torch.func.vjp`` taken at the point, divided by N, plus ``damping * v`` (09-fisher.md
  section 4); CG eta runs these in a Python CG loop;
* exact GGN ``J^T J / N`` (MSE): the rows of ``J`` (N K, P) are per-example Jacobians,
  ``torch.func.vmap`` over the examples of ``torch.func.jacrev`` of one example's output
  (the per-sample-gradient idiom).  Measured against ``torch.func.jacrev`` of the whole
  batch's output (N K vector-Jacobian products through the full batch: N times the work) in
  one process, load about 3: 0.41x+-24% of its time on 1-83-1 and 0.65x+-6% on 1-500-1;
  ``jacrev`` over the list of parameter tensors instead of the flat vector, and
  ``torch.autograd.functional.jacobian(vectorize=True)``, were within 0.85-1.19x of the
  flat batch ``jacrev`` in two runs.

Threads: torch's defaults (``torch.get_num_threads()``, the number of cores).  :func:`load`
sets ``OMP_WAIT_POLICY=PASSIVE`` before the first ``import torch`` unless the variable is
already set: with the default (active) policy torch's OpenMP workers keep spinning after each
call and take the CPU from whichever contender runs next (bench/kernels.py's note).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import numpy as np

from .peer_forward import forward as peer_forward


def load():
    """``torch`` with ``OMP_WAIT_POLICY`` defaulted to PASSIVE (module docstring), or None
    when it is not installed.  The environment is left alone when torch is not installed
    or was imported before (its OpenMP runtime has read the variable then)."""
    if "torch" not in sys.modules:
        if importlib.util.find_spec("torch") is None:
            return None
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    return torch


def forward(net, torch):
    """``f(params, X)`` in PyTorch (:func:`senn_ref.bench.peer_forward.forward`)."""
    return peer_forward(net, torch, "PyTorch")


def _flat(net, torch):
    """Flat parameter vector and ``unravel(theta) -> list of views`` (named_params order)."""
    arrays = list(net.named_params().values())
    shapes = [a.shape for a in arrays]
    sizes = [a.size for a in arrays]
    theta = torch.from_numpy(np.concatenate([a.ravel() for a in arrays]))

    def unravel(t):
        return [piece.reshape(shape) for piece, shape in zip(torch.split(t, sizes), shapes)]
    return theta, unravel


def ggn(net, X, torch):
    """``(call, G)``: ``call()`` computes ``J^T J / N`` (P, P) with ``J`` (N K, P) from
    ``vmap`` over examples of ``jacrev`` (module docstring); ``G`` is one result as a NumPy
    array."""
    f = forward(net, torch)
    theta, unravel = _flat(net, torch)
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    N, P = X.shape[0], theta.shape[0]
    per_example = torch.func.vmap(torch.func.jacrev(lambda t, x: f(unravel(t), x[None]).reshape(-1)),
                                  in_dims=(None, 0))                         # (N, K, P)

    def call():
        J = per_example(theta, Xt).reshape(-1, P)
        return J.T @ J / N
    return call, call().numpy()


def gvp(net, X, v, damping, torch):
    """``(call, Gv)``: ``call()`` computes ``J^T (J v) / N + damping v`` (P,) as one iteration
    of :func:`cg_eta` does: the pullback of ``torch.func.vjp`` at the parameters is taken once,
    outside the timed call (senn-ref's ``FisherOperator`` also keeps its point), then
    ``torch.func.jvp`` and that pullback per product; ``Gv`` is one result as a NumPy array.
    (Both ``jvp`` and ``vjp`` in every call took 1.26x the time; ``torch.func.linearize``
    once and its ``jvp`` function per product 0.35x, but linearizing costs about 0.3 s, more
    than a whole CG solve of this size, so a CG user would not; load 5-9.)"""
    f = forward(net, torch)
    theta, unravel = _flat(net, torch)
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    vt = torch.from_numpy(np.asarray(v, dtype=np.float64))
    N = X.shape[0]

    def fX(t):
        return f(unravel(t), Xt)

    _, pullback = torch.func.vjp(fX, theta)

    def call():
        return pullback(torch.func.jvp(fX, (theta,), (vt,))[1])[0] / N + damping * vt
    return call, _first(call).numpy()


def _first(call):
    """``call()``, without the deprecation warning torch.func.jvp's first call emits about
    torch's own use of ``torch.jit.script``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        return call()


def sgd(net, X, Y, loss_name, lr, torch):
    """``(call, loss, new_params)``: ``call()`` does one SGD step (forward, backward,
    ``p -= lr g``) on its own leaf tensors; ``loss`` and ``new_params`` (NumPy, named_params
    order) come from one step taken from the network's parameters before the timed calls."""
    f = forward(net, torch)
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    N = X.shape[0]
    if loss_name == "mse":
        Yt = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))

        def value(params):
            R = f(params, Xt) - Yt
            return 0.5 * (R * R).sum() / N
    else:
        Yt = torch.from_numpy(np.asarray(Y, dtype=np.int64))

        def value(params):
            return torch.nn.functional.cross_entropy(f(params, Xt), Yt)
    params = [torch.tensor(p, requires_grad=True) for p in net.named_params().values()]

    def call():
        out = value(params)
        out.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad = None
        return out

    first = float(call().detach())
    new = [p.detach().numpy().copy() for p in params]
    return call, first, new


def cg_eta(net, X, Y, damping, tol, torch):
    """``(call, (eta, iterations))``: ``call()`` computes ``eta = g^T (F + delta I)^{-1} g``
    (MSE ``0.5 sum(R^2) / N``, g its gradient): ``torch.func.vjp`` at the parameters gives
    ``g`` and the pullback, each CG product is ``torch.func.jvp`` then that pullback; plain CG
    from 0 in a Python loop, stopping as ``natural_gradient.cg_solve`` does
    (``||r|| <= tol ||g||`` or ``2 P`` iterations)."""
    f = forward(net, torch)
    theta, unravel = _flat(net, torch)
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    Yt = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))
    N = X.shape[0]
    maxiter = max(2 * theta.shape[0], 10)

    def fX(t):
        return f(unravel(t), Xt)

    def call():
        out, pull = torch.func.vjp(fX, theta)
        g = pull((out - Yt) / N)[0]
        bound = tol * float(torch.linalg.norm(g))
        x, r, p = torch.zeros_like(g), g.clone(), g.clone()
        rr, it = float(r @ r), 0
        while rr ** 0.5 > bound and it < maxiter:
            Ap = pull(torch.func.jvp(fX, (theta,), (p,))[1])[0] / N + damping * p
            alpha = rr / float(p @ Ap)
            x += alpha * p
            r -= alpha * Ap
            rr_new = float(r @ r)
            p = r + (rr_new / rr) * p
            rr, it = rr_new, it + 1
        return float(g @ x), it
    return call, _first(call)
