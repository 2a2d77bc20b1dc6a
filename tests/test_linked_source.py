"""Numba cache keys of the kernels that compile in another module's njit code
(senn_ref/kernels/linked_source.py, derivations/24-sequential-fast-path.md section 8).

Numba's cache index is invalidated only by the time stamp of the kernel's own file, so a kernel
that links ``rational_numba._element`` (or the GGN kernel) would load its old machine code after
an edit of the linked file alone.  Every such kernel is a closure over a hash of its linked
sources, which Numba's cache key includes.  Checked here two ways: structurally (every kernel
whose compiled code reaches another module's njit function carries the hash of exactly the
sources it reaches), and end to end on a copy of the package (an edit of the rational element
reaches the sequential and search kernels in a new process with the same cache dir).
"""
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

from senn_ref.kernels import cg_numba, linked_source, search_numba, sequential_numba

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "senn_ref" / "kernels"


def _numba_modules():
    import importlib
    names = sorted(p.stem for p in KERNELS.glob("*_numba.py"))
    return {name: importlib.import_module(f"senn_ref.kernels.{name}") for name in names}


def _code_names(code):
    """Global names a code object and its nested code objects (comprehensions) read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _named_dispatchers(fn):
    """The dispatchers ``fn``'s code names: globals, and attributes of global modules."""
    names = _code_names(fn.py_func.__code__)
    found = []
    for name in names:
        target = fn.py_func.__globals__.get(name)
        if isinstance(target, types.ModuleType):
            found += [getattr(target, attr, None) for attr in names]
        else:
            found.append(target)
    return [d for d in found if isinstance(d, CPUDispatcher)]


def _reaches(fn, seen=None):
    """The kernel files (``*_numba.py`` names) whose njit functions ``fn``'s compiled code
    contains, ``fn``'s own file excluded: every dispatcher it names, followed through its own
    module's dispatchers and into the other modules' (transitively)."""
    seen = set() if seen is None else seen
    own = fn.py_func.__module__
    files = set()
    for target in _named_dispatchers(fn):
        if target in seen:
            continue
        seen.add(target)
        if target.py_func.__module__ != own:
            files.add(target.py_func.__module__.rsplit(".", 1)[1] + ".py")
        files |= _reaches(target, seen)
    return files - {own.rsplit(".", 1)[1] + ".py"}


def test_every_kernel_that_links_another_module_is_keyed_by_its_sources():
    """For every dispatcher in a kernel module (module attributes, helpers included): if its
    compiled code contains another kernel file's njit code, it is a closure whose one cell is
    ``source_hash`` of exactly those files, and the module's ``LINKED_SOURCES`` names them.
    Helpers with ``inline="always"`` are exempt: they are inlined into their callers' IR and
    never cached on their own (cg_numba._apply)."""
    keyed, problems = [], []
    for mod_name, module in _numba_modules().items():
        linked = getattr(module, "LINKED_SOURCES", ())
        for name, fn in sorted(vars(module).items()):
            if not isinstance(fn, CPUDispatcher) or fn.py_func.__module__ != module.__name__:
                continue
            reached = _reaches(fn)
            cells = [c.cell_contents for c in (fn.py_func.__closure__ or ())]
            if not reached:
                if cells:
                    problems.append(f"{mod_name}.{name}: links nothing but is a closure over {cells}")
                continue
            if fn.targetoptions.get("inline") == "always":
                continue
            keyed.append(f"{mod_name}.{name}")
            if set(linked) != reached:
                problems.append(f"{mod_name}.LINKED_SOURCES = {linked}, its kernel {name} reaches {sorted(reached)}")
            if cells != [linked_source.source_hash(*sorted(reached))]:
                problems.append(f"{mod_name}.{name} reaches {sorted(reached)}; closure cells {cells}, "
                                f"expected [source_hash(*{sorted(reached)})]")
    assert not problems, "\n".join(problems)
    # the kernels this concerns today (a new one is covered by the rule above, not this list)
    assert set(keyed) >= {"sequential_numba._rational", "sequential_numba.sequential_forward_numba",
                          "search_numba._objective", "search_numba.width_objective_numba",
                          "search_numba.width_search_numba", "cg_numba.cg_ggn_numba"}, keyed


def test_source_hash_depends_on_every_byte_and_on_the_file_boundaries(tmp_path, monkeypatch):
    """56 bits of SHA-256 over (name, length, bytes) per file: a one-byte edit, another file
    order, or moving bytes from one file to the next give another key; a missing file raises."""
    for name, text in (("a.py", b"x = 1\n"), ("b.py", b"y = 2\n")):
        (tmp_path / name).write_bytes(text)
    monkeypatch.setattr(linked_source, "KERNEL_DIR", tmp_path)
    h = linked_source.source_hash("a.py", "b.py")
    assert 0 <= h < 2 ** 56
    assert h == linked_source.source_hash("a.py", "b.py")
    assert h != linked_source.source_hash("b.py", "a.py")
    (tmp_path / "a.py").write_bytes(b"x = 2\n")
    assert linked_source.source_hash("a.py", "b.py") != h
    (tmp_path / "a.py").write_bytes(b"x = 1\ny")
    (tmp_path / "b.py").write_bytes(b" = 2\n")
    assert linked_source.source_hash("a.py", "b.py") != h
    with pytest.raises(ValueError, match="names"):
        linked_source.source_hash()
    with pytest.raises(FileNotFoundError, match="c.py"):
        linked_source.source_hash("a.py", "c.py")


def test_the_shipped_keys_are_the_hashes_of_the_shipped_sources():
    assert sequential_numba.LINKED_SOURCES == search_numba.LINKED_SOURCES == ("rational_numba.py",)
    assert cg_numba.LINKED_SOURCES == ("sequential_numba.py",)         # the GGN kernel calls no rational code
    for module in (sequential_numba, search_numba, cg_numba):
        assert module.LINKED == linked_source.source_hash(*module.LINKED_SOURCES)


