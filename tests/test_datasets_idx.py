"""IDX reader (MNIST / Fashion-MNIST files written here), its errors, and the teacher-student task."""
import gzip
import struct

import numpy as np
import pytest

from senn_ref.datasets import IDXError, load_idx_folder, read_idx, teacher_student


def write_idx(path, arr, type_byte=0x08, gz=False):
    arr = np.asarray(arr)
    head = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4", 0x0E: ">f8"}[type_byte]
    raw = head + arr.astype(dt).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(raw)
    return path


def write_mnist(folder, n_train=30, n_test=10, size=28, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    sfx = ".gz" if gz else ""
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
        lab = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte{sfx}", img, gz=gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", lab, gz=gz)
        data[split] = (img, lab)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_of_every_type(tmp_path, gz):
    rng = np.random.default_rng(1)
    for tb, arr in ((0x08, rng.integers(0, 256, (3, 4, 5))), (0x0B, rng.integers(-300, 300, (7,))),
                    (0x0D, rng.standard_normal((2, 3)).astype(np.float32)), (0x0E, rng.standard_normal((4, 2)))):
        p = write_idx(tmp_path / (f"a{tb}.idx" + (".gz" if gz else "")), arr, tb, gz=gz)
        out = read_idx(p)
        assert out.shape == arr.shape
        np.testing.assert_array_equal(out, arr.astype(out.dtype))


def test_errors_name_the_file_and_the_fault(tmp_path):
    with pytest.raises(IDXError, match="no such file"):
        read_idx(tmp_path / "missing")
    good = write_idx(tmp_path / "good", np.zeros((4, 5, 5), np.uint8))
    raw = open(good, "rb").read()
    cases = {"trunc": (raw[:-3], "truncated"), "tail": (raw + b"x", "trailing"), "magic": (b"\x01\x02" + raw[2:], "not an IDX"),
             "type": (raw[:2] + b"\x07" + raw[3:], "not an IDX"), "head": (raw[:6], "truncated header"),
             "tiny": (raw[:2], "truncated")}
    for name, (blob, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(IDXError, match=msg) as info:
            read_idx(p)
        assert str(p) in str(info.value)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(IDXError, match="bad.gz"):
        read_idx(bad_gz)


@pytest.mark.parametrize("gz", [False, True])
def test_load_folder_scales_subsets_and_checks(tmp_path, gz):
    data = write_mnist(tmp_path, gz=gz)
    X, y, Xt, yt = load_idx_folder(tmp_path)
    assert X.shape == (30, 1, 28, 28) and Xt.shape == (10, 1, 28, 28) and X.dtype == np.float64
    np.testing.assert_allclose(X[:, 0] * 255.0, data["train"][0])
    np.testing.assert_array_equal(yt, data["t10k"][1])
    X2, y2, _, _ = load_idx_folder(tmp_path, n_train=12, seed=3)
    assert X2.shape[0] == 12 and set(y2) <= set(range(10))
    (tmp_path / f"t10k-labels-idx1-ubyte{'.gz' if gz else ''}").unlink()
    with pytest.raises(IDXError, match="t10k-labels"):
        load_idx_folder(tmp_path)


def test_label_range_and_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(30, 10, np.uint8))
    with pytest.raises(IDXError, match="label 10 outside 0..9"):
        load_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, np.uint8))
    with pytest.raises(IDXError, match="29 labels for 30 images"):
        load_idx_folder(tmp_path)
    with pytest.raises(IDXError, match="no such folder"):
        load_idx_folder(tmp_path / "nope")


def test_teacher_student_is_deterministic_and_of_known_width():
    X, Y, Xt, Yt, teacher = teacher_student(n_train=50, n_test=20, width=5, seed=2, noise=0.0)
    assert X.shape == (50, 4) and Y.shape == (50, 1) and Xt.shape == (20, 4)
    assert teacher.layers[0].params["W"].shape == (5, 4)
    np.testing.assert_array_equal(Y, teacher.forward(X))                 # noise 0: exactly the teacher
    again = teacher_student(n_train=50, n_test=20, width=5, seed=2, noise=0.0)
    np.testing.assert_array_equal(again[0], X)
    with pytest.raises(ValueError, match="width"):
        teacher_student(width=0)


def test_teacher_student_noise_floor():
    """The teacher's own loss is the noise floor (derivations/21-trainer.md section 9):
    1/2 mean((teacher(x) - y)^2) = noise^2 / 2 * mean(e^2), e ~ N(0, 1).  mean(e^2) over n
    draws has mean 1 and standard error sqrt(2 / n) (Var e^2 = 2): 0.022 at n = 4000, so
    5 standard errors is 0.11 (a false failure has probability ~6e-7 for any seed)."""
    n, noise = 4000, 0.01
    X, Y, _, _, teacher = teacher_student(n_train=n, n_test=1, width=6, seed=0, noise=noise)
    floor = 0.5 * np.mean((teacher.forward(X) - Y) ** 2)
    assert abs(floor / (0.5 * noise ** 2) - 1.0) < 5 * np.sqrt(2.0 / n), floor

