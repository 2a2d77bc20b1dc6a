"""Run checkpoints (senn_ref/runstate/): round trips after width growth, depth growth and pruning
reproduce outputs, gradients and the next optimiser step bit for bit (SGD with momentum, Adam,
NGD-CG, K-FAC); atomic writes keep the previous file when a write fails; the last two are kept;
truncated, byte-flipped, wrong-version, foreign and malformed files are refused naming the file.
derivations/22-run-checkpoints.md."""
import json
import os

import numpy as np
import pytest

from senn_ref import checkpoint, mlp
from senn_ref.grow import add_neurons, insert_layer, prune_neurons
from senn_ref.losses import mse
from senn_ref.optim import KFAC, SGD, Adam, NaturalGradientCG
from senn_ref.runstate import (TrainerState, list_runs, read_run, restore_optimizer_state, restore_trainer,
                               run_path, write_run)
from senn_ref.runstate.state import jsonable, restore_log
from senn_ref.trainer import SENNLog

OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.05, momentum=0.9),
    "adam": lambda: Adam(lr=0.01),
    "ngd": lambda: NaturalGradientCG(lr=0.5, damping=0.1, cg_maxiter=20),
    "kfac": lambda: KFAC(lr=0.3, damping=0.1),
}


def _step(net, opt, X, Y, loss):
    if getattr(opt, "uses_curvature", False):
        return opt.step(net, X, Y, loss)
    value, grads = net.loss_and_grad(X, Y, loss)
    opt.step(net.named_params(), grads.grads)
    return value


def _grow(kind, net, opt, rng):
    if kind == "width":
        add_neurons(net, 0, W=rng.standard_normal((2, 2)), b=rng.standard_normal(2), optimizer=opt, rng=rng)
    elif kind == "depth":
        insert_layer(net, 2, np.eye(3) + 0.1 * rng.standard_normal((3, 3)), optimizer=opt)
    else:
        prune_neurons(net, 0, [1], optimizer=opt)


def _trainer_state(N, rngs, step=5):
    return TrainerState(step=step, order=np.random.default_rng(9).permutation(N), cursor=3, round_index=2,
                        width_wait=1, depth_wait=0, rng_states=[r.bit_generator.state for r in rngs])


def _a_log():
    log = SENNLog(config={"tau": 1.0})
    log.events.append({"kind": "width", "accepted": True, "gain": np.float64(0.1) / 3, "lambda": float("inf"),
                       "architecture": (3, 4)})
    log.history.append({"step": 0, "train_loss": np.float64(1) / 7, "val_acc": None, "odd": float("nan")})
    return log


def _opt_state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    flat_a, flat_b = json.dumps(jsonable(sa)), json.dumps(jsonable(sb))
    assert flat_a == flat_b


