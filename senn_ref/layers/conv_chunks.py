"""How ``Conv2D`` splits a batch into chunks and runs them: chunk sizes, the thread pool, BLAS.

A conv pass is a loop over chunks of examples (``Conv2D._map_chunks``): each chunk unfolds its
columns into a workspace that stays in cache (about :data:`_CHUNK_BYTES`), multiplies them in
per-example GEMMs and writes its own slice of the output.  :func:`chunks` sizes the chunks
(their number a multiple of :data:`_BALANCE` = 2, so two cores get equal work - a constant,
not the worker count, so that the chunks and hence the summation order are the same on every
machine); :func:`map_chunks` runs them, on a pool of (at most) two threads whenever there is
more than one chunk, in chunk order for the results.  The Numba kernels are compiled with
``nogil=True`` and NumPy's matmul releases the GIL, so the two threads run in parallel.

**BLAS on one thread inside the pool.**  While the pool runs, BLAS is limited to one thread
(``threadpoolctl``; a cached controller costs about 4 us per pass).  Otherwise each of the two
pool threads calls a multithreaded OpenBLAS on GEMMs above its threading threshold
(m n k >= 262144, e.g. the 1.8-MFLOP per-example GEMMs of 16->32 channels on 14x14): four busy
threads on two cores, which on this project's loaded machine made one forward+backward pass
20-80x slower (N = 64: 16->32 channels 14x14 1.98 s against 27 ms, 32->64 channels 28x28
5.3 s against 0.28 s, measured side by side; before this module, layers above 2 MFLOP per
example ran serially with a multithreaded BLAS and were as slow).  ``derivations/03-convolution.md`` section 6,
"Threads", has the measurements.  Results do not depend on thread scheduling or on the core
count: the chunks depend only on the shapes, every chunk writes its own slice, partial sums
are added in chunk order, and a pass of two or more chunks always runs BLAS on one thread
(serially too, with one worker), so its bits do not depend on the BLAS thread setting either
(``tests/test_conv2d.py::test_threaded_chunks_are_deterministic``,
``test_chunks_do_not_depend_on_the_worker_count``).  A pass of a single chunk runs on the
calling thread with the caller's BLAS setting: OpenBLAS's GEMM results can differ in the last
bits between one and two threads (32->64 channels 28x28, measured), which is why the demos pin
BLAS to one thread.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

#: target size in bytes of one chunk of unfolded columns (fits in L2/L3 cache)
_CHUNK_BYTES = 2 ** 21
_WORKERS = max(1, min(2, os.cpu_count() or 1))
#: the chunk count of a multi-chunk pass is a multiple of this (the largest worker count)
_BALANCE = 2
_pool: ThreadPoolExecutor | None = None
_blas = None            # threadpoolctl controller (created on first use), or False without it


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="senn-conv")
    return _pool


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool object but not its threads: start afresh."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def one_blas_thread():
    """A context limiting BLAS to one thread (a no-op without ``threadpoolctl``)."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController()
        except ImportError:                       # pragma: no cover - it is a dependency
            _blas = False
    return _blas.limit(limits=1, user_api="blas") if _blas else nullcontext()


def chunks(N: int, per_example_bytes: int) -> list:
    """Contiguous slices of a batch of ``N``, each with at most about ``_CHUNK_BYTES`` of
    columns (``per_example_bytes`` each); more than one chunk means a multiple of the
    :data:`_BALANCE` (balanced work on two cores; independent of the machine, so that the
    summation order is too)."""
    count = -(-N // max(1, _CHUNK_BYTES // per_example_bytes))          # ceil
    if count > 1:
        count = min(N, -(-count // _BALANCE) * _BALANCE)
    step = -(-N // count)
    return [slice(s, min(s + step, N)) for s in range(0, N, step)]


def map_chunks(job, slices: list) -> list:
    """``[job(sl) for sl in slices]``: with two or more chunks, BLAS on one thread and (with two
    or more workers) on the thread pool; a single chunk on the calling thread as it is."""
    if len(slices) > 1:
        with one_blas_thread():
            if _WORKERS > 1:
                return list(_executor().map(job, slices))
            return [job(sl) for sl in slices]
    return [job(sl) for sl in slices]
