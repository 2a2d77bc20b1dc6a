"""Gradient checks: directional central differences and the dot-product test.

For a map ``f: R^P -> R^M`` with hand-written forward-mode ``jvp(u) = J u`` and
reverse-mode ``vjp(v) = J^T v``:

* **finite differences** — ``J u`` is compared with the Richardson-extrapolated
  central difference ``D(h) = (f(x + h u) - f(x - h u)) / (2h)``,
  ``(4 D(h/2) - D(h)) / 3``, whose truncation error is O(h^4);
* **dot-product test** — ``<u, J^T v> = <J u, v>`` for random ``u``, ``v``; it
  holds to rounding error when the two passes are adjoint, independently of
  any step size.

Together they pin both passes: FD checks the JVP against the forward pass, the
dot-product test checks the VJP against the JVP.  See
``derivations/01-conventions.md`` section 1.4 "Checking passes" (per-block checks and
the floor for tiny blocks: :func:`check_blocks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .testing import relative_error


#: blocks whose JVP is smaller than this fraction of the largest block's are measured
#: against that floor instead of their own size (see :func:`check_blocks`)
BLOCK_FLOOR = 1e-4


@dataclass
class CheckResult:
    """Errors of one check.

    ``fd_error``  : JVP vs finite differences, relative 2-norm;
    ``dot_error`` : ``|<u,J^T v> - <J u,v>| / (|u||J^T v| + |J u||v|)``.
    For block checks (:func:`check_blocks`, used by :func:`check_layer` and
    :func:`check_network`) both are the maxima over the blocks, and
    ``block_errors`` / ``block_dot_errors`` map each block name (``"input"``, a parameter
    name or a network parameter key) to its own error."""
    fd_error: float
    dot_error: float
    block_errors: dict = field(default_factory=dict)
    block_dot_errors: dict = field(default_factory=dict)

    def ok(self, fd_tol: float = 1e-6, dot_tol: float = 1e-10) -> bool:
        return self.fd_error <= fd_tol and self.dot_error <= dot_tol


def central_difference(f, x: np.ndarray, u: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Richardson-extrapolated central difference of ``f`` at ``x`` along ``u``.

    ``D(h) = (f(x+hu) - f(x-hu)) / 2h``; returns ``(4 D(h/2) - D(h)) / 3``.
    ``h`` is scaled by ``max(1, |x|_inf) / |u|_inf`` so that the step is relative.
    """
    x = np.asarray(x, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    unorm = np.abs(u).max()
    if unorm == 0:
        return np.zeros_like(np.asarray(f(x), dtype=np.float64))
    step = h * max(1.0, float(np.abs(x).max(initial=0.0))) / unorm

    def d(s):
        return (np.asarray(f(x + s * u)) - np.asarray(f(x - s * u))) / (2 * s)

    return (4 * d(step / 2) - d(step)) / 3


def dot_product_error(u, vjp_v, ju, v) -> float:
    """Normalised mismatch of the adjoint identity ``<u, J^T v> = <J u, v>``."""
    lhs = float(np.vdot(np.ravel(u), np.ravel(vjp_v)))
    rhs = float(np.vdot(np.ravel(ju), np.ravel(v)))
    scale = (np.linalg.norm(u) * np.linalg.norm(vjp_v) + np.linalg.norm(ju) * np.linalg.norm(v))
    return abs(lhs - rhs) / max(scale, 1e-300)


def check_function(f, jvp, vjp, x, rng: np.random.Generator, h: float = 1e-4) -> CheckResult:
    """Check ``jvp``/``vjp`` of a flat map ``f`` at ``x`` along a random direction."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(f(x))
    u = rng.standard_normal(x.shape)
    v = rng.standard_normal(y.shape)
    ju = np.asarray(jvp(u))
    fd = central_difference(f, x, u, h)
    return CheckResult(relative_error(ju, fd), dot_product_error(u, vjp(v), ju, v))


def check_blocks(f, jvp, vjp, x, blocks: dict, rng: np.random.Generator, h: float = 1e-4,
                 floor: float = BLOCK_FLOOR) -> CheckResult:
    """Check ``jvp``/``vjp`` of a flat map ``f`` at ``x`` block by block.

    ``blocks`` maps names to slices of ``x`` (the input, each parameter).  For every
    non-empty block ``b`` a random tangent ``u_b`` (zero outside the block) is drawn;

    * FD: ``e_b = ||J u_b - D_b|| / max(||D_b||, ||J u_b||, floor * S)`` with ``D_b`` the
      Richardson difference along ``u_b`` and ``S = max_c ||D_c||`` the largest block's
      size.  A joint check of all blocks at once is dominated by the O(1) blocks and
      cannot see an error in a block whose derivative is tiny (d sigma/d l ~ eps x at the
      rational identity point); per block it can.  The floor is there because the FD
      rounding error ``~ eps_mach |f| / h`` does not shrink with the block: blocks
      smaller than ``floor * S`` are measured in absolute terms, ``|error| / (floor * S)``.
      With ``floor = 1e-4`` a tolerance of 1e-6 still flags any absolute error above
      1e-10 S in a tiny block (a zeroed 1e-8 S block gives e_b ~ 1e-4).
    * dot product: ``|<u_b, (J^T v)_b> - <J u_b, v>| / (|u_b||(J^T v)_b| + |J u_b||v|)``
      with one random ``v`` and one VJP for all blocks.

    ``fd_error``/``dot_error`` are the maxima over blocks.  derivations/01-conventions.md 1.4.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(f(x))
    v = rng.standard_normal(y.shape)
    jtv = np.asarray(vjp(v)).ravel()
    parts = {}
    for name, sl in blocks.items():
        if sl.stop - sl.start == 0:
            continue
        u = np.zeros(x.size)
        u[sl] = rng.standard_normal(sl.stop - sl.start)
        u = u.reshape(x.shape)
        parts[name] = (u, np.asarray(jvp(u)), central_difference(f, x, u, h))
    scale = max([float(np.linalg.norm(fd)) for _, _, fd in parts.values()] + [0.0])
    fd_err, dot_err = {}, {}
    for name, (u, ju, fd) in parts.items():
        denom = max(float(np.linalg.norm(fd)), float(np.linalg.norm(ju)), floor * scale, 1e-300)
        fd_err[name] = float(np.linalg.norm(np.ravel(ju) - np.ravel(fd)) / denom)
        sl = blocks[name]
        dot_err[name] = float(dot_product_error(np.ravel(u)[sl], jtv[sl], ju, v))
    return CheckResult(max(fd_err.values(), default=0.0), max(dot_err.values(), default=0.0),
                       fd_err, dot_err)


def check_layer(layer, X: np.ndarray, rng: np.random.Generator, h: float = 1e-4,
                wrt_input: bool = True, floor: float = BLOCK_FLOOR) -> CheckResult:
    """Gradient-check one layer at input ``X``, block by block (input, each parameter).

    Builds the flat map ``z = (X, params) -> layer.forward(X)`` and checks
    ``layer.jvp`` against finite differences and ``layer.backward`` against
    ``layer.jvp`` by the dot-product test, separately for each block
    (:func:`check_blocks`; ``block_errors`` keys ``"input"`` and the parameter names).
    Parameters are written and restored in place, so the layer keeps its arrays.
    Set ``wrt_input=False`` for layers whose input is not differentiable
    (none so far).
    """
    X = np.asarray(X, dtype=np.float64)
    names = list(layer.param_names)
    saved = {k: layer.params[k].copy() for k in names}
    sizes = [X.size if wrt_input else 0] + [saved[k].size for k in names]
    offsets = np.cumsum([0] + sizes)
    blocks = {"input": slice(0, int(offsets[1]))} if wrt_input else {}
    blocks.update({k: slice(int(offsets[i + 1]), int(offsets[i + 2])) for i, k in enumerate(names)})

    def unpack(z):
        Xz = z[:offsets[1]].reshape(X.shape) if wrt_input else X
        ps = {k: z[offsets[i + 1]:offsets[i + 2]].reshape(saved[k].shape) for i, k in enumerate(names)}
        return Xz, ps

    def restore():
        for k in names:
            layer.params[k][...] = saved[k]

    def f(z):
        Xz, ps = unpack(z)
        for k in names:
            layer.params[k][...] = ps[k]
        try:
            return layer.forward(Xz).ravel()
        finally:
            restore()

    z0 = np.concatenate([X.ravel() if wrt_input else np.zeros(0)] + [saved[k].ravel() for k in names])
    Y = layer.forward(X)

    def jvp(u):
        du_X, du_p = unpack(u)
        layer.forward(X)
        return layer.jvp(du_X if wrt_input else None, du_p).ravel()

    def vjp(v):
        layer.forward(X)
        dX, grads = layer.backward(v.reshape(Y.shape), need_input_grad=wrt_input)
        parts = [dX.ravel()] if wrt_input else []
        return np.concatenate(parts + [grads[k].ravel() for k in names])

    try:
        return check_blocks(f, jvp, vjp, z0, blocks, rng, h, floor)
    finally:
        restore()
        layer.forward(X)


def check_network(net, X: np.ndarray, rng: np.random.Generator, h: float = 1e-4,
                  floor: float = BLOCK_FLOOR) -> CheckResult:
    """Gradient-check a whole network in its flat parameter vector, block by block.

    ``f(theta) = net.forward(X)`` with ``theta = net.get_flat()``; the JVP is
    ``net.jvp_flat(u)`` and the VJP ``net.backward(v).flat_grad``; the blocks are the
    parameter keys (``net.param_slices()``, :func:`check_blocks`).
    The network's parameters are restored afterwards (in place).
    """
    X = np.asarray(X, dtype=np.float64)
    theta0 = net.get_flat()

    def f(theta):
        net.set_flat(theta)
        try:
            return net.forward(X).ravel()
        finally:
            net.set_flat(theta0)

    Y = net.forward(X)

    def jvp(u):
        net.forward(X)
        return net.jvp_flat(u).ravel()

    def vjp(v):
        net.forward(X)
        return net.backward(v.reshape(Y.shape)).flat_grad()

    try:
        return check_blocks(f, jvp, vjp, theta0, net.param_slices(), rng, h, floor)
    finally:
        net.set_flat(theta0)
        net.forward(X)
