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
``derivations/01-conventions.md`` section "Checking passes".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .testing import relative_error


@dataclass
class CheckResult:
    """Errors of one check: ``fd_error`` (JVP vs finite differences, relative
    2-norm) and ``dot_error`` (|<u,J^T v> - <J u,v>| / (|u||J^T v| + |J u||v|))."""
    fd_error: float
    dot_error: float

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


def check_layer(layer, X: np.ndarray, rng: np.random.Generator, h: float = 1e-4,
                wrt_input: bool = True) -> CheckResult:
    """Gradient-check one layer at input ``X`` jointly in its input and parameters.

    Builds the flat map ``z = (X, params) -> layer.forward(X)`` and checks
    ``layer.jvp`` against finite differences and ``layer.backward`` against
    ``layer.jvp`` by the dot-product test.  Parameters are restored afterwards.
    Set ``wrt_input=False`` for layers whose input is not differentiable
    (none so far).
    """
    X = np.asarray(X, dtype=np.float64)
    names = list(layer.param_names)
    saved = {k: layer.params[k].copy() for k in names}
    sizes = [X.size if wrt_input else 0] + [saved[k].size for k in names]
    offsets = np.cumsum([0] + sizes)

    def unpack(z):
        Xz = z[:offsets[1]].reshape(X.shape) if wrt_input else X
        ps = {k: z[offsets[i + 1]:offsets[i + 2]].reshape(saved[k].shape) for i, k in enumerate(names)}
        return Xz, ps

    def f(z):
        Xz, ps = unpack(z)
        for k in names:
            layer.params[k] = ps[k].copy()
        try:
            return layer.forward(Xz).ravel()
        finally:
            for k in names:
                layer.params[k] = saved[k].copy()

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

    return check_function(f, jvp, vjp, z0, rng, h)


def check_network(net, X: np.ndarray, rng: np.random.Generator, h: float = 1e-4) -> CheckResult:
    """Gradient-check a whole network in its flat parameter vector.

    ``f(theta) = net.forward(X)`` with ``theta = net.get_flat()``; the JVP is
    ``net.jvp_flat(u)`` and the VJP ``net.backward(v).flat_grad``.
    The network's parameters are restored afterwards.
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

    return check_function(f, jvp, vjp, theta0, rng, h)