@pytest.mark.parametrize("kind", ["width", "depth", "prune"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_after_growth_reproduces_outputs_gradients_and_next_step(kind, name, tmp_path):
    rng = np.random.default_rng(3)
    net = mlp([2, 3, 1], seed=1)
    X, Y, loss = rng.standard_normal((12, 2)), rng.standard_normal((12, 1)), mse()
    opt = OPTIMIZERS[name]()
    for _ in range(2):
        _step(net, opt, X, Y, loss)
    _grow(kind, net, opt, rng)
    _step(net, opt, X, Y, loss)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(4).spawn(3)]
    for r in rngs:
        r.random(3)                                   # states away from the start
    state, log = _trainer_state(12, rngs), _a_log()
    path = write_run(tmp_path, 5, net, opt, state, log, {"seed": 4})
    assert path == run_path(tmp_path, 5)

    saved = read_run(path)
    back, opt2 = saved.net, OPTIMIZERS[name]()
    opt2.load_state_dict(restore_optimizer_state(saved.optimizer, saved.arrays, opt2, path))
    assert [la.name for la in back.layers] == [la.name for la in net.layers]
    assert back._name_counts == net._name_counts
    assert np.array_equal(back.forward(X), net.forward(X))
    (va, ga), (vb, gb) = net.loss_and_grad(X, Y, loss), back.loss_and_grad(X, Y, loss)
    assert va == vb and np.array_equal(ga.flat_grad(), gb.flat_grad())
    _opt_state_equal(opt, opt2)
    # the next step is bit for bit the same, and so are the optimiser states after it
    assert _step(net, opt, X, Y, loss) == _step(back, opt2, X, Y, loss)
    assert np.array_equal(net.get_flat(), back.get_flat()) and np.count_nonzero(net.get_flat()) > 0
    _opt_state_equal(opt, opt2)

    ts = restore_trainer(saved.trainer, saved.arrays, 12, 3, path)
    assert ts.step == 5 and ts.cursor == 3 and (ts.round_index, ts.width_wait, ts.depth_wait) == (2, 1, 0)
    assert np.array_equal(ts.order, state.order)
    fresh = [np.random.default_rng(0) for _ in range(3)]
    for r, s in zip(fresh, ts.rng_states):
        r.bit_generator.state = s
    assert [r.random() for r in fresh] == [r.random() for r in rngs]
    log2 = restore_log(saved.log, path)
    assert json.dumps(jsonable(log2.to_dict())) == json.dumps(jsonable(log.to_dict()))
    assert log2.events[0]["gain"] == 0.1 / 3 and log2.events[0]["lambda"] == float("inf")
    assert np.isnan(log2.history[0]["odd"])


def _write(tmp_path, step, seed=0):
    net = mlp([2, 3, 1], seed=seed)
    opt = KFAC(lr=0.1, damping=0.1)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 2)), rng.standard_normal((6, 1))
    opt.step(net, X, Y, mse())
    rngs = [np.random.default_rng(s) for s in range(3)]
    return write_run(tmp_path, step, net, opt, _trainer_state(6, rngs, step), _a_log(), {"seed": seed}), net


def test_only_the_last_two_checkpoints_are_kept(tmp_path):
    for step in (3, 6, 9, 12):
        _write(tmp_path, step)
    assert [s for s, _ in list_runs(tmp_path)] == [9, 12]
    assert sorted(os.listdir(tmp_path)) == ["run-00000009.npz", "run-00000012.npz"]


@pytest.mark.parametrize("where", ["savez", "fsync", "replace"])
def test_a_failure_between_write_and_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch, where):
    path, net = _write(tmp_path, 4)
    before = open(path, "rb").read()

    def boom(*args, **kwargs):
        raise OSError(f"injected failure in {where}")
    target = {"savez": (checkpoint.np, "savez"), "fsync": (checkpoint.os, "fsync"),
              "replace": (checkpoint.os, "replace")}[where]
    monkeypatch.setattr(*target, boom)
    with pytest.raises(OSError, match="injected"):
        _write(tmp_path, 8, seed=1)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["run-00000004.npz"]          # no temporary file left
    assert open(path, "rb").read() == before
    assert np.array_equal(read_run(path).net.get_flat(), net.get_flat())


