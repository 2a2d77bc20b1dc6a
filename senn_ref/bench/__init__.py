"""Benchmarks that print ratios measured side by side in one process.

``kernels`` (conv and pooling passes: Numba vs NumPy twin vs PyTorch CPU; conv and dense
as a fraction of an interleaved NumPy GEMM), ``rational`` (the fused rational-activation
kernel vs its NumPy twin), ``peers`` (issue 12's table against ``jax.jit`` and PyTorch,
each peer's numbers checked equal to ours first), ``eta`` (exact and CG expansion score against K-FAC at each
layer width), ``optimizers`` (K-FAC against Adam: loss per epoch, time per step).
Every timing goes through :func:`senn_ref.bench.timing.compare` (warm-up, interleaved
rounds repeated until the ratio is stable, spread reported); rows are printed as they are
measured, with progress lines on stderr.  Each module has ``run(quick=False)``; the CLI
is ``senn-ref bench NAME``.
"""
