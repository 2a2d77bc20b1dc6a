"""Run checkpoint files: one ``.npz`` per saved step, written atomically, the last two kept.

File ``<folder>/run-<step, 8 digits>.npz`` (``format = "senn-ref-run"``, ``version = 1``):

* member ``meta``: JSON with ``format``, ``version``, ``identity`` (the run's config, seed and
  SHA-256 fingerprints of the data and of the starting network), ``network`` (as in
  ``senn_ref.checkpoint``), ``optimizer``, ``trainer``, ``log`` and ``callback`` (``state.py``);
* arrays ``param/<layer>/<name>`` (network), ``opt/...`` (optimiser), ``trainer/order``,
  ``callback/<name>/<layer>/<param>`` (networks the callback keeps);
* member ``digest``: SHA-256 over the meta text and every array's name, dtype, shape and bytes,
  so a flipped byte that the zip CRC does not catch is still refused.

Writes go through :func:`senn_ref.checkpoint.atomic_write_npz` (temporary file, fsync, rename,
fsync of the folder); only then are older files beyond the newest :data:`KEEP` deleted, so at
every instant at least one complete checkpoint exists.  :func:`read_run` trusts nothing:
truncated, byte-flipped, wrong-format, wrong-version and malformed files raise ``ValueError``
starting with the file name.  ``derivations/22-run-checkpoints.md`` section 3;
``tests/test_run_state.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

import numpy as np

from ..checkpoint import atomic_write_npz, fsync_dir, network_from_payload, network_payload, read_npz
from ..network import Network
from .state import TrainerState, callback_payload, log_payload, optimizer_payload

FORMAT, VERSION = "senn-ref-run", 1
#: how many checkpoints a folder keeps (the newest ones)
KEEP = 2
NAME = re.compile(r"^run-(\d{8})\.npz$")


@dataclass
class RunFile:
    """A checkpoint read and checked by :func:`read_run`; nothing live has been touched.

    net : the saved :class:`Network`; identity / optimizer / trainer / log : the meta parts;
    arrays : every array of the file (``opt/...``, ``trainer/...`` and ``callback/...`` are still
    to be checked by ``state.restore_*`` against the run that resumes); callback : the callback's
    meta part (None without one); path : the file."""
    path: str
    net: Network
    identity: dict
    optimizer: dict
    trainer: dict
    log: dict
    arrays: dict
    callback: dict | None = None


def run_path(folder, step: int) -> str:
    return os.path.join(os.fspath(folder), f"run-{int(step):08d}.npz")


def list_runs(folder) -> list:
    """``[(step, path)]`` of the run checkpoints in ``folder``, oldest first ([] if none)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name))
             for name in os.listdir(folder) if (m := NAME.match(name))]
    return sorted(found)


def digest(meta_text: str, arrays: dict) -> str:
    """SHA-256 (hex) of the meta text and of every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(meta_text.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_run(folder, step: int, net, opt, trainer: TrainerState, log, identity: dict, callback=None) -> str:
    """Write the checkpoint of ``step`` atomically, then delete all but the newest :data:`KEEP`.
    ``callback``: stored too when it has ``state_dict``.  Returns the path."""
    net_meta, arrays = network_payload(net)
    opt_meta, opt_arrays = optimizer_payload(opt)
    tr_meta, tr_arrays = trainer.payload()
    cb_meta, cb_arrays = callback_payload(callback)
    arrays.update(opt_arrays)
    arrays.update(tr_arrays)
    arrays.update(cb_arrays)
    meta = {"format": FORMAT, "version": VERSION, "identity": identity, "network": net_meta,
            "optimizer": opt_meta, "trainer": tr_meta, "log": log_payload(log), "callback": cb_meta}
    text = json.dumps(meta)
    meta["digest"] = digest(text, arrays)
    # the digest covers the meta text as written without it; read_run recomputes it the same way
    target = atomic_write_npz(run_path(folder, step), meta, arrays)
    runs = list_runs(folder)
    stale = [p for _, p in runs[:-KEEP]] if len(runs) > KEEP else []
    for p in stale:
        os.remove(p)
    if stale:
        fsync_dir(os.fspath(folder))
    return target


def read_run(path) -> RunFile:
    """Read and check the run checkpoint ``path`` (see the module docstring)."""
    target = os.fspath(path)
    if not os.path.isfile(target):
        raise FileNotFoundError(f"{target}: no such run checkpoint")
    meta, arrays = read_npz(target)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{target}: not a senn-ref run checkpoint (format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{target}: run checkpoint version {meta.get('version')!r}; this code reads "
                         f"version {VERSION}")
    stored = meta.pop("digest", None)
    if stored != digest(json.dumps(meta), arrays):
        raise ValueError(f"{target}: corrupt run checkpoint (checksum mismatch: the file changed after "
                         f"it was written)")
    parts = ("identity", "network", "optimizer", "trainer", "log")
    missing = [k for k in parts if not isinstance(meta.get(k), dict)]
    if missing:
        raise ValueError(f"{target}: malformed run checkpoint (no {missing})")
    params = {k: v for k, v in arrays.items() if k.startswith("param/")}
    others = {k: v for k, v in arrays.items() if not k.startswith("param/")}
    try:
        net = network_from_payload(meta["network"], params, target)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(target):
            raise
        raise ValueError(f"{target}: malformed network in run checkpoint ({type(exc).__name__}: {exc})") from exc
    return RunFile(target, net, meta["identity"], meta["optimizer"], meta["trainer"], meta["log"], others,
                   meta.get("callback"))
