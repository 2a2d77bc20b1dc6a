"""Hand-written layers: forward, backward (VJP) and forward-mode (JVP) passes."""
from .base import Layer

__all__ = ["Layer"]
