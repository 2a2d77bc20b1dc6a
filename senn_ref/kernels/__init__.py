"""Hot loops: Numba kernels with plain NumPy twins, selected by ``senn_ref.backend``."""
from .dispatch import as_pair, conv_geometry, conv_output_size, fold, kernels_for, pool_kernels, unfold
from .dispatch import rational_kernels

__all__ = ["as_pair", "conv_geometry", "conv_output_size", "fold", "kernels_for", "pool_kernels", "unfold",
           "rational_kernels"]
