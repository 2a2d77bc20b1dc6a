"""Benchmarks that print ratios measured side by side in one process.

``kernels`` (conv/dense passes: Numba vs NumPy twin vs PyTorch CPU), ``rational`` (the fused
rational-activation kernel vs its NumPy twin), ``eta`` (cost of the
expansion score against layer width), ``optimizers`` (K-FAC against Adam per step).
Each module has ``run(quick=False)``; the CLI is ``senn-ref bench NAME``.
"""
