r"""Orthogonal inputs (Boursier, Pillaud-Vivien & Flammarion 2022).

For pairwise orthogonal x_k, λ = 0 and a small balanced initialization, the gradient flow
converges to h*(x) = σ(β₊ᵀx) − σ(β₋ᵀx), β± = Σ_{±y_k > 0} |y_k| x_k/‖x_k‖².
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------- orthogonal data


def orthogonal_limit_vectors(X, y, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """β± = Σ_{±y_k > 0} |y_k| x_k/‖x_k‖² for pairwise orthogonal rows x_k.

    ValueError if the rows are not pairwise orthogonal (relative tolerance ``rtol``) or one
    is zero.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"need X (n, d) and y (n,), got {X.shape}, {y.shape}")
    sq = np.sum(X * X, axis=1)
    if np.any(sq == 0):
        raise ValueError("orthogonal data must have no zero row")
    G = X @ X.T
    off = G - np.diag(np.diag(G))
    if np.max(np.abs(off)) > rtol * np.max(sq):
        raise ValueError(f"rows of X are not pairwise orthogonal (max |x_kᵀx_l| = "
                         f"{np.max(np.abs(off)):.3g})")
    coef = np.abs(y) / sq
    beta_plus = ((y > 0) * coef) @ X
    beta_minus = ((y < 0) * coef) @ X
    return beta_plus, beta_minus


def orthogonal_limit_predictor(X, y, X_eval) -> np.ndarray:
    """h*(x) = σ(β₊ᵀx) − σ(β₋ᵀx) at the rows of ``X_eval`` (m_eval, d), shape (m_eval,).

    The small-initialization limit of the gradient flow on orthogonal data (X, y) with
    λ = 0 (Boursier, Pillaud-Vivien & Flammarion 2022).
    """
    bp, bm = orthogonal_limit_vectors(X, y)
    Xe = np.asarray(X_eval, dtype=np.float64)
    return np.maximum(Xe @ bp, 0.0) - np.maximum(Xe @ bm, 0.0)
