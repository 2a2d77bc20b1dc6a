"""Hand-written layers: forward, backward (VJP) and forward-mode (JVP) passes.

Every layer follows the contract in :mod:`senn_ref.layers.base`.
"""
from .activations import Elementwise, SiLU, Tanh, silu, silu_derivative, stable_sigmoid, tanh_derivative
from .base import Layer, ParameterFree
from .conv2d import Conv2D
from .dense import Dense
from .flatten import Flatten
from .pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from .rational import (EPS, Rational, identity_param_partials, identity_scale, rational_dc, rational_dl,
                       rational_dv, rational_dx, rational_partials, rational_value)

__all__ = ["AvgPool2D", "Conv2D", "Dense", "EPS", "Elementwise", "Flatten", "GlobalAvgPool", "Layer",
           "MaxPool2D", "ParameterFree", "Rational", "SiLU", "Tanh", "identity_param_partials", "identity_scale",
           "rational_dc", "rational_dl", "rational_dv", "rational_dx", "rational_partials",
           "rational_value", "silu", "silu_derivative", "stable_sigmoid", "tanh_derivative"]
