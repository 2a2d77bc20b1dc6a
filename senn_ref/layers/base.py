"""The contract every layer follows.

A layer maps a batch ``X`` of shape ``(N,) + in_shape`` to ``Y`` of shape
``(N,) + out_shape``.  It owns its parameters (``self.params``, a dict whose
key order is the layer's part of the flat parameter order) and knows three
passes, all written by hand:

``forward(X) -> Y``
    Computes the output and caches what the other two passes need (inputs,
    unfolded patches, pre-activations).  A cached input is a private copy (see
    ``_private_input``): the caller may reuse its buffer after ``forward``.  ``Y`` is
    a new array, never a view of ``X`` or of the cache: the Network relies on this
    when it passes ``Y`` on without a copy (``forward_private``).  The cache belongs to the most recent
    forward call; ``backward`` and ``jvp`` only read it, so they may be called
    many times after one forward (the curvature code does exactly that).

``backward(dY, need_input_grad=True) -> (dX, grads)``
    Vector-Jacobian product.  ``dY`` has the shape of ``Y``; row ``n`` is the
    cotangent of example ``n``.  ``grads[name]`` has the shape of
    ``params[name]`` and is the *sum over the batch* of the per-example
    contributions ``J_n^T dY_n``.  (To get the gradient of a mean loss, pass
    ``dY = e / N``.)  ``dX`` is ``None`` when ``need_input_grad`` is false.

``jvp(dX, dparams) -> dY``
    Jacobian-vector (forward-mode) product at the cached point:
    ``dY = (dY/dX) dX + sum_p (dY/dp) dparams[p]``, per example.  ``dX=None``
    means a zero input tangent; a parameter missing from ``dparams`` (or
    ``dparams=None``) means a zero parameter tangent.

Curvature hooks (used by K-FAC / KFC in issue 3; only layers with a
Kronecker-factored block implement them, i.e. Dense and Conv2D):

``curvature_inputs() -> (N, T, D_in)``
    The per-location inputs ``a`` of the last forward (dense: ``T = 1`` and the
    layer input; conv: the ``T = Ho*Wo`` unfolded patches, ``D_in = C*kh*kw``).
    The bias column is *not* included; K-FAC code folds it in.

``curvature_outgrads(dY) -> (N, T, D_out)``
    The same per-location layout for a cotangent of the layer output (the
    gradient w.r.t. the pre-activation ``s``): dense ``dY[:, None, :]``, conv
    ``dY`` moved to ``(N, Ho*Wo, O)``.

With these, ``grads["W"]`` equals ``sum_{n,t} d_{n,t} a_{n,t}^T`` reshaped to
the weight's shape and ``grads["b"]`` equals ``sum_{n,t} d_{n,t}``; tests
check this identity for every such layer.

See ``derivations/01-conventions.md``.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_positive_int, check_shape, checked_or_none


class Layer:
    """Base class; see the module docstring for the contract."""

    #: parameter names in flat order (subclasses override)
    param_names: tuple[str, ...] = ()
    #: True for layers with a Kronecker-factored curvature block (Dense, Conv2D)
    has_kfac_block: bool = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.name: str | None = None      # assigned by the Network, unique within it
        self._cache: dict | None = None

    # ---- shapes ---------------------------------------------------------
    @property
    def in_shape(self) -> tuple[int, ...]:
        """Per-example input shape (no batch axis)."""
        raise NotImplementedError

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-example output shape for a per-example input shape."""
        raise NotImplementedError

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def config(self) -> dict:
        """Keyword arguments that rebuild this layer's structure (JSON-serialisable).

        ``type(layer)(**layer.config())`` gives a layer of the same shapes whose
        parameters are then overwritten (``senn_ref.checkpoint``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define config()")

    def set_in_shape(self, in_shape) -> None:
        """Layers with parameters derive their shapes from their arrays: resize those instead.
        Parameter-free layers (:class:`ParameterFree`) override this."""
        raise TypeError(f"{self._label()} derives its input shape from its parameters; "
                        f"resize its arrays instead")

    # ---- passes ---------------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dY: np.ndarray, need_input_grad: bool = True):
        raise NotImplementedError

    def jvp(self, dX: np.ndarray | None, dparams: dict | None = None) -> np.ndarray:
        raise NotImplementedError

    def backward_input(self, dY: np.ndarray) -> np.ndarray:
        """Only the input cotangent ``dX`` of :meth:`backward` (the same numbers), for passes
        that need no parameter gradients (the K-FAC factors back-propagate metric columns and
        read only the layers' output cotangents).  Layers whose parameter gradients cost
        real work (Dense, Conv2D, Rational) override it to skip them.
        ``derivations/11-kfac.md`` section 3."""
        return self.backward(dY, need_input_grad=True)[0]

    def backward_per_example(self, dY: np.ndarray, need_input_grad: bool = True):
        """VJP keeping the batch axis of the parameter gradients: ``(dX, grads)`` with
        ``grads[name][n] = J_n^T dY_n`` for that parameter, shape ``(N,) + params[name].shape``
        (so ``grads[name].sum(axis=0)`` is what :meth:`backward` returns); ``dX`` as in
        :meth:`backward`.  Parameter-free layers inherit this default (``grads = {}``);
        layers with parameters override it, and one that does not raises
        NotImplementedError (the exact Jacobian then falls back to forward mode).
        See ``derivations/09-fisher.md`` section 3b."""
        if self.param_names:
            raise NotImplementedError(f"{self._label()} has no per-example backward pass")
        return self.backward(dY, need_input_grad=need_input_grad)

    # ---- curvature hooks --------------------------------------------------
    def curvature_inputs(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no Kronecker-factored block")

    def curvature_outgrads(self, dY: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no Kronecker-factored block")

    # ---- helpers for subclasses -------------------------------------------
    def _param_shapes(self) -> tuple:
        """Shapes of the parameter arrays in ``param_names`` order (``()`` without parameters)."""
        return tuple(tuple(self.params[k].shape) for k in self.param_names)

    def _set_cache(self, **entries) -> None:
        """Store the forward cache together with the parameter shapes it was computed for."""
        entries["param_shapes"] = self._param_shapes()
        self._cache = entries

    def _cached(self) -> dict:
        """The last forward's cache; RuntimeError if there is none, or if a parameter array
        was replaced by one of another shape since (growth without a new forward: the
        cached inputs/columns/partials no longer match the layer)."""
        if self._cache is None:
            raise RuntimeError(f"{self._label()}: call forward() before backward()/jvp()")
        shapes = self._cache.get("param_shapes")
        if shapes is not None and shapes != self._param_shapes():
            raise RuntimeError(f"parameters of {self._label()} changed shape since forward(); "
                               f"call forward() again")
        return self._cache

    def _check_input(self, X, name: str = "X") -> np.ndarray:
        """Validate a forward input: float dtype, finite, per-example shape == in_shape."""
        arr = checked_or_none(X, (None,) + tuple(self.in_shape))
        if arr is not None:
            return arr
        arr = as_float_array(X, f"{self._label()} input {name}", ndim=len(self.in_shape) + 1)
        check_shape(arr, (None,) + tuple(self.in_shape), f"{self._label()} input {name}")
        return arr

    def _private_input(self, X, name: str = "X") -> np.ndarray:
        """:meth:`_check_input`, returning an array the caller cannot reach.

        The validated array is the caller's own object whenever ``X`` is already a
        C-contiguous float64 array; a layer that caches its input copies it then, so
        mutating ``X`` after ``forward`` cannot change later ``backward``/``jvp`` results.
        (``np.may_share_memory`` is a bounds test: it may copy needlessly, never miss.)"""
        arr = self._check_input(X, name)
        if (not self.__dict__.get("_input_is_private", False) and isinstance(X, np.ndarray)
                and np.may_share_memory(arr, X)):
            arr = arr.copy()
        return arr

    def forward_private(self, X: np.ndarray) -> np.ndarray:
        """``forward(X)`` for an ``X`` that no one else holds or will write to, such as the
        activation a :class:`~senn_ref.network.Network` passes from one layer to the next:
        the defensive copy of ``_private_input`` is skipped (the results are identical)."""
        self._input_is_private = True
        try:
            return self.forward(X)
        finally:
            self._input_is_private = False

    def _check_outgrads(self, dY) -> np.ndarray:
        """Validate a cotangent of the layer output for the curvature hooks:
        float, finite, shape ``(N,) + output_shape(in_shape)`` for any batch size ``N``."""
        out_shape = tuple(self.output_shape(self.in_shape))
        arr = checked_or_none(dY, (None,) + out_shape)
        if arr is not None:
            return arr
        arr = as_float_array(dY, f"{self._label()} output cotangent", ndim=len(out_shape) + 1)
        check_shape(arr, (None,) + out_shape, f"{self._label()} output cotangent")
        return arr

    def _check_like(self, arr, shape: tuple, what: str) -> np.ndarray:
        """Validate a cotangent/tangent against an exact shape (batch included)."""
        out = checked_or_none(arr, tuple(shape))
        if out is not None:
            return out
        out = as_float_array(arr, f"{self._label()} {what}", ndim=len(shape))
        check_shape(out, tuple(shape), f"{self._label()} {what}")
        return out

    def _param_tangent(self, dparams: dict | None, key: str) -> np.ndarray | None:
        """Fetch and shape-check one parameter tangent (None if absent)."""
        if not dparams or dparams.get(key) is None:
            return None
        return self._check_like(dparams[key], self.params[key].shape, f"tangent of {key}")

    def _check_param_keys(self, dparams: dict | None) -> None:
        if dparams:
            unknown = set(dparams) - set(self.param_names)
            if unknown:
                raise ValueError(f"{self._label()}: unknown parameter(s) {sorted(unknown)}; "
                                 f"this layer has {list(self.param_names)}")

    def _label(self) -> str:
        return f"{type(self).__name__}({self.name})" if self.name else type(self).__name__

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"{self._label()}[{shapes}]"


class ParameterFree(Layer):
    """Base of the parameter-free layers (pooling, flatten, elementwise activations), whose
    per-example input shape is configuration: subclasses validate it and store it as
    ``self._in_shape``; this class exposes it, serialises it and lets growth change it."""

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self._in_shape

    def config(self) -> dict:
        return {"in_shape": list(self._in_shape)}

    def set_in_shape(self, in_shape) -> None:
        """Change the channel/unit count (first entry) of this layer's input.

        Width growth widens the layer in front of a pooling, flattening or elementwise
        layer; this is the explicit state update that keeps the parameter-free layer in
        step.  Only the first entry may change (spatial sizes fix pooling geometry).  The
        forward cache is dropped.  ``derivations/01-conventions.md`` section 1.6.
        """
        if not isinstance(in_shape, (tuple, list)):
            raise TypeError(f"{self._label()}: in_shape must be a tuple, got {type(in_shape).__name__}")
        new = tuple(check_positive_int(v, f"{self._label()} in_shape entry") for v in in_shape)
        old = tuple(self._in_shape)
        if len(new) != len(old) or new[1:] != old[1:]:
            raise ValueError(f"{self._label()}: only the first entry of in_shape may change "
                             f"({old} -> {new})")
        self._in_shape = new
        self._cache = None