# In a new process on a copy of the package: the sequential forward kernel and the search
# objective (rational candidates) against the rational layer's own kernel, whose cache follows
# rational_numba.py's time stamp.  Prints the largest differences and the cache counters.
CHILD = r"""
import json, numpy as np
from senn_ref.kernels import rational_numba, search_numba, sequential_numba as sq
rng = np.random.default_rng(0)
N, U, eps = 9, 3, 1e-3
X = np.ascontiguousarray(rng.standard_normal((N, U)) * 2.0)      # both branches of the element
v, c, l = rng.standard_normal((3, U))
meta = np.array([[sq.RATIONAL, U, U, 0, 0, U, 2 * U, 0]], dtype=np.int64)
ws, status = sq.sequential_forward_numba(meta, np.array([eps]), np.concatenate([v, c, l]), X, 6 * U)
got = np.concatenate([ws[N * U:2 * N * U], ws[2 * N * U:6 * N * U]])
ref = rational_numba.rational_forward_numba(X.reshape(N, U, 1), v, c, l, eps)
ref = np.concatenate([ref[0].ravel()] + [r.ravel() for r in ref[1:]])
x = rng.standard_normal(N)
R = rng.standard_normal((N, 2))
G_inv = np.array([[2.0, 0.5], [0.5, 1.0]])
theta = np.ascontiguousarray(rng.standard_normal((U, 5)))          # W, b, v, c, l per candidate
values, _ = search_numba.width_objective_numba(np.ascontiguousarray(x[None]), np.ascontiguousarray(R.T), G_inv,
                                               0.1, 1e-12, search_numba.RATIONAL, eps, theta, N < 0)
expect = np.empty(U)
for k in range(U):
    z = (0.0 + theta[k, 0] * x) + theta[k, 1]
    h = rational_numba.rational_forward_numba(z.reshape(N, 1, 1), *(theta[k, 2 + j:3 + j] for j in (0, 1, 2)), eps)[0].ravel()
    d = h @ R / N
    expect[k] = (d @ G_inv @ d) / (h @ h / N + 0.1)
compiled, loaded = [], []                   # the two modules' own kernels (not _unit_constants)
for module in (sq, search_numba):
    for name, fn in sorted(vars(module).items()):
        if hasattr(fn, "_cache_misses") and fn.py_func.__module__ == module.__name__:
            compiled += [name] * sum(fn._cache_misses.values())
            loaded += [name] * sum(fn._cache_hits.values())
print(json.dumps({"status": int(status), "seq_diff": float(np.max(np.abs(got - ref))),
                  "search_rel": float(np.max(np.abs(values - expect) / np.abs(expect))),
                  "sigma": got[:N * U].tolist(), "values": values.tolist(),
                  "compiled": sorted(compiled), "loaded": sorted(loaded)}))
"""


#: the kernels the child calls that contain the rational element's code
LINKED_KERNELS = {"_rational", "sequential_forward_numba", "_objective", "width_objective_numba"}


def _child(root, cache):
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=root,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def _consistent(rep, when):
    assert rep["status"] == -1, (when, rep)
    assert rep["seq_diff"] == 0.0, f"{when}: sequential_forward_numba differs from the rational kernel " \
                                   f"by up to {rep['seq_diff']} (stale linked code)"
    assert rep["search_rel"] < 1e-12, f"{when}: width_objective_numba differs from the rational kernel's " \
                                      f"objective by up to {rep['search_rel']} relative (stale linked code)"


def test_an_edit_of_the_rational_element_reaches_the_linked_kernels(tmp_path):
    """Copy the package, run the kernels (compile), run again (everything loaded from the cache),
    edit a constant in rational_numba._element, run again with the same cache dir: the
    sequential and search kernels give the edited element's values (before the cache key,
    they loaded the old code and kept the old sigma: seq_diff ~1)."""
    root, cache = tmp_path / "copy", tmp_path / "cache"
    shutil.copytree(ROOT / "senn_ref", root / "senn_ref",
                    ignore=shutil.ignore_patterns("__pycache__", "derivations"))
    first = _child(root, cache)
    _consistent(first, "first run")
    assert LINKED_KERNELS < set(first["compiled"]) and not first["loaded"], first
    again = _child(root, cache)
    _consistent(again, "second run")
    # all from the cache: the two kernels called (their cached code contains their callees')
    assert not again["compiled"] and again["loaded"] == ["sequential_forward_numba", "width_objective_numba"], again
    assert again["sigma"] == first["sigma"] and again["values"] == first["values"]
    source = root / "senn_ref" / "kernels" / "rational_numba.py"
    text = source.read_text()
    old = "    ws = 1.0 / (1.0 + xs * xs)\n"
    assert text.count(old) == 1
    source.write_text(text.replace(old, "    ws = 1.0 / (1.25 + xs * xs)\n"))
    stamp = source.stat().st_mtime + 10.0          # a later time stamp even on a coarse clock
    os.utime(source, (stamp, stamp))
    edited = _child(root, cache)
    _consistent(edited, "after the edit")
    # exactly the kernels holding the element's code compiled again; the helpers they call
    # that do not (_affine, _finite, _scratch, ...) were loaded from the cache
    assert set(edited["compiled"]) == LINKED_KERNELS, edited
    assert edited["loaded"] and set(edited["loaded"]) <= set(first["compiled"]) - LINKED_KERNELS, edited
    changed = np.abs(np.subtract(edited["sigma"], first["sigma"]))
    assert changed.max() > 0.01, changed                                # the edit reached sigma
    assert not np.array_equal(edited["values"], first["values"])
