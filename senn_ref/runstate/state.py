"""The parts of a run checkpoint besides the network, as ``(meta, arrays)`` pairs.

* :class:`TrainerState` - where the SENN loop stands between two steps: the next step, the
  batch permutation and its cursor, the round counter, the width/depth cooldowns and the
  bit-generator state of every random stream;
* the optimiser - SGD / Adam / NGD-CG slots (``optim/state.py``) or the K-FAC running factors,
  inverses, rational blocks, step count and scale (``optim/kfac.py``);
* the log - :class:`senn_ref.trainer.SENNLog` as JSON that keeps every float exactly (``repr``
  round trip, non-finite values as JSON's ``NaN`` / ``Infinity``);
* the callback's own state, when the callback has ``state_dict()`` / ``load_state_dict(d)``
  (``d = {"info": JSON value, "networks": {name: Network}}``; the demos keep figure snapshots so).

``meta`` parts are plain JSON values; array parts are float64/int64 arrays named under a prefix
(``opt/`` for the optimiser, ``trainer/`` for the trainer).  Every ``restore_*`` function
checks everything and raises ``ValueError`` starting with the file name; none of them touches a
live object.  ``derivations/22-run-checkpoints.md`` sections 1-2; ``tests/test_run_state.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..optim.kfac import KFAC


@dataclass
class TrainerState:
    """The SENN loop's position between two steps (``derivations/22-run-checkpoints.md`` 1).

    step : index of the next step to run, 0 <= step <= steps
    order : (N,) int64 permutation of the training examples; cursor : 0 <= cursor <= N
    round_index, width_wait, depth_wait : ints >= 0 (expansion rounds so far, cooldowns)
    rng_states : one ``bit_generator.state`` dict per random stream, in the order the trainer
    spawns them (batches, search, scoring subset)
    """
    step: int
    order: np.ndarray
    cursor: int
    round_index: int
    width_wait: int
    depth_wait: int
    rng_states: list

    def payload(self) -> tuple:
        """``(meta, arrays)`` of this state (arrays under ``trainer/``)."""
        meta = {"step": int(self.step), "cursor": int(self.cursor), "round_index": int(self.round_index),
                "width_wait": int(self.width_wait), "depth_wait": int(self.depth_wait),
                "rng_states": [jsonable(s) for s in self.rng_states]}
        return meta, {"trainer/order": np.asarray(self.order, dtype=np.int64)}


def restore_trainer(meta, arrays: dict, n_examples: int, n_streams: int, target: str) -> TrainerState:
    """The :class:`TrainerState` in a checkpoint, checked against ``n_examples`` training examples
    and ``n_streams`` random streams."""
    if not isinstance(meta, dict):
        raise ValueError(f"{target}: trainer state must be a dict")
    values = {}
    for key in ("step", "cursor", "round_index", "width_wait", "depth_wait"):
        v = meta.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{target}: trainer state {key} must be an integer >= 0, got {v!r}")
        values[key] = v
    order = arrays.get("trainer/order")
    if order is None or order.dtype != np.int64 or order.shape != (n_examples,):
        raise ValueError(f"{target}: trainer/order must be {n_examples} int64 positions (the training set "
                         f"has {n_examples} examples), got "
                         f"{None if order is None else (order.dtype, order.shape)}")
    if not np.array_equal(np.sort(order), np.arange(n_examples)):
        raise ValueError(f"{target}: trainer/order is not a permutation of 0..{n_examples - 1}")
    if values["cursor"] > n_examples:
        raise ValueError(f"{target}: trainer state cursor {values['cursor']} exceeds {n_examples} examples")
    states = meta.get("rng_states")
    if not isinstance(states, list) or len(states) != n_streams:
        raise ValueError(f"{target}: trainer state needs {n_streams} random-stream states")
    for i, s in enumerate(states):
        check_rng_state(s, f"{target}: random stream {i}")
    return TrainerState(order=order.copy(), rng_states=states, **values)


def check_rng_state(state, what: str) -> None:
    """ValueError naming ``what`` unless ``state`` is a valid PCG64 ``bit_generator.state``."""
    probe = np.random.PCG64()
    try:
        probe.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"{what}: not a PCG64 bit-generator state ({exc})") from exc


def optimizer_payload(opt) -> tuple:
    """``(meta, arrays)`` of an optimiser's state: K-FAC by :meth:`KFAC.state_dict`, the slot
    optimisers (SGD, Adam, NGD-CG) by :meth:`Optimizer.state_dict`; arrays under ``opt/``."""
    sd = opt.state_dict()
    arrays = {}
    if isinstance(opt, KFAC):
        meta = {"class": "KFAC", "t": sd["t"], "last_scale": sd["last_scale"], "rng": jsonable(sd["rng"]),
                "factors": [[k, f["with_bias"], f["n_locations"]] for k, f in sd["factors"].items()],
                "inverses": list(sd["inverses"]), "blocks": list(sd["blocks"]),
                "block_inverses": list(sd["block_inverses"])}
        for k, f in sd["factors"].items():
            arrays[f"opt/factors/{k}/A"], arrays[f"opt/factors/{k}/G"] = f["A"], f["G"]
        for k, (a, g) in sd["inverses"].items():
            arrays[f"opt/inverses/{k}/A"], arrays[f"opt/inverses/{k}/G"] = a, g
        for part in ("blocks", "block_inverses"):
            for k, b in sd[part].items():
                arrays[f"opt/{part}/{k}"] = b
        return meta, arrays
    meta = {"class": sd["optimizer"], "keys": []}
    for key, slots in sd["state"].items():
        meta["keys"].append([key, [int(s) for s in sd["shapes"][key]], list(slots)])
        for slot, a in slots.items():
            arrays[f"opt/slots/{key}/{slot}"] = a
    return meta, arrays


def restore_optimizer_state(meta, arrays: dict, opt, target: str) -> dict:
    """The state dict a checkpoint holds for ``opt`` (a fresh optimiser of the run's class), in the
    form ``opt.load_state_dict`` takes; the caller loads it (which checks shapes and values)."""
    if not isinstance(meta, dict) or meta.get("class") != type(opt).__name__:
        raise ValueError(f"{target}: optimiser state of class "
                         f"{meta.get('class') if isinstance(meta, dict) else None!r}; the run uses "
                         f"{type(opt).__name__}")

    def arr(name):
        if name not in arrays:
            raise ValueError(f"{target}: missing array {name}")
        return arrays[name]
    try:
        if isinstance(opt, KFAC):
            return {"optimizer": "KFAC", "t": meta["t"], "last_scale": meta["last_scale"], "rng": meta["rng"],
                    "factors": {k: {"A": arr(f"opt/factors/{k}/A"), "G": arr(f"opt/factors/{k}/G"),
                                    "with_bias": wb, "n_locations": nl} for k, wb, nl in meta["factors"]},
                    "inverses": {k: (arr(f"opt/inverses/{k}/A"), arr(f"opt/inverses/{k}/G"))
                                 for k in meta["inverses"]},
                    "blocks": {k: arr(f"opt/blocks/{k}") for k in meta["blocks"]},
                    "block_inverses": {k: arr(f"opt/block_inverses/{k}") for k in meta["block_inverses"]}}
        shapes, state = {}, {}
        for key, shape, slots in meta["keys"]:
            shapes[key] = tuple(shape)
            state[key] = {slot: arr(f"opt/slots/{key}/{slot}") for slot in slots}
        return {"optimizer": meta["class"], "shapes": shapes, "state": state}
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(target):
            raise
        raise ValueError(f"{target}: malformed optimiser state ({type(exc).__name__}: {exc})") from exc


def jsonable(x):
    """A JSON-ready copy of ``x`` that keeps every value exactly: numpy scalars to Python
    numbers (floats keep all bits through ``repr``; NaN/inf stay floats), arrays and tuples to
    lists, dict keys to strings."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    if x is None or isinstance(x, str):
        return x
    raise TypeError(f"cannot store a {type(x).__name__} in a run checkpoint")


def log_payload(log) -> dict:
    """The meta part of a :class:`SENNLog` (all six fields, exact floats)."""
    return {"config": jsonable(log.config), "events": jsonable(log.events), "rounds": jsonable(log.rounds),
            "history": jsonable(log.history), "timing": jsonable(log.timing), "final": jsonable(log.final)}


def restore_log(meta, target: str):
    """The :class:`SENNLog` in a checkpoint (field types checked)."""
    from ..trainer.log import SENNLog
    kinds = {"config": dict, "events": list, "rounds": list, "history": list, "timing": dict, "final": dict}
    if not isinstance(meta, dict) or set(meta) != set(kinds):
        raise ValueError(f"{target}: the log must have the fields {sorted(kinds)}")
    for key, kind in kinds.items():
        if not isinstance(meta[key], kind):
            raise ValueError(f"{target}: log field {key} must be a {kind.__name__}")
    return SENNLog(**meta)


def callback_payload(callback) -> tuple:
    """``(meta, arrays)`` of ``callback.state_dict()`` (arrays under ``callback/<name>/``), or
    ``(None, {})`` for a callback without state."""
    from ..checkpoint import network_payload
    if not hasattr(callback, "state_dict"):
        return None, {}
    d = callback.state_dict()
    meta, arrays = {"info": jsonable(d.get("info")), "networks": {}}, {}
    for name, net in d.get("networks", {}).items():
        net_meta, net_arrays = network_payload(net, prefix=f"callback/{name}/")
        meta["networks"][str(name)] = net_meta
        arrays.update(net_arrays)
    return meta, arrays


def restore_callback(meta, arrays: dict, target: str):
    """``{"info", "networks": {name: Network}}`` saved by :func:`callback_payload` (None if none)."""
    from ..checkpoint import network_from_payload
    if meta is None:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("networks"), dict):
        raise ValueError(f"{target}: malformed callback state")
    nets = {}
    for name, net_meta in meta["networks"].items():
        prefix = f"callback/{name}/"
        own = {"param/" + k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            nets[name] = network_from_payload(net_meta, own, target)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith(target):
                raise
            raise ValueError(f"{target}: malformed callback network {name!r} ({exc})") from exc
    return {"info": meta.get("info"), "networks": nets}
