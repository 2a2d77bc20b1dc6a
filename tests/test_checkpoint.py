"""Checkpoints: bit-exact round trips, names kept, no overwrite by default, corrupt files refused."""
import os

import numpy as np
import pytest

from senn_ref import checkpoint, convnet, mlp
from senn_ref.layers import Dense


@pytest.mark.parametrize("make", [
    lambda: mlp([3, 5, 4, 2], activation="rational", seed=1),
    lambda: mlp([3, 4, 2], activation="silu", seed=2),
    lambda: convnet(channels=(3, 4), seed=3, pool="max", head="gap", backend="numpy"),
    lambda: convnet(channels=(2,), seed=4, activation="tanh"),
])
def test_round_trip_is_bit_exact(make, tmp_path, rng):
    net = make()
    net.set_flat(rng.standard_normal(net.num_params()))    # every parameter, biases included
    assert np.count_nonzero(net.get_flat()) == net.num_params()
    X = rng.standard_normal((4,) + net.in_shape)
    path = checkpoint.save(net, tmp_path / "net")
    assert path.endswith(".npz") and os.listdir(tmp_path) == ["net.npz"]      # no temp file left
    back = checkpoint.load(path)
    assert list(back.named_params()) == list(net.named_params())
    assert np.array_equal(back.get_flat(), net.get_flat())
    assert np.array_equal(back.forward(X), net.forward(X))
    assert [la.config() for la in back.layers] == [la.config() for la in net.layers]


def test_names_and_counters_survive(tmp_path, rng):
    net = mlp([2, 3, 1], seed=0)
    net.insert(2, [Dense(3, 3, rng)])          # names: dense0, rational0, dense2, dense1
    back = checkpoint.load(checkpoint.save(net, tmp_path / "grown.npz"))
    assert [la.name for la in back.layers] == ["dense0", "rational0", "dense2", "dense1"]
    assert back.insert(0, [Dense(2, 2, rng)]) == ["dense3"]


def test_refuses_to_overwrite(tmp_path):
    a, b = mlp([2, 3, 1], seed=0), mlp([2, 3, 1], seed=1)
    path = checkpoint.save(a, tmp_path / "n.npz")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        checkpoint.save(b, path)
    assert np.array_equal(checkpoint.load(path).get_flat(), a.get_flat())    # the saved net is intact
    checkpoint.save(b, path, overwrite=True)
    assert np.array_equal(checkpoint.load(path).get_flat(), b.get_flat())


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    path = checkpoint.save(mlp([2, 3, 1], seed=0), tmp_path / "n.npz")
    raw = open(path, "rb").read()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable senn-ref checkpoint"):
        checkpoint.load(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a readable|not a senn-ref"):
        checkpoint.load(other)
    # tampered arrays: wrong shape, NaN
    with np.load(path) as data:
        meta = str(data["meta"])
        arrays = {k: data[k] for k in data.files if k != "meta"}
    for key, bad, msg in (("param/dense0/W", np.zeros((4, 2)), "shape"),
                          ("param/dense1/b", np.array([np.nan]), "NaN")):
        tampered = dict(arrays, **{key: bad})
        target = tmp_path / f"tampered_{msg}.npz"
        np.savez(target, meta=np.array(meta), **tampered)
        with pytest.raises(ValueError, match=msg):
            checkpoint.load(target)
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="Network"):
        checkpoint.save(object(), tmp_path / "x.npz")


def test_malformed_metadata_is_refused(tmp_path):
    # load trusts nothing in the metadata: a parameter list that differs from the layer's
    # (which used to leave a parameter at its default silently), missing keys and wrong
    # types all raise ValueError naming the problem; so does an array no layer uses.
    import json
    path = checkpoint.save(mlp([2, 3, 1], seed=0), tmp_path / "n.npz")
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k: data[k] for k in data.files if k != "meta"}

    def write(m, extra=None):
        target = tmp_path / "bad.npz"
        np.savez(target, meta=np.array(json.dumps(m)), **arrays, **(extra or {}))
        return target

    for mutate, msg in ((lambda m: m["layers"][0].__setitem__("params", ["W"]), "lists parameters"),
                        (lambda m: m["layers"][0].__setitem__("params", ["W", "b", "W"]), "lists parameters"),
                        (lambda m: m["layers"][0].pop("params"), "lacks"),
                        (lambda m: m["layers"][0].pop("name"), "lacks"),
                        (lambda m: m["layers"][0].__setitem__("name", 3), "name 3"),
                        (lambda m: m.__setitem__("name_counts", [1]), "name_counts"),
                        (lambda m: m["layers"][0].__setitem__("config", [2, 3]), "expected a dict"),
                        (lambda m: m.__setitem__("layers", {"a": 1}), "non-empty list"),
                        (lambda m: m["layers"].__setitem__(0, "dense"), "not a dict"),
                        (lambda m: m["layers"][0].__setitem__("class", ["Dense"]), "unknown layer class"),
                        (lambda m: m["layers"][2].__setitem__("name", "dense0"), "distinct layer names|param/dense0/W")):
        m = json.loads(json.dumps(meta))
        mutate(m)
        with pytest.raises(ValueError, match=msg):
            checkpoint.load(write(m))
    with pytest.raises(ValueError, match="belong to no layer"):
        checkpoint.load(write(meta, {"param/ghost/W": np.zeros(2)}))


def test_non_archives_are_not_checkpoints_and_unsafe_loading_is_never_suggested(tmp_path):
    """Issue 11 item 6: NumPy's advice to load 'unsafely' with allow_pickle must not reach the user."""
    import pickle
    cases = {"text.npz": b"hello, not an archive",
             "pickled.npz": pickle.dumps({"W": [1.0, 2.0]}),
             "empty.npz": b""}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objects_inside.npz", meta=np.array([{"a": 1}], dtype=object))
    for name in [*cases, "array.npy", "objects.npy", "objects_inside.npz"]:
        with pytest.raises(ValueError) as info:
            checkpoint.load(tmp_path / name)
        msg = str(info.value)
        assert "pickle=" not in msg and "unsafe" not in msg and "pickle.load" not in msg, (name, msg)
        assert "not a senn-ref checkpoint" in msg or "not a readable senn-ref checkpoint" in msg, (name, msg)
        assert msg.startswith(str(tmp_path / name))
    with pytest.raises(ValueError, match=r"not a senn-ref checkpoint \(not a \.npz archive\)"):
        checkpoint.load(tmp_path / "pickled.npz")
