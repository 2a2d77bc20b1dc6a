"""Closed-form Jacobian rows of the parameters an inserted layer adds (per unit).

:func:`senn_ref.grow.insert_layer.insert_layer` puts ``z = B a + s`` and identity rationals in
front of a consumer with input ``a``.  Everything here is expressed through quantities of the
*original* network at the consumer's input (``derivations/17-depth.md`` section 5):

* ``a_{n,j,t}``: the consumer's input (unit / channel ``j``, spatial position ``t``; T = 1 dense);
* ``q_{n,r}``: the cotangent that metric column ``r`` (``M_n = R_n R_n^T``) delivers there,
  ``q_{n,r} = (d f_n / d a_n)^T R_n[:, r]``.

In the grown network the rational's output receives ``sqrt(1+EPS) beta`` with
``beta = B^-T q`` (acting on the unit axis), and its partials at ``(0, 0, 1)`` are
``psi(z) / sqrt(1+EPS)`` with ``psi_v = 2z/(1+z^2)``, ``psi_c = 1/(1+z^2)``,
``psi_l = EPS z/(1+EPS)``; the factors cancel, so the Jacobian row of unit ``u``'s parameter
``theta`` for column ``r`` of example ``n`` is

    w_{n,r,u,theta} = sum_t beta_{n,r,u,t} psi_theta(z_{n,u,t}),

and likewise ``sum_t beta a_{n,j,t}`` for ``B[u, j]`` and ``sum_t beta`` for ``s_u``.
Used by :mod:`senn_ref.grow.depth_gain` (lower bound) and :mod:`senn_ref.grow.depth_exact`
(closed-form exact gain).  Tests: ``tests/test_depth.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_batch
from ..kernels.rational_numpy import rational_basis_numpy
from ..kfac.columns import metric_columns
from ..layers.rational import EPS
from .insert_layer import has_padding


#: parameter sets of the inserted layers, in the grown network's flat order
#: ("W", "b" are the inserted linear map's B and s)
PARAM_SETS = {"vc": ("v", "c"), "vcl": ("v", "c", "l"), "all": ("W", "b", "v", "c", "l")}


def psi(z: np.ndarray, names=("v", "c")) -> np.ndarray:
    """``psi_theta(z)`` stacked on a last axis, ``theta`` in ``names`` (subset of v, c, l):
    ``2z/(1+z^2)``, ``1/(1+z^2)``, ``EPS z/(1+EPS)`` (the identity-point partials of sigma times
    ``sqrt(1+EPS)``).  ``z`` any shape -> ``z.shape + (len(names),)``.  17-depth.md section 5."""
    t, w, _ = rational_basis_numpy(z)
    table = {"v": lambda: 2.0 * t, "c": lambda: w, "l": lambda: z * (EPS / (1.0 + EPS))}
    return np.stack([table[n]() for n in names], axis=-1)


def psi_prime(z: np.ndarray) -> np.ndarray:
    """``(d psi_v/dz, d psi_c/dz) = (2(1-z^2)/(1+z^2)^2, -2z/(1+z^2)^2)``, shape ``z.shape + (2,)``.
    17-depth.md section 7."""
    t, w, p = rational_basis_numpy(z)
    return np.stack([2.0 * p, -2.0 * t * w], axis=-1)


def _to_units(x: np.ndarray) -> np.ndarray:
    """(N, k) or (N, k, H, W) -> (N, k, T)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


@dataclass
class ConsumerSide:
    """Candidate-independent quantities at the consumer's input (17-depth.md section 5).

    position : consumer index;  a : (N, k, T) its input;  q : (N, R, k, T) metric-column
    cotangents;  e : (N, k, T) the cotangent of the output gradients ``e_n`` (not divided by N);
    padded : consumer is a zero-padded Conv2D (then ``s = 0``)."""
    position: int
    a: np.ndarray
    q: np.ndarray
    e: np.ndarray
    padded: bool

    @property
    def N(self) -> int:
        return self.a.shape[0]


def input_cotangent(net, position: int, dY) -> np.ndarray:
    """Cotangent of the consumer's input for an output cotangent ``dY`` (N,) + out_shape, (N, k, T)
    (one backward pass at the last forward point).  17-depth.md section 5."""
    grads = net.backward(dY, need_input_grad=position == 0)
    g = grads.input_grad if position == 0 else grads.output_grads[position - 1]
    return _to_units(np.asarray(g))


def consumer_side(net, X, Y, loss, position: int, metric: str) -> ConsumerSide:
    """Forward ``X`` (N,) + in_shape and back-propagate every metric column and ``e`` to the input
    of ``net.layers[position]``; returns a :class:`ConsumerSide`.  17-depth.md section 5."""
    h = check_batch(X, net.in_shape, "X")
    for layer in net.layers[:position]:
        h = layer.forward(h)
    a = _to_units(np.array(h, dtype=np.float64))
    out = net.forward(X)
    N = out.shape[0]
    F = out.reshape(N, -1)
    _, E = loss.value_and_grad(F, Y)
    cols, _ = metric_columns(F, E, Y, loss, metric, "exact", 1, None)
    q = np.stack([input_cotangent(net, position, c.reshape(out.shape)) for c in cols], axis=1)
    e = input_cotangent(net, position, np.asarray(E).reshape(out.shape))
    return ConsumerSide(position, a, q, e, has_padding(net.layers[position]))


def new_rows(side: ConsumerSide, B, s, cot, names) -> np.ndarray:
    """Jacobian rows of the inserted parameters ``names`` (a PARAM_SETS value) for the cotangent
    ``cot`` (N, ..., k, T) at the consumer's input: ``(N, ..., m)`` with columns in the grown
    network's flat order (B row-major, s, then per-unit v, c, l blocks).  17-depth.md section 5."""
    Binv = np.linalg.inv(B)
    beta = np.einsum("ju,...jt->...ut", Binv, cot)                  # B^-T cot on the unit axis
    z = np.einsum("uj,njt->nut", B, side.a) + s[None, :, None]
    extra = (slice(None),) + (None,) * (cot.ndim - 3)
    blocks = []
    if "W" in names:
        rows = np.einsum("n...ut,njt->n...uj", beta, side.a)
        blocks += [rows.reshape(rows.shape[:-2] + (-1,)), beta.sum(axis=-1)]
    act = [n for n in names if n in ("v", "c", "l")]
    ps = psi(z, act)[extra]                                           # (N, [1,] k, T, m)
    rows = np.einsum("...ut,...utm->...mu", beta, ps)
    blocks.append(rows.reshape(rows.shape[:-2] + (-1,)))
    return np.concatenate(blocks, axis=-1)
