"""Small data sets for demos and tests (no downloads).

* ``teacher_regression`` - the 1-D regression task of the paper's Figure 2: the
  target is a random rational MLP with hidden widths [16, 16, 16, 16],
  x ~ N(0, 1), 50 training and 1000 test points (senn-math section 10).
* ``half_moons`` - two interleaved half circles with Gaussian noise, written here
  so that it needs no extra package.
* ``teacher_student`` - a regression task whose right width is known; ``read_idx`` and
  ``load_idx_folder`` - MNIST / Fashion-MNIST IDX files from a folder the user names.
* ``digits`` - scikit-learn's bundled 8x8 handwritten digits (1797 images, shipped
  inside the scikit-learn package; install the ``data`` or ``test`` extra).
"""
from __future__ import annotations

import numpy as np

from ._validate import check_positive_int, check_scalar


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message is one line saying which extra
    to install (the CLI prints it as it is, without a traceback)."""


def teacher_regression(n_train: int = 50, n_test: int = 1000, hidden=(16, 16, 16, 16), seed: int = 0,
                       noise: float = 0.0):
    """Inputs x ~ N(0,1) of shape (n, 1) and targets y = teacher(x) (+ noise) of shape (n, 1).

    Returns ``(X_train, Y_train, X_test, Y_test, teacher)``.  The teacher is
    ``senn_ref.mlp([1, *hidden, 1], activation="rational", seed=seed + 1000)``.
    """
    from .architectures import mlp

    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    seed = check_positive_int(seed, "seed", minimum=0)
    noise = check_scalar(noise, "noise", minimum=0.0)
    teacher = mlp([1, *hidden, 1], activation="rational", seed=seed + 1000)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, 1))
    Y = teacher.forward(X)
    Y = Y + noise * rng.standard_normal(Y.shape)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:], teacher


def half_moons(n: int = 200, noise: float = 0.3, seed: int = 0):
    """Two half circles: X (n, 2) float, labels (n,) int in {0, 1}.

    Class 0: (cos t, sin t); class 1: (1 - cos t, 1/2 - sin t), with t evenly spaced on
    [0, pi] (``linspace``, n // 2 and n - n // 2 points; not random), plus N(0, noise^2)
    on both coordinates; rows are shuffled with ``seed``.
    """
    n = check_positive_int(n, "n", minimum=2)
    noise = check_scalar(noise, "noise", minimum=0.0)
    seed = check_positive_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    n0 = n // 2
    n1 = n - n0
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)])
    X = X + noise * rng.standard_normal(X.shape)
    perm = rng.permutation(n)
    return X[perm], y[perm]


def digits(test_fraction: float = 0.25, seed: int = 0, flat: bool = False):
    """scikit-learn's 8x8 digits, scaled to [0, 1], split per class.

    Returns ``(X_train, y_train, X_test, y_test)``; X has shape (n, 1, 8, 8)
    (or (n, 64) with ``flat=True``), labels are int64 in 0..9.  The split is
    stratified: every class contributes ``round(test_fraction * count)`` test images.
    """
    test_fraction = check_scalar(test_fraction, "test_fraction", minimum=0.0, strict=True)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction must be < 1, got {test_fraction}")
    seed = check_positive_int(seed, "seed", minimum=0)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingExtraError("the digits data needs scikit-learn, which is not installed: "
                                "pip install 'senn-ref[data]'") from exc
    data = load_digits()
    X = data.images.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx = []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        test_idx.append(idx[:int(round(test_fraction * idx.size))])
    test = np.zeros(y.size, dtype=bool)
    test[np.concatenate(test_idx)] = True
    X = X.reshape(-1, 64) if flat else X[:, None, :, :]
    tr, te = rng.permutation(np.flatnonzero(~test)), np.flatnonzero(test)
    return X[tr], y[tr], X[te], y[te]


# ------------------------------------------------------------------ teacher-student task
def teacher_student(n_train: int = 1000, n_test: int = 1000, n_in: int = 4, width: int = 6,
                    seed: int = 0, noise: float = 0.01):
    """A regression task whose right width is known: a random rational one-hidden-layer teacher.

    The teacher is ``mlp([n_in, width, 1], activation="rational", seed=seed + 2000)``; inputs
    x ~ N(0, I) of shape (n, n_in); targets y = teacher(x) + noise * N(0, 1), shape (n, 1).
    A student with rational units of the same family represents the teacher exactly at
    ``width`` units, so a growing student should stop near ``width`` (senn-math section 10) -
    if training can find it: ``derivations/21-trainer.md`` sections 7 and 9.
    Returns ``(X_train, Y_train, X_test, Y_test, teacher)``.  ``tests/test_datasets_idx.py``.
    """
    from .architectures import mlp

    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    n_in = check_positive_int(n_in, "n_in")
    width = check_positive_int(width, "width")
    seed = check_positive_int(seed, "seed", minimum=0)
    noise = check_scalar(noise, "noise", minimum=0.0)
    teacher = mlp([n_in, width, 1], activation="rational", seed=seed + 2000)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_test, n_in))
    Y = teacher.forward(X) + noise * rng.standard_normal((n_train + n_test, 1))
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:], teacher


# ------------------------------------------------------------------ MNIST / Fashion-MNIST IDX files
# IDX layout (big-endian): two zero bytes, a type byte, the number of dimensions d, then d
# unsigned 32-bit sizes, then the data in row-major order.  Type bytes: 0x08 uint8, 0x09 int8,
# 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.  A missing, truncated or corrupt file
# raises IDXError naming the file.  No downloads: the user names a folder that already holds
# the four files.  Tests: tests/test_datasets_idx.py.
import gzip  # noqa: E402
import os  # noqa: E402

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: file stems of the standard releases (same names for MNIST and Fashion-MNIST)
STEMS = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


class IDXError(ValueError):
    """A missing, truncated or corrupt IDX file (the message names the file)."""


def read_idx(path) -> np.ndarray:
    """The array stored in IDX file ``path`` (``.gz`` is decompressed), shape from its header.

    Raises :class:`IDXError` for a missing file, a bad magic number or type byte, a header
    shorter than it says, or a data section whose length differs from the product of the sizes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise IDXError(f"{path}: no such file")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except (OSError, EOFError) as exc:       # a truncated or corrupt gzip stream
        raise IDXError(f"{path}: cannot be read ({exc})") from exc
    if len(raw) < 4:
        raise IDXError(f"{path}: truncated ({len(raw)} bytes, no IDX header)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise IDXError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()})")
    ndim = raw[3]
    if ndim == 0:
        raise IDXError(f"{path}: IDX header declares 0 dimensions")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes, need {head})")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[raw[2]])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - head
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise IDXError(f"{path}: {what}: {have} data bytes for shape {shape} (need {need})")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise IDXError(f"{os.path.join(folder, stem)}[.gz]: no such file (expected the four MNIST / "
                   f"Fashion-MNIST IDX files in {folder})")


