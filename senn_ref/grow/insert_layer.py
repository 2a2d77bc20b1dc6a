"""Depth growth: insert a layer at its identity point in front of a Dense or Conv2D consumer.

Before ``net.layers[position]`` (the *consumer*, weights ``W``, bias ``b``, input ``a``) two
layers are inserted:

* a linear map ``z = B a + s`` - a ``Dense(k, k)`` (``k = W.shape[1]``) for a Dense
  consumer, a 1x1 ``Conv2D(C, C)`` mixing the ``C`` input channels for a Conv2D consumer;
* a ``Rational`` at its identity point ``(v, c, l) = (0, 0, 1)``, so ``sigma(z) = z / q``
  with ``q = sqrt(1 + EPS)``.

The consumer is rewritten from its original weights so that the function is unchanged:

    W <- q W B^-1,        b <- b - W B^-1 s

(conv: ``B^-1`` mixes the kernel over input channels, ``W'[o, :, i, j] = q W[o, :, i, j] B^-1``,
and the bias correction is summed over kernel positions).  A shift ``s != 0`` in front of a
zero-padded convolution is refused: the consumer pads its *input* with zeros, which the
shift would have had to reach as ``s / q`` for the correction to hold at the border.
``derivations/17-depth.md`` sections 1-3; ``tests/test_depth.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_flag, check_network, check_shape
from ..layers.conv2d import Conv2D
from ..layers.dense import Dense
from ..layers.rational import Rational, identity_scale
from ..optim.state import Optimizer
from .carry_state import StateChange, append_map, check_carry, check_optimizers
from .record import build_record, layout
from .structure import _check_index, is_linear_map

#: largest accepted 2-norm condition number of B.  The preservation error grows like
#: eps * cond(B) * |W| (|a| + |s|): measured 3.7e-15, 2.6e-13, 9.2e-11, 2.3e-9 max-abs at
#: cond 1e2, 1e4, 1e6, 1e8 (17-depth.md section 1), so beyond 1e6 the 1e-10 guarantee is gone
COND_LIMIT = 1e6


def consumer_at(net, position):
    """``(index, layer)`` of the consumer at ``position`` (int); TypeError/ValueError naming
    ``position`` unless it indexes a Dense or Conv2D.  17-depth.md section 1."""
    i = _check_index(net, position, "position")
    layer = net.layers[i]
    if not is_linear_map(layer):
        raise ValueError(f"position: net.layers[{i}] is {layer._label()}; a layer can only be inserted "
                         f"in front of a Dense or Conv2D consumer")
    return i, layer


def consumer_width(layer) -> int:
    """``k``: inputs of a Dense consumer (``W.shape[1]``) or input channels of a Conv2D.
    17-depth.md section 1."""
    return int(layer.params["W"].shape[1])


def has_padding(layer) -> bool:
    """True for a Conv2D consumer with zero padding (then only ``s = 0`` preserves the function;
    17-depth.md section 2)."""
    return isinstance(layer, Conv2D) and any(p > 0 for p in layer.padding)


def depth_supported(net, i, shift: bool = True) -> bool:
    """True when :func:`insert_layer` accepts an insertion before ``net.layers[i]``.

    ``i`` must index a Dense or Conv2D.  With ``shift=True`` (what the proposal search needs:
    it moves ``s`` freely) a zero-padded Conv2D consumer is excluded, since it accepts only
    ``s = 0``; ``shift=False`` asks whether ``s = 0`` insertions are accepted.
    ``derivations/17-depth.md`` section 1.  ``net`` not a Network or ``shift`` not a bool
    raise TypeError; any other ``i`` that :func:`insert_layer` would refuse gives False."""
    check_network(net)
    check_flag(shift, "shift")
    try:
        _, layer = consumer_at(net, i)
    except (TypeError, ValueError):
        return False
    return not (shift and has_padding(layer))


def check_insertion(net, position, B, s=None):
    """Validate an insertion; returns ``(index, consumer, k, B (k, k), s (k,), cond)``: float64
    copies of ``B`` and ``s`` and ``cond`` = the 2-norm condition number of ``B`` (``sv_max /
    sv_min``, as ``np.linalg.cond``; finite here), computed once for the check and the record.

    Errors name the argument: ``position`` not a Dense/Conv2D index, ``B``/``s`` of the wrong
    shape, non-finite, ``B`` singular or with 2-norm condition number above
    :data:`COND_LIMIT` (the number is in the message), ``s != 0`` before a padded Conv2D.
    ``derivations/17-depth.md`` section 1."""
    i, layer = consumer_at(net, position)
    k = consumer_width(layer)
    B = as_float_array(B, "B", ndim=2)
    check_shape(B, (k, k), "B")
    if s is None:
        s = np.zeros(k)
    s = as_float_array(s, "s", ndim=1)
    check_shape(s, (k,), "s")
    sv = np.linalg.svd(B, compute_uv=False)
    cond = np.inf if sv[-1] == 0 else sv[0] / sv[-1]
    if not cond <= COND_LIMIT:
        raise ValueError(f"B: condition number {cond:.3e} exceeds COND_LIMIT = {COND_LIMIT:.0e} "
                         f"(singular or nearly so); the consumer's weights W B^-1 would not preserve "
                         f"the function")
    if has_padding(layer) and np.any(s != 0):
        raise ValueError(f"s: must be 0 in front of {layer._label()}, which zero-pads its input by "
                         f"{layer.padding}; the padded zeros would not carry the shift, so "
                         f"b - W B^-1 s cannot compensate it at the border")
    return i, layer, k, B.copy(), s.copy(), float(cond)


def rewritten_consumer(layer, B, s):
    """``(W', b')``: ``W' = q W B^-1`` (conv: over input channels) and ``b' = b - W B^-1 s``
    (conv: summed over kernel positions), ``q = sqrt(1 + EPS)``.  New arrays, shapes of W, b.
    ``derivations/17-depth.md`` section 2."""
    W, b = layer.params["W"], layer.params["b"]
    q = 1.0 / identity_scale()
    Wm = np.moveaxis(W, 1, -1)                              # (O, [kh, kw,] k)
    k = B.shape[0]
    WBinv = np.linalg.solve(B.T, Wm.reshape(-1, k).T).T.reshape(Wm.shape)     # X B = W
    shift = WBinv @ s                                       # (O, [kh, kw])
    b_new = b - shift.reshape(shift.shape[0], -1).sum(axis=1)
    return np.ascontiguousarray(np.moveaxis(q * WBinv, -1, 1)), b_new


def inserted_layers(layer, k: int, B, s):
    """The two new layers (not yet in a network): the linear map holding ``B``, ``s`` and an
    identity Rational (``spatial`` = the consumer's input size for a conv).  17-depth.md section 1."""
    if isinstance(layer, Dense):
        lin = Dense(k, k)
        lin.params["W"][...] = B
        spatial = ()
    else:
        hw = tuple(layer.in_shape[1:])
        lin = Conv2D(k, k, 1, in_hw=hw, backend=layer.backend)
        lin.params["W"][...] = B.reshape(k, k, 1, 1)
        spatial = hw
    lin.params["b"][...] = s
    act = Rational(k, init="identity", spatial=spatial, backend=getattr(layer, "backend", None))
    return lin, act


def consumer_transform(layer, B, s) -> np.ndarray:
    """``T`` ((D+1), (D+1)) with ``abar_new = T abar`` for the consumer's folded K-FAC input
    (bias last): dense ``D = k``, ``T = [[B/q, s/q], [0, 1]]``; conv ``D = C kh kw`` with the
    patch order ``c kh kw + i kw + j``: ``T = [[kron(B, I)/q, kron(s, 1)/q], [0, 1]]``.
    Exact where no patch entry is padding (always when ``s = 0``).  17-depth.md section 4."""
    q = 1.0 / identity_scale()
    m = 1 if isinstance(layer, Dense) else int(np.prod(layer.kernel_size))
    D = B.shape[0] * m
    T = np.zeros((D + 1, D + 1))
    T[:D, :D] = np.kron(B, np.eye(m)) / q
    T[:D, D] = np.repeat(s, m) / q
    T[D, D] = 1.0
    return T


def insert_layer(net, position, B, s=None, optimizer=None):
    """Insert ``z = B a + s`` and identity rationals before ``net.layers[position]``, in place.

    Parameters
    ----------
    net : Network;  position : index of the consuming Dense or Conv2D (any, incl. 0 and the output)
    B : (k, k) invertible, condition number <= COND_LIMIT; k = Dense ``W.shape[1]`` or Conv2D ``C``
    s : (k,) shift, default zeros (must be 0 before a zero-padded Conv2D)
    optimizer : None, one optimiser or a list (SGD, Adam, NaturalGradientCG, KFAC)

    The consumer becomes ``W' = q W B^-1``, ``b' = b - W B^-1 s`` (q = sqrt(1 + EPS); conv: over
    input channels / summed over kernel positions), so every output is unchanged.  Optimiser
    state: an SGD/Adam/NGD-CG optimiser that has state gets zero state for the new layers'
    keys (:meth:`~senn_ref.optim.state.Optimizer.add_grown_state`; Adam marks them grown, so
    their first moment is not bias-corrected, ``derivations/08-optimisers.md`` section 4.1); the consumer keeps its
    keys and shapes, so its per-key state stays bit for bit; a KFAC optimiser's consumer input
    factor becomes ``T A T^T`` (:func:`consumer_transform`), ``G`` is kept and the consumer's
    stored inverses are dropped (recomputed at the next step); consumer state that does not fit
    the consumer's shapes (e.g. kept from before another growth step) is refused (ValueError
    naming ``optimizer``, :func:`~.carry_state.check_carry`).
    Returns the Growth record (kind "insert_layer"): ``new_index`` = the inserted layers'
    parameters, ``rewritten`` = the consumer's keys, ``added_layers`` = the new names.
    Everything is checked before anything changes.  ``derivations/17-depth.md`` sections 1-4;
    ``tests/test_depth.py``.
    """
    i, layer, k, B, s, cond = check_insertion(net, position, B, s)
    opts = check_optimizers(optimizer)
    # the consumer keeps its keys and shapes, so its optimiser state must already fit them
    check_carry(opts, StateChange({f"{layer.name}.{p}": append_map(layer.params[p].shape, 0, 0)
                                   for p in layer.param_names}))
    W_new, b_new = rewritten_consumer(layer, B, s)
    if not (np.all(np.isfinite(W_new)) and np.all(np.isfinite(b_new))):
        raise ValueError("B: the rewritten consumer weights W B^-1 overflow; B is too small")
    lin, act = inserted_layers(layer, k, B, s)
    kfac_updates = []
    T = consumer_transform(layer, B, s)
    for opt in opts:
        factors = getattr(opt, "factors", None)
        if isinstance(factors, dict) and layer.name in factors:
            f = factors[layer.name]
            if f.A.shape != T.shape:
                raise ValueError(f"optimizer: K-FAC factor A of {layer.name!r} has shape {f.A.shape}, "
                                 f"the consumer needs {T.shape}; pad its state first")
            kfac_updates.append((opt, f, T @ f.A @ T.T))
    before = layout(net)
    names = net.insert(i, [lin, act])
    for opt in opts:                      # Adam: the new layers' entries start as grown entries
        if isinstance(opt, Optimizer):
            for new_layer in (lin, act):
                for p in new_layer.param_names:
                    opt.add_grown_state(f"{new_layer.name}.{p}", new_layer.params[p].shape)
    layer.params["W"][...] = W_new
    layer.params["b"][...] = b_new
    layer._cache = None
    for opt, f, A_new in kfac_updates:
        f.A = 0.5 * (A_new + A_new.T)
        opt.inverses.pop(layer.name, None)
    keys = (f"{layer.name}.W", f"{layer.name}.b")
    return build_record("insert_layer", before, net, {}, layers=tuple(names) + (layer.name,),
                        added_layers=tuple(names), rewritten=keys,
                        details={"position": int(i), "consumer": layer.name, "width": int(k),
                                 "condition_number": cond})
