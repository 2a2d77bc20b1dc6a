"""Convolution geometry and the backend dispatch for unfold / fold.

``unfold(X, kernel, stride, padding)`` and ``fold(P, in_shape, kernel, stride,
padding)`` pick the Numba kernel or its NumPy twin through
:func:`senn_ref.backend.resolve` and check their arguments first.

Output size (one spatial axis, input size ``n``, kernel ``k``, stride ``s``,
zero padding ``p`` on both sides):  ``n_out = floor((n + 2p - k) / s) + 1``,
defined when ``k <= n + 2p``.  See ``derivations/03-convolution.md`` section
"Output size"; checked in ``tests/test_conv2d.py::test_output_size_worked_example``.
"""
from __future__ import annotations

import numpy as np

import importlib

from .. import backend as _backend
from .._validate import as_float_array, check_positive_int
from . import pool_numpy, rational_numpy, unfold_numpy


def _module(family: str, which: str):
    """The kernel module ``senn_ref.kernels.<family>_<which>``, imported on first use.

    Numba and the compiled kernels load only when the ``"numba"`` backend is first
    asked for a kernel of that family (importing ``numba`` and loading the first cached
    kernel took 0.8-1.1 s in a fresh process, measured; ``import senn_ref`` went from
    0.46-0.52 s to 0.23-0.30 s), so a NumPy-backend process never imports Numba, and a
    Numba process loads only the families it uses.  Later calls are a dict lookup."""
    if which == "numpy":
        return {"pool": pool_numpy, "rational": rational_numpy, "unfold": unfold_numpy}[family]
    module = _NUMBA_MODULES.get(family)
    if module is None:
        module = _NUMBA_MODULES[family] = importlib.import_module(f"{__package__}.{family}_numba")
    return module


#: the Numba kernel modules imported so far, by family (a dict lookup per kernel request)
_NUMBA_MODULES: dict = {}


