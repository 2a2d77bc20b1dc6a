"""The natural expansion score under block-diagonal K-FAC.

    eta = sum_l eta_l,   eta_l = vec(V_l)^T (G_l (x) A_l + damping)^-1 vec(V_l)
                                = tr(G_l^-1 V_l A_l^-1 V_l^T)      (undamped)

with ``V_l = [dW_l | db_l]`` (out, in+1) the gradient of the MEAN loss with the
bias folded, plus, for every Rational layer, ``sum_u g_u^T (B_u + delta I)^+ g_u``
over its per-unit exact 3x3 blocks.  Parameters without a block (none among the
current layers) do not contribute.  ``derivations/11-kfac.md`` section 7 and
``derivations/13-rational-curvature.md``; ``tests/test_kfac_score.py``.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_flag, check_network, check_scalar, check_str_option
from .columns import check_options, run_columns
from .damping import DampedKronInverse, block_solve, factored_damping
from .factors import KronAccumulator, kfac_layers
from .layout import fold, has_bias
from .rational_block import RATIONAL_RCOND, RationalAccumulator, unit_gradients

DAMPING_MODES = ("factored", "exact")


def mean_loss_grads(net, record) -> dict:
    """Gradient of the mean loss at the record's forward point: key -> array shaped like the
    parameter (``backward(E/N)``, 01-conventions.md 1.1)."""
    E = record.E.reshape((record.N,) + record.out_shape)
    return net.backward(E / record.N).grads


def kfac_eta(net, X, Y, loss, damping=0.0, metric: str = "euclidean", mode: str = "exact",
             damping_mode: str = "factored", include_rational: bool = True, n_samples: int = 1,
             rng=None, pi=1.0):
    """K-FAC natural expansion score ``(eta_total, {layer name: eta_l})``.

    Parameters
    ----------
    net, X (N,) + in_shape, Y (N, K), loss : as in :func:`kfac_factors`
    damping : delta >= 0.  0 uses pseudo-inverses of the factors (``damping.sym_eig``
        zero tolerance); "factored" damps ``A + pi sqrt(d) I``, ``G + sqrt(d)/pi I``;
        "exact" inverts ``G (x) A + d I`` through eigendecompositions.  The rational
        blocks always use ``B_u + d I`` (pseudo-inverse, relative cut-off RATIONAL_RCOND).
    metric, mode, n_samples, rng : curvature options (see :func:`kfac_factors`)
    include_rational : add the Rational layers' per-unit block contributions
    pi : factored-damping ratio (number or "trace")

    Returns ``(float, dict)``; per-layer entries are floats (a Rational layer's is the
    sum over its units).  ValueError on unknown options, negative damping or a
    network without a Dense/Conv2D layer.  11-kfac.md section 7; tests in
    ``tests/test_kfac_score.py``.
    """
    check_network(net)
    damping = check_scalar(damping, "damping", minimum=0.0)
    check_str_option(damping_mode, DAMPING_MODES, "damping_mode")
    factored_damping(np.eye(1), np.eye(1), damping, pi)         # validates pi for every mode
    check_flag(include_rational, "include_rational")
    n_samples, rng = check_options(metric, mode, n_samples, rng)
    layers = kfac_layers(net)
    kron = KronAccumulator()
    accs = [kron]
    rat = RationalAccumulator() if include_rational else None
    if rat is not None:
        accs.append(rat)
    record = run_columns(net, X, Y, loss, metric, mode, n_samples, rng, accs)
    grads = mean_loss_grads(net, record)
    per_layer: dict[str, float] = {}
    for la in layers:
        f = kron.result[la.name]
        V = fold(grads[f"{la.name}.W"], grads[f"{la.name}.b"] if has_bias(la) else None)
        inv = DampedKronInverse(f.A, f.G, damping, damping_mode, pi)
        per_layer[la.name] = float(np.sum(V * inv.apply(V)))
    if rat is not None:
        for la in net.layers:
            if la.name in rat.result:
                g = unit_gradients(la, {k: grads[f"{la.name}.{k}"] for k in la.param_names})
                x = block_solve(rat.result[la.name].B, g, damping, rcond=RATIONAL_RCOND)
                per_layer[la.name] = float(np.sum(g * x))
    return float(sum(per_layer.values())), per_layer
