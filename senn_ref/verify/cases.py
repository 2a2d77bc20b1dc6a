"""Random instances for ``senn-ref verify``: small networks, data, losses, metrics, dampings.

Everything is drawn from the generator a claim receives, so a seed reproduces a run and
different seeds give instances nobody chose.  Networks stay small enough for the dense GGN
(a few hundred parameters at most).  ``derivations/README.md`` ("senn-ref verify").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..architectures import mlp
from ..losses import mse, softmax_cross_entropy

ACTIVATIONS = ("rational", "tanh", "silu")
METRICS = ("euclidean", "true", "empirical")


@dataclass
class Problem:
    """A network with data: X (N, n_in), Y (N, K) targets or (N,) labels, its loss and the
    output metric of the curvature; ``hidden`` lists the producer indices (Dense layers
    followed by another Dense layer)."""
    net: object
    X: np.ndarray
    Y: np.ndarray
    loss: object
    metric: str
    hidden: list


def random_mlp(rng, n_in: int, n_out: int, max_width: int = 4, max_hidden: int = 2, act=None):
    """``mlp([n_in, w_1.., n_out])`` with 1..max_hidden hidden layers of width 1..max_width and
    a random activation (rational, tanh or SiLU) unless ``act`` is given."""
    widths = [int(w) for w in rng.integers(1, max_width + 1, size=int(rng.integers(1, max_hidden + 1)))]
    act = ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))] if act is None else act
    return mlp([n_in, *widths, n_out], activation=act, seed=int(rng.integers(2 ** 31)))


def producers(net) -> list:
    """Indices of the Dense layers that feed a hidden layer (all but the last Dense)."""
    lin = [i for i, la in enumerate(net.layers) if "W" in la.params]
    return lin[:-1]


def random_problem(rng, N=None, classification=None, metric=None, act=None, max_width: int = 4,
                   max_hidden: int = 2) -> Problem:
    """A random regression (MSE, K in 1..2 outputs) or classification (softmax cross-entropy,
    K in 2..3 classes) problem with N in 3..12 examples, X ~ N(0, 1) scaled by a random
    factor in [0.5, 2], and a random output metric unless given."""
    classification = bool(rng.random() < 0.35) if classification is None else classification
    N = int(rng.integers(3, 13)) if N is None else N
    n_in = int(rng.integers(1, 4))
    K = int(rng.integers(2, 4)) if classification else int(rng.integers(1, 3))
    net = random_mlp(rng, n_in, K, max_width, max_hidden, act)
    X = rng.standard_normal((N, n_in)) * float(rng.uniform(0.5, 2.0))
    if classification:
        Y, loss = rng.integers(0, K, size=N), softmax_cross_entropy()
    else:
        Y, loss = rng.standard_normal((N, K)), mse()
    metric = METRICS[int(rng.integers(len(METRICS)))] if metric is None else metric
    return Problem(net, X, Y, loss, metric, producers(net))


#: a GGN factor whose smallest singular value is below this fraction of the largest makes delta = 0 ill-posed
GAP = 1e-6


def well_posed(net, X, Y, loss, metric: str) -> bool:
    """Whether undamped scores are numerically well defined at this instance: the GGN factor
    ``B`` (``fisher.ggn_factor``, (N r, P)) has full rank min(N r, P) and condition number at
    most 1 / GAP.  Below that, a pseudo-inverse depends on which tiny singular values a cut-off
    keeps: a new unit nearly in the span of old ones (``B_p = B_o X + C`` with large X) has a
    Schur block of size ``|C|`` above the cut-off while the grown ``B`` only shows ``|C| / |X|``
    below it, so two correct evaluations of the same undamped identity disagree by O(eta).
    Identities between undamped scores are compared on well-posed instances only."""
    from .. import fisher
    B = fisher.ggn_factor(net, X, loss, metric=metric, Y=Y)
    s = np.linalg.svd(B, compute_uv=False)
    return bool(s.size == min(B.shape) and s.size > 0 and s[-1] >= GAP * s[0])


def random_damping(rng, p_zero: float = 0.3) -> float:
    """0 with probability ``p_zero``, else 10^U(-4, 0)."""
    return 0.0 if rng.random() < p_zero else float(10.0 ** rng.uniform(-4.0, 0.0))


def random_units(rng, net, layer: int, k: int):
    """``(W (k, fan_in), b (k,), act)`` for k new units of producer ``layer``: W ~ N(0, 1/fan_in),
    b ~ N(0, 1), rational parameters v, c, l ~ N(0, 1) (an empty dict on tanh/SiLU paths)."""
    fan = net.layers[layer].params["W"].shape[1]
    W = rng.standard_normal((k, fan)) / np.sqrt(fan)
    b = rng.standard_normal(k)
    nxt = net.layers[layer + 1]
    act = {p: rng.standard_normal(k) for p in nxt.param_names} if nxt.param_names else {}
    return W, b, act


def random_invertible(rng, k: int, spread: float = 0.5) -> np.ndarray:
    """A well-conditioned random (k, k) matrix: I + spread * G / sqrt(k), G ~ N(0, 1),
    redrawn until its condition number is below 50."""
    while True:
        B = np.eye(k) + spread * rng.standard_normal((k, k)) / np.sqrt(k)
        if np.linalg.cond(B) < 50:
            return B


def random_psd(rng, n: int, rank=None) -> np.ndarray:
    """A random PSD (n, n) matrix of the given rank (default n): (1/n) C C^T, C (n, rank)."""
    rank = n if rank is None else rank
    C = rng.standard_normal((n, rank))
    return C @ C.T / n
