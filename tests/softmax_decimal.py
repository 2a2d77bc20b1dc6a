"""Float64-free references for the softmax true metric (derivations/07-losses.md sections 3, 4,
4.1, 4.2): decimal arithmetic at ``prec`` digits from the exact binary values of float logits.

At a logit gap g the complement 1 - p_a of the dominant class is ~exp(-g), so ``prec`` digits
leave about prec - g / 2.3 significant ones in it: 50 digits are ample for gaps up to ~35."""
from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np


def softmax_decimal(f) -> list:
    """p_k = exp(f_k - max f) / sum_j exp(f_j - max f) as Decimals (call inside a localcontext)."""
    fd = [Decimal(float(x)) for x in f]
    m = max(fd)
    w = [(x - m).exp() for x in fd]
    s = sum(w)
    return [x / s for x in w]


def true_metric_decimal(F, V, prec: int = 50):
    """For logits F (N, K) and vectors V (N, K): M = diag(p) - p p^T (N, K, K), R = diag(q) - p q^T
    (N, K, K) with q = sqrt(p), and M v (N, K), each entry evaluated in decimal and rounded once."""
    N, K = F.shape
    M, R, MV = np.empty((N, K, K)), np.empty((N, K, K)), np.empty((N, K))
    with localcontext() as ctx:
        ctx.prec = prec
        for n in range(N):
            p = softmax_decimal(F[n])
            q = [x.sqrt() for x in p]
            v = [Decimal(float(x)) for x in V[n]]
            for k in range(K):
                for j in range(K):
                    M[n, k, j] = float((p[k] if k == j else 0) - p[k] * p[j])
                    R[n, k, j] = float((q[k] if k == j else 0) - p[k] * q[j])
                MV[n, k] = float(p[k] * v[k] - p[k] * sum(pj * vj for pj, vj in zip(p, v)))
    return M, R, MV


def ggn_factor_decimal(J, F, labels, prec: int = 50):
    """The true-metric factor B (N K, P), rows R_n^T J_n / sqrt(N), and b = (h_1; ...; h_N) / sqrt(N)
    (N K,) with h_n = e_n / sqrt(p_n), for float Jacobians J (N, K, P) taken as exact."""
    N, K, P = J.shape
    B, b = np.empty((N * K, P)), np.empty(N * K)
    with localcontext() as ctx:
        ctx.prec = prec
        root_n = Decimal(N).sqrt()
        for n in range(N):
            p = softmax_decimal(F[n])
            Jd = [[Decimal(float(x)) for x in J[n, k]] for k in range(K)]
            for j in range(K):
                q = p[j].sqrt()
                col = [((1 if k == j else 0) - p[k]) for k in range(K)]       # R_kj / q_j
                B[n * K + j] = [float(q * sum(c * Jd[k][i] for k, c in enumerate(col)) / root_n)
                                for i in range(P)]
                b[n * K + j] = float((p[j] - (1 if j == labels[n] else 0)) / q / root_n)
    return B, b
