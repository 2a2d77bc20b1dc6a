"""Small data sets for demos and tests (no downloads).

* ``teacher_regression`` - the 1-D regression task of the paper's Figure 2: the
  target is a random rational MLP with hidden widths [16, 16, 16, 16],
  x ~ N(0, 1), 50 training and 1000 test points (senn-math section 10).
* ``half_moons`` - two interleaved half circles with Gaussian noise, written here
  so that it needs no extra package.
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
