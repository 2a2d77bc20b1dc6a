"""The network's forward pass written in a peer's array library, for ``senn-ref bench peers``.

``forward(net, xp, peer)`` returns ``f(params, X)`` for a sequential Dense / Tanh / Rational
senn-ref network, from the same formulas as the layers: Dense ``A W^T + b``, ``tanh``, and the
rational activation ``[(2 v x + c)/(1 + x^2) + l x] / sqrt(v^2 + c^2 + l^2 + eps)``
(derivations/05-rational.md section 1).  ``xp`` is the peer's array namespace (``jax.numpy``
or ``torch``: both spell ``tanh``, ``sqrt``, ``@`` and ``.T`` alike); ``params`` is a sequence
of the peer's arrays in ``net.named_params()`` order (per layer, ``param_names`` order), and
``X`` the peer's (N, in) array.  Used by :mod:`senn_ref.bench.peer_jax` and
:mod:`senn_ref.bench.peer_torch`, whose results :mod:`senn_ref.bench.peers` checks against
senn-ref's before timing.
"""
from __future__ import annotations

from ..layers.activations import Tanh
from ..layers.dense import Dense
from ..layers.rational import Rational


def forward(net, xp, peer: str):
    """``f(params, X)`` in the array namespace ``xp``; TypeError naming ``peer`` for a layer
    without a twin (anything but Dense, Tanh, Rational)."""
    plan = []
    for layer in net.layers:
        if not isinstance(layer, (Dense, Tanh, Rational)):
            raise TypeError(f"peers: no {peer} twin for {layer._label()}")
        plan.append((type(layer), len(layer.param_names), getattr(layer, "EPS", 0.0)))

    def f(params, X):
        i = 0
        for kind, count, eps in plan:
            p = params[i:i + count]
            i += count
            if kind is Dense:
                X = X @ p[0].T + p[1]
            elif kind is Tanh:
                X = xp.tanh(X)
            else:
                v, c, l = p
                X = ((2.0 * v * X + c) / (1.0 + X * X) + l * X) / xp.sqrt(v * v + c * c + l * l + eps)
        return X
    return f