def as_pair(value, name: str, *, minimum: int) -> tuple[int, int]:
    """``value`` (int or length-2 sequence of ints) as a pair of ints ``>= minimum``."""
    if isinstance(value, (tuple, list, np.ndarray)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair, got {value!r}")
        a, b = value
    else:
        a = b = value
    return (check_positive_int(a, name, minimum=minimum), check_positive_int(b, name, minimum=minimum))


def conv_output_size(n: int, k: int, s: int, p: int, name: str = "conv") -> int:
    """``floor((n + 2p - k) / s) + 1``; ValueError if the kernel exceeds the padded input."""
    if k > n + 2 * p:
        raise ValueError(f"{name}: kernel size {k} is larger than the padded input size "
                         f"{n} + 2*{p} = {n + 2 * p}")
    return (n + 2 * p - k) // s + 1


def conv_geometry(hw, kernel, stride, padding, name: str = "conv"):
    """Normalise ``(H, W)``, kernel, stride, padding and return
    ``(kh, kw, sh, sw, ph, pw, Ho, Wo)``."""
    H, W = as_pair(hw, f"{name} input size", minimum=1)
    kh, kw = as_pair(kernel, f"{name} kernel_size", minimum=1)
    sh, sw = as_pair(stride, f"{name} stride", minimum=1)
    ph, pw = as_pair(padding, f"{name} padding", minimum=0)
    Ho = conv_output_size(H, kh, sh, ph, f"{name} (height)")
    Wo = conv_output_size(W, kw, sw, pw, f"{name} (width)")
    return kh, kw, sh, sw, ph, pw, Ho, Wo


def kernels_for(backend: str | None = None):
    """The raw ``(unfold, fold)`` kernel pair of a backend, without argument checks.

    For callers that have validated their arrays and geometry once (``Conv2D``):
    ``unfold_k(X, kh, kw, sh, sw, ph, pw, Ho, Wo)`` and
    ``fold_k(P, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo)``; arrays must be float64.
    """
    which = _backend.resolve(backend)
    module = _module("unfold", which)
    return getattr(module, "unfold_" + which), getattr(module, "fold_" + which)


def kernels_into(backend: str | None = None):
    """The raw ``(unfold_into, fold_into)`` pair of a backend: the same maps as
    :func:`kernels_for`, writing into caller-owned C-contiguous float64 buffers.

    ``unfold_into(X, P, kh, kw, sh, sw, ph, pw, Ho, Wo)`` fills rows ``0 .. C*kh*kw - 1`` of
    ``P (N, >= C*kh*kw, Ho*Wo)`` and leaves any further rows as they are;
    ``fold_into(P, X, kh, kw, sh, sw, ph, pw, Ho, Wo)`` overwrites ``X (N, C, H, W)``.
    No argument checks.  Tested in ``tests/test_kernels.py::test_into_kernels``.
    """
    which = _backend.resolve(backend)
    module = _module("unfold", which)
    return getattr(module, "unfold_into_" + which), getattr(module, "fold_into_" + which)


_POOL_NAMES = ("maxpool_forward", "maxpool_backward", "maxpool_jvp", "avgpool_forward", "avgpool_backward")


def pool_kernels(backend: str | None = None) -> dict:
    """The raw pooling kernels of a backend as a dict ``{name: function}``.

    Names: ``maxpool_forward(X, kh, kw, sh, sw, Ho, Wo) -> (Y, arg)``,
    ``maxpool_backward(dY, arg, H, W, kh, kw, sh, sw) -> dX``,
    ``maxpool_jvp(dX, arg, kh, kw, sh, sw) -> dY``,
    ``avgpool_forward(X, kh, kw, sh, sw, Ho, Wo) -> Y``,
    ``avgpool_backward(dY, H, W, kh, kw, sh, sw) -> dX``.  No argument checks
    (the pooling layers validate); see ``derivations/04-pooling.md``.
    """
    which = _backend.resolve(backend)
    module = _module("pool", which)
    return {name: getattr(module, f"{name}_{which}") for name in _POOL_NAMES}


def rational_kernels(backend: str | None = None) -> dict:
    """The raw rational-activation kernels of a backend as a dict ``{name: function}``.

    Names: ``rational_forward(X, v, c, l, eps) -> (sigma, d_x, d_v, d_c, d_l)`` with
    ``X`` C-contiguous ``(N, U, S)`` and ``v, c, l`` ``(U,)``, every output ``(N, U, S)``;
    ``rational_backward(dS, d_x, d_v, d_c, d_l, need_input_grad) -> (dX, g_v, g_c, g_l)``
    (``dX`` is a placeholder when not needed).  No argument checks (the ``Rational``
    layer validates); see ``derivations/05-rational.md`` "Kernel".
    """
    which = _backend.resolve(backend)
    module = _module("rational", which)
    return {name: getattr(module, f"{name}_{which}") for name in ("rational_forward", "rational_backward")}


def unfold(X, kernel, stride=1, padding=0, backend: str | None = None) -> np.ndarray:
    """im2col.  ``X (N, C, H, W) -> P (N, C*kh*kw, Ho*Wo)`` with
    ``P[n, (c*kh+i)*kw+j, oh*Wo+ow] = Xpad[n, c, oh*sh+i, ow*sw+j]``.

    ``backend``: ``"numba"`` | ``"numpy"`` | ``None`` (process default).
    See ``derivations/03-convolution.md`` "Unfold"; tested in ``tests/test_kernels.py``.
    """
    which = _backend.resolve(backend)
    X = as_float_array(X, "unfold input X", ndim=4)
    kh, kw, sh, sw, ph, pw, Ho, Wo = conv_geometry(X.shape[2:], kernel, stride, padding, "unfold")
    return kernels_for(which)[0](X, kh, kw, sh, sw, ph, pw, Ho, Wo)


def fold(P, in_shape, kernel, stride=1, padding=0, backend: str | None = None) -> np.ndarray:
    """col2im, the adjoint of :func:`unfold`.  ``P (N, C*kh*kw, Ho*Wo) -> X (N, C, H, W)``
    with ``in_shape = (C, H, W)``; ``<unfold(X), P> = <X, fold(P)>`` for all ``X, P``.

    See ``derivations/03-convolution.md`` "Fold"; tested in ``tests/test_kernels.py``.
    """
    which = _backend.resolve(backend)
    if len(in_shape) != 3:
        raise ValueError(f"fold: in_shape must be (C, H, W), got {in_shape!r}")
    C = check_positive_int(in_shape[0], "fold channels")
    kh, kw, sh, sw, ph, pw, Ho, Wo = conv_geometry(in_shape[1:], kernel, stride, padding, "fold")
    H, W = int(in_shape[1]), int(in_shape[2])
    P = as_float_array(P, "fold input P", ndim=3)
    if P.shape[1:] != (C * kh * kw, Ho * Wo):
        raise ValueError(f"fold input P: expected shape (N, {C * kh * kw}, {Ho * Wo}), got {P.shape}")
    return kernels_for(which)[1](P, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo)