def test_truncated_files_are_refused_naming_the_file(tmp_path):
    path, _ = _write(tmp_path, 4)
    raw = open(path, "rb").read()
    bad = str(tmp_path / "run-00000005.npz")
    for n in (0, 10, len(raw) // 3, len(raw) // 2, len(raw) - 30, len(raw) - 1):
        with open(bad, "wb") as fh:
            fh.write(raw[:n])
        with pytest.raises(ValueError) as info:
            read_run(bad)
        assert str(info.value).startswith(bad), str(info.value)


def test_byte_flips_are_refused_or_harmless(tmp_path):
    """Every flipped byte either raises a ValueError naming the file or (zip timestamps and
    similar) leaves the loaded content identical; nothing loads silently wrong."""
    path, net = _write(tmp_path, 4)
    raw = bytearray(open(path, "rb").read())
    good = read_run(path)
    bad = str(tmp_path / "flipped.npz")
    positions = np.unique(np.linspace(0, len(raw) - 1, 150).astype(int))
    refused = 0
    for pos in positions:
        flipped = bytearray(raw)
        flipped[pos] ^= 0x5A
        with open(bad, "wb") as fh:
            fh.write(flipped)
        try:
            back = read_run(bad)
        except ValueError as exc:
            assert str(exc).startswith(bad), (pos, str(exc))
            refused += 1
            continue
        assert np.array_equal(back.net.get_flat(), net.get_flat()), pos
        assert back.trainer == good.trainer and back.log == good.log and back.optimizer == good.optimizer
        assert all(np.array_equal(back.arrays[k], good.arrays[k]) for k in good.arrays), pos
    assert refused >= 0.8 * positions.size


def test_wrong_version_foreign_and_malformed_files_are_refused(tmp_path):
    path, _ = _write(tmp_path, 4)
    meta, arrays = checkpoint.read_npz(path)
    meta.pop("digest")

    def rewrite(m, name, arrs=None):
        target = str(tmp_path / name)
        checkpoint.atomic_write_npz(target, m, arrays if arrs is None else arrs)
        return target
    with pytest.raises(ValueError, match="run checkpoint version 2; this code reads version 1") as info:
        read_run(rewrite(dict(meta, version=2), "v2.npz"))
    assert str(info.value).startswith(str(tmp_path / "v2.npz"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_run(rewrite(dict(meta, trainer=dict(meta["trainer"], cursor=0)), "edited.npz"))
    net_file = checkpoint.save(mlp([2, 3, 1]), tmp_path / "network.npz")
    with pytest.raises(ValueError, match="not a senn-ref run checkpoint"):
        read_run(net_file)
    with pytest.raises(ValueError, match="not a senn-ref checkpoint"):
        (tmp_path / "text.npz").write_text("hello")
        read_run(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_run(tmp_path / "missing.npz")
    # a consistent file (digest recomputed) whose parts do not fit the run is refused by the checks
    from senn_ref.runstate.files import digest
    for mutate, msg in ((lambda m: m["trainer"].__setitem__("cursor", 99), "cursor 99 exceeds 6"),
                        (lambda m: m["trainer"]["rng_states"].pop(), "3 random-stream states"),
                        (lambda m: m["trainer"]["rng_states"][0].__setitem__("bit_generator", "MT19937"),
                         "random stream 0"),
                        (lambda m: m["optimizer"].__setitem__("class", "Adam"), "the run uses KFAC")):
        m = json.loads(json.dumps(meta))
        mutate(m)
        full = dict(m, digest=digest(json.dumps(m), arrays))
        saved = read_run(rewrite(full, "run-00000007.npz"))
        with pytest.raises(ValueError, match=msg) as info:
            restore_trainer(saved.trainer, saved.arrays, 6, 3, saved.path)
            restore_optimizer_state(saved.optimizer, saved.arrays, KFAC(lr=0.1, damping=0.1), saved.path)
        assert str(info.value).startswith(saved.path)


def test_kfac_state_dict_round_trips_and_bad_state_changes_nothing():
    rng = np.random.default_rng(1)
    net = mlp([2, 3, 1], seed=2)
    X, Y = rng.standard_normal((8, 2)), rng.standard_normal((8, 1))
    opt = KFAC(lr=0.1, damping=0.1, mode="mc", rng=np.random.default_rng(5))
    opt.step(net, X, Y, mse())
    sd = opt.state_dict()
    assert sd["t"] == 1 and set(sd["factors"]) == {"dense0", "dense1"} and set(sd["blocks"]) == {"rational0"}
    other = KFAC(lr=0.1, damping=0.1, mode="mc", rng=np.random.default_rng(0))
    other.load_state_dict(sd)
    _opt_state_equal(opt, other)
    assert other.rng.random() == opt.rng.random()
    before = json.dumps(jsonable(other.state_dict()))
    for mutate, msg in ((lambda d: d["factors"]["dense0"].__setitem__("A", np.ones((3, 2))), "factors\\['dense0'\\]"),
                        (lambda d: d["blocks"]["rational0"].__setitem__((0, 0, 0), np.nan), "NaN"),
                        (lambda d: d.__setitem__("t", -1), "t"),
                        (lambda d: d["inverses"].pop("dense1") and d["factors"].pop("dense1") and
                         d["inverses"].__setitem__("dense1", (np.eye(4), np.eye(1))), "inverses\\['dense1'\\]"),
                        (lambda d: d.__setitem__("rng", {"bit_generator": "PCG64"}), "rng"),
                        (lambda d: d.pop("block_inverses"), "keys")):
        d = opt.state_dict()
        d["inverses"]["dense0"] = (np.eye(3), np.eye(3))           # a consistent change first
        mutate(d)
        with pytest.raises((ValueError, TypeError), match=msg):
            other.load_state_dict(d)
        assert json.dumps(jsonable(other.state_dict())) == before   # nothing changed
