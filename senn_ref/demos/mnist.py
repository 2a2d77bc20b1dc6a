"""mnist: the paper's MNIST experiment on real MNIST / Fashion-MNIST IDX files (``--data DIR``).

Nothing is downloaded: DIR must hold the four files as released (``train-images-idx3-ubyte``
etc., optionally ``.gz``), read and validated by ``datasets.load_idx_folder``.  Start
``mlp([784, 10, 10])`` (one hidden layer of 10 units), softmax cross-entropy.  SENNConfig fields
the demo sets, from the paper's MNIST setting: ``batch_size=1024``, ``weight_decay=1e-3``,
``max_width=64``, ``steps=1000``.  Options: ``n_train`` (default 10000: a random subset, since
full-batch curvature on all 60000 images is slow on a CPU), ``n_test`` (default 10000).
"""
from __future__ import annotations

from .. import losses
from ..architectures import mlp
from ..datasets import load_idx_folder
from ..trainer import SENNConfig
from .task import Task

NAME = "mnist"
SUMMARY = "MLP on real MNIST / Fashion-MNIST IDX files from --data DIR (no downloads)"
OPTIONS = {"data": "", "n_train": 10000, "n_test": 10000}


def task(seed: int = 0, quick: bool = False, data: str = "", n_train: int = 10000, n_test: int = 10000) -> Task:
    """The MNIST task (module docstring); ValueError naming --data without a folder."""
    if not data:
        raise ValueError("--data: the mnist demo needs --data DIR, a folder with the MNIST IDX files")
    if quick:
        n_train, n_test = min(n_train, 2000), min(n_test, 1000)
    X, y, Xt, yt = load_idx_folder(data, n_train=n_train, n_test=n_test, seed=seed)
    d = X.shape[2] * X.shape[3]
    X, Xt = X.reshape(len(X), d), Xt.reshape(len(Xt), d)
    notes = {"batch_size": "paper: 1024", "weight_decay": "paper: 1e-3", "max_width": "paper: capacity 64",
             "steps": "1000 mini-batch steps"}
    return Task(X, y, Xt, yt, losses.softmax_cross_entropy(), True,
                start=lambda: mlp([d, 10, 10], activation="rational", seed=seed),
                build=lambda widths: mlp([d, *widths, 10], activation="rational", seed=seed),
                config=SENNConfig(steps=1000, batch_size=1024, weight_decay=1e-3, max_width=64),
                quick_steps=30, config_notes=notes,
                info={"data": data, "n_train": int(y.size), "n_test": int(yt.size), "pixels": d})
