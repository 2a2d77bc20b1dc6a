"""Exact generalised Gauss-Newton curvature: dense assembly and matrix-free products.

``exact(net, X, loss, metric="euclidean", Y=None)`` -> (P, P);
``jacobian(net, X)`` -> (N, K, P); ``matvec(net, X, loss, v, ...)`` -> (P,);
``FisherOperator`` for repeated damped products (CG).  See ``derivations/09-fisher.md``.
"""
from .exact import METRICS, exact, ggn_factor, ggn_from_jacobian, jacobian
from .matvec import FisherOperator, matvec

__all__ = ["METRICS", "exact", "ggn_factor", "ggn_from_jacobian", "jacobian", "matvec", "FisherOperator"]
