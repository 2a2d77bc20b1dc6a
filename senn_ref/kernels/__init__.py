"""Hot loops: Numba kernels with plain NumPy twins, selected by ``senn_ref.backend``."""
from .dispatch import as_pair, conv_geometry, conv_output_size, fold, kernels_for, unfold

__all__ = ["as_pair", "conv_geometry", "conv_output_size", "fold", "kernels_for", "unfold"]
