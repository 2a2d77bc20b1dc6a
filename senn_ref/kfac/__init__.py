"""Kronecker-factored curvature: K-FAC (dense), KFC "expand" (conv), exact per-unit blocks
of the Rational activation, damping and inverses, and the K-FAC natural expansion score.

See ``derivations/11-kfac.md``, ``12-kfc-conv.md`` and ``13-rational-curvature.md``.
"""
from .columns import METRICS, MODES
from .damping import (COND_LIMIT, CurvatureWarning, DampedKronInverse, block_inverse, block_solve, factored_damping,
                      kron_solve_exact, kron_solve_factored, sym_eig, sym_inverse, tikhonov,
                      trace_norm_pi)
from .factors import KroneckerFactors, input_factor, kfac_factors, kfac_layers
from .layout import fold, folded_permutation, kron_block_network_order, layer_flat_indices, unfold
from .rational_block import RATIONAL_RCOND, RationalBlocks, rational_blocks, rational_flat_indices
from .score import DAMPING_MODES, kfac_eta

__all__ = ["METRICS", "MODES", "DAMPING_MODES", "COND_LIMIT", "RATIONAL_RCOND", "CurvatureWarning",
           "DampedKronInverse", "KroneckerFactors", "RationalBlocks", "block_inverse", "block_solve",
           "factored_damping", "fold", "folded_permutation", "input_factor", "kfac_eta",
           "kfac_factors", "kfac_layers", "kron_block_network_order", "kron_solve_exact",
           "kron_solve_factored", "layer_flat_indices", "rational_blocks",
           "rational_flat_indices", "sym_eig", "sym_inverse", "tikhonov", "trace_norm_pi", "unfold"]
