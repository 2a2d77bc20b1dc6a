"""Save and load networks: one ``.npz`` file, written atomically, read without pickle.

File layout (``format = "senn-ref-network"``, ``version = 1``):

* ``meta``: a JSON string - the format tag and version, the network's layer-name
  counters, and per layer its class, name, ``config()`` and parameter names;
* ``param/<layer name>/<param name>``: every parameter array, float64, exactly as in
  the network (bit-for-bit round trip).

Safety: :func:`save` writes to a temporary file in the target folder, flushes it to
disk, renames it over the target in one step (``os.replace``) and fsyncs the folder
(:func:`atomic_write_npz`, shared with the run checkpoints of ``senn_ref/runstate/``), so an
interrupted save never leaves a half-written file, and it refuses to replace an existing file
unless ``overwrite=True``.  :func:`load` reads with ``allow_pickle=False`` and trusts
nothing in the file: it checks the format, every layer class and configuration, that each
layer's parameter list is exactly its ``param_names``, every shape and dtype, that every
value is finite and that no array is left over, and raises a ``ValueError`` naming the
problem otherwise (malformed metadata included).  A file that is not a zip archive (a
pickle, a ``.npy``, text) is refused as "not a senn-ref checkpoint" before NumPy reads it,
and no message ever suggests loading a file with pickling enabled.
Tests: ``tests/test_checkpoint.py``.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from .layers import (AvgPool2D, Conv2D, Dense, Flatten, GlobalAvgPool, MaxPool2D, Rational, SiLU,
                     Tanh)
from .network import Network

FORMAT, VERSION = "senn-ref-network", 1
LAYER_TYPES = {cls.__name__: cls for cls in (AvgPool2D, Conv2D, Dense, Flatten, GlobalAvgPool, MaxPool2D,
                                             Rational, SiLU, Tanh)}


def _target(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save(net: Network, path, overwrite: bool = False) -> str:
    """Write ``net`` to ``path`` (``.npz`` appended if missing); returns the path written."""
    if not isinstance(net, Network):
        raise TypeError(f"save: expected a senn_ref Network, got {type(net).__name__}")
    target = _target(path)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    meta, arrays = network_payload(net)
    meta = {"format": FORMAT, "version": VERSION, **meta}
    return atomic_write_npz(target, meta, arrays)


def network_payload(net: Network, prefix: str = "param/") -> tuple:
    """``(meta, arrays)`` describing ``net``: meta holds ``name_counts`` and ``layers`` (class, name,
    config, parameter names); arrays maps ``<prefix><layer>/<param>`` to the parameter arrays
    (not copied).  Read back by :func:`network_from_payload`.  Also used by run checkpoints
    (``senn_ref/runstate/``)."""
    meta = {"name_counts": dict(net._name_counts), "layers": []}
    arrays = {}
    for layer in net.layers:
        cls = type(layer).__name__
        if LAYER_TYPES.get(cls) is not type(layer):
            raise TypeError(f"save: layer {layer.name} is a {cls}, which checkpoints do not know")
        meta["layers"].append({"class": cls, "name": layer.name, "config": layer.config(),
                               "params": list(layer.param_names)})
        for k in layer.param_names:
            arrays[f"{prefix}{layer.name}/{k}"] = layer.params[k]
    return meta, arrays


#: name prefix of the temporary files of :func:`atomic_write` (a kill between fsync and rename can
#: leave one behind; ``runstate.RunCheckpoints.resume_from`` deletes them by this prefix)
TMP_PREFIX = ".senn-ref-"
#: suffix of the temporary files of :func:`atomic_write_npz`
NPZ_TMP_SUFFIX = ".npz.tmp"


def atomic_write(target: str, write, binary: bool = True, suffix: str = ".tmp") -> str:
    """Write a file atomically: ``write(fh)`` fills a temporary file in the folder of
    ``target``, which is flushed, fsynced and renamed over ``target`` in one step
    (``os.replace``); then the folder is fsynced so that the rename itself survives a power
    cut.  An exception at any point removes the temporary file and leaves any previous
    ``target`` untouched.  Returns ``target``."""
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(folder)
    return target


def atomic_write_npz(target: str, meta: dict, arrays: dict) -> str:
    """Write ``meta`` (JSON, stored as the array ``meta``) and ``arrays`` to the ``.npz`` file
    ``target`` atomically (:func:`atomic_write`).  Returns ``target``."""
    return atomic_write(target, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **arrays),
                        suffix=NPZ_TMP_SUFFIX)


def fsync_dir(folder: str) -> None:
    """fsync a folder so that renames and deletions in it are on disk (a no-op where the
    platform cannot open folders, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path) -> Network:
    """Read a network written by :func:`save`."""
    target = os.fspath(path)
    if not os.path.exists(target) and os.path.exists(_target(target)):
        target = _target(target)
    if not os.path.exists(target):
        raise FileNotFoundError(f"{target}: no such file")
    meta, arrays = read_npz(target)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{target}: not a senn-ref network checkpoint")
    if meta.get("version") != VERSION:
        raise ValueError(f"{target}: checkpoint version {meta.get('version')!r}; this code reads {VERSION}")
    try:
        return network_from_payload(meta, arrays, target)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(target):
            raise
        raise ValueError(f"{target}: malformed checkpoint metadata ({type(exc).__name__}: {exc})") from exc