def load_idx_folder(folder, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
    """MNIST-style data from the four IDX files in ``folder`` (names as released, optionally .gz).

    Returns ``(X_train, y_train, X_test, y_test)``: X float64 (n, 1, H, W) scaled to [0, 1],
    y int64 in 0..9.  ``n_train`` / ``n_test`` keep a random subset (``seed``).  Checks: images
    are 3-d uint8, labels 1-d uint8 in 0..9, one label per image."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise IDXError(f"{folder}: no such folder")
    rng = np.random.default_rng(check_positive_int(seed, "seed", minimum=0))
    out = []
    for split, limit in (("train", n_train), ("test", n_test)):
        ip, lp = _find(folder, STEMS[f"{split}_images"]), _find(folder, STEMS[f"{split}_labels"])
        images, labels = read_idx(ip), read_idx(lp)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IDXError(f"{ip}: expected 3-d uint8 images, got {images.ndim}-d {images.dtype}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise IDXError(f"{lp}: expected 1-d uint8 labels, got {labels.ndim}-d {labels.dtype}")
        if labels.shape[0] != images.shape[0]:
            raise IDXError(f"{lp}: {labels.shape[0]} labels for {images.shape[0]} images in {ip}")
        if labels.size and labels.max() > 9:
            raise IDXError(f"{lp}: label {int(labels.max())} outside 0..9")
        idx = np.arange(labels.size)
        if limit is not None:
            limit = check_positive_int(limit, f"n_{split}")
            idx = np.sort(rng.permutation(labels.size)[:min(limit, labels.size)])
        out += [images[idx, None].astype(np.float64) / 255.0, labels[idx].astype(np.int64)]
    return tuple(out)
