"""The SENN trainer: :class:`SENNConfig`, :func:`train_senn` and its :class:`SENNLog`.
``derivations/21-trainer.md``."""
from .config import SENNConfig
from .log import SENNLog
from .train_senn import make_optimizer, train_senn

__all__ = ["SENNConfig", "SENNLog", "make_optimizer", "train_senn"]