def read_npz(target: str) -> tuple:
    """``(meta dict or whatever the JSON held, {name: array})`` of a ``.npz`` written by
    :func:`atomic_write_npz`, read with ``allow_pickle=False``; ValueError starting with
    ``target`` for anything that is not a readable archive with a JSON ``meta``."""
    # anything that is not a zip archive (a pickle, a .npy, text) is refused here, before NumPy
    # can suggest loading it "unsafely"; NumPy's own messages are not quoted when they mention
    # pickling, so the error never advises allow_pickle
    if not zipfile.is_zipfile(target):
        with open(target, "rb") as fh:
            starts_like_zip = fh.read(4) == b"PK\x03\x04"
        if starts_like_zip:
            raise ValueError(f"{target}: not a readable senn-ref checkpoint (truncated or corrupt .npz archive)")
        raise ValueError(f"{target}: not a senn-ref checkpoint (not a .npz archive)")
    try:
        with np.load(target, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: np.array(data[k]) for k in data.files if k != "meta"}
    except Exception as exc:    # noqa: BLE001 - a damaged archive fails in many ways (a flipped byte
        # in a .npy header even reaches tokenize.TokenError); every one means "unreadable"
        if isinstance(exc, FileNotFoundError):
            raise
        detail = str(exc) if "pickle" not in str(exc).lower() else "it holds object (pickled) data"
        raise ValueError(f"{target}: not a readable senn-ref checkpoint ({detail})") from exc
    return meta, arrays


def network_from_payload(meta: dict, arrays: dict, target: str) -> Network:
    """The network described by ``meta`` (``layers``, ``name_counts``) with parameters from
    ``arrays`` (exactly the ``param/...`` arrays: shapes, dtypes, finiteness and leftovers are
    checked); ValueError starting with ``target`` otherwise."""
    layers, names = _build_layers(meta, arrays, target)
    counts = meta.get("name_counts", {})
    if not isinstance(counts, dict) or not all(isinstance(v, int) and v >= 0 for v in counts.values()):
        raise ValueError(f"name_counts must map names to counters >= 0, got {counts!r}")
    return Network.restore(layers, names, counts)


def _build_layers(meta: dict, arrays: dict, target: str):
    """Layers and names described by ``meta``, with parameters from ``arrays``.

    Checks that each entry's parameter list is exactly the layer's ``param_names``,
    every listed array exists with the right shape, dtype and finite values, and that
    no array in the file is left unused."""
    entries = meta.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{target}: 'layers' must be a non-empty list")
    layers, names, used = [], [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{target}: layer entry {i} is a {type(entry).__name__}, not a dict")
        missing = [k for k in ("class", "name", "config", "params") if k not in entry]
        if missing:
            raise ValueError(f"{target}: layer entry {i} lacks {missing}")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{target}: layer entry {i} has name {name!r}; need a non-empty string")
        cls = LAYER_TYPES.get(entry["class"]) if isinstance(entry["class"], str) else None
        if cls is None:
            raise ValueError(f"{target}: unknown layer class {entry['class']!r}")
        if not isinstance(entry["config"], dict):
            raise ValueError(f"{target}: bad configuration for layer {name!r}: expected a dict, "
                             f"got {type(entry['config']).__name__}")
        try:
            layer = cls(**entry["config"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{target}: bad configuration for layer {name!r}: {exc}") from exc
        if entry["params"] != list(layer.param_names):
            raise ValueError(f"{target}: layer {name!r} lists parameters {entry['params']!r}; a "
                             f"{cls.__name__} has {list(layer.param_names)}")
        for k in layer.param_names:
            key = f"param/{name}/{k}"
            if key not in arrays:
                raise ValueError(f"{target}: missing array {key}")
            arr = arrays[key]
            if arr.shape != layer.params[k].shape or arr.dtype != np.float64:
                raise ValueError(f"{target}: array {key} has shape {arr.shape} and dtype {arr.dtype}; "
                                 f"the layer needs {layer.params[k].shape} float64")
            if not np.isfinite(arr).all():
                raise ValueError(f"{target}: array {key} contains NaN or infinite values")
            layer.params[k] = arr.copy()
            used.add(key)
        layers.append(layer)
        names.append(name)
    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"{target}: arrays {unused} belong to no layer")
    return layers, names
