"""senn-ref: a NumPy/Numba reference implementation of Self-Expanding Neural Networks.

Quick map (each name is documented where it is defined):

* building networks: :func:`mlp`, :func:`convnet`, :class:`Network`, :mod:`senn_ref.layers`;
* losses with output metrics: :mod:`senn_ref.losses` (``mse()``, ``softmax_cross_entropy()``);
* curvature: :mod:`senn_ref.fisher` (exact GGN, matrix-free products),
  :mod:`senn_ref.kfac` (K-FAC / KFC factors, damping);
* the natural expansion score and its ceiling: :mod:`senn_ref.score` (``eta``, ``ceiling``);
* training: :mod:`senn_ref.optim` (SGD, Adam, KFAC, NaturalGradientCG), :func:`fit`;
* growing while training (the SENN method): :class:`SENNConfig`, :func:`train_senn` (:mod:`senn_ref.trainer`);
* checking: :mod:`senn_ref.gradcheck`, :mod:`senn_ref.testing`;
* saving: :mod:`senn_ref.checkpoint` (``save``, ``load``; atomic, pickle-free);
* kernels: :mod:`senn_ref.kernels` with the NumPy/Numba switch in :mod:`senn_ref.backend`.
"""
__version__ = "0.1.0"

from . import backend, checkpoint, datasets, fisher, gradcheck, kfac, layers, losses, optim, score, testing
from .architectures import convnet, mlp
from .network import Gradients, Network
from .train import evaluate, fit
from .trainer import SENNConfig, train_senn

__all__ = ["Gradients", "Network", "SENNConfig", "train_senn", "backend", "checkpoint", "convnet", "datasets", "evaluate", "fisher", "fit",
           "gradcheck", "kfac", "layers", "losses", "mlp", "optim", "score", "testing", "__version__"]
