"""Cache keys for Numba kernels whose compiled code contains another module's njit functions.

Numba's on-disk cache keeps a kernel's machine code in an index beside the kernel's file; the
index is thrown away only when the time stamp of that one file changes.  A kernel that calls an
njit function of another module (``sequential_numba._rational`` calls
``rational_numba._element``; the CG loop calls ``sequential_numba.sequential_ggn_numba``) has
that function's code compiled into its own, so after an edit of the other module alone it would
load its old code and run the old formulas, silently.  (An installed release never changes its
files; this is about a developer's edit.)

Numba's cache key of an entry includes, besides the argument types and the bytecode, the pickled
values of the function's closure variables.  So each such kernel is built as a closure over
:func:`source_hash` of the files it links in: an edit of one of them gives another hash, the
entry is not found, and the kernel compiles afresh (a new entry in the same index).  The pattern
(one builder per kernel, the built kernel a module attribute, so that kernels still name each
other as module globals, which Numba resolves at compile time)::

    LINKED_SOURCES = ("rational_numba.py",)
    LINKED = linked_source.source_hash(*LINKED_SOURCES)

    def _build_forward(linked):
        @numba.njit(cache=True, nogil=True)
        def sequential_forward_numba(meta, eps, theta, X, ws_width):
            linked      # cache key (linked_source): makes ``linked`` a closure variable
            ...
        return sequential_forward_numba

    sequential_forward_numba = _build_forward(LINKED)

Numba freezes closure variables as constants, so the bare ``linked`` compiles to nothing: the
kernel's machine code and its one specialisation are those of the plain function.  A caller of
a keyed kernel in the same module is keyed too (its cached code contains the callee's);
helpers with ``inline="always"`` are inlined into their callers' IR and have no cache entry of
their own.  ``tests/test_linked_source.py`` finds, for every dispatcher of every kernel module,
the other kernel files its code reaches and checks that it carries exactly their hash, and shows
on a copy of the package that an edit of the rational element reaches the sequential and search
kernels through the same cache dir.  ``derivations/24-sequential-fast-path.md`` section 8.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

#: the folder of the kernel modules, where :func:`source_hash` reads its files
KERNEL_DIR = Path(__file__).parent


def source_hash(*names: str) -> int:
    """A 56-bit key of the kernel files ``names`` (e.g. ``"rational_numba.py"``, in
    :data:`KERNEL_DIR`): the first 7 bytes (little-endian) of SHA-256 over, per file in the
    given order, its name, its length and its bytes (so that moving bytes from one file to the
    next changes the key).  A non-negative int, a closure variable's value that pickles to the
    same bytes in every process.  Reads the files (two small files: a few tens of
    microseconds at import).  Raises ``ValueError`` without names and ``FileNotFoundError``
    for a missing file.  24-sequential-fast-path.md section 8;
    ``tests/test_linked_source.py``."""
    if not names:
        raise ValueError("source_hash: names must name at least one kernel file")
    digest = hashlib.sha256()
    for name in names:
        data = (KERNEL_DIR / name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return int.from_bytes(digest.digest()[:7], "little")
