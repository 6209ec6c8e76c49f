r"""F* as a convex problem over signed measures on the sphere, its dual and certificates.

F* = min_ν P(ν), P(ν) = (1/(2n))‖Φν − y‖² + λ‖ν‖_TV with Φν(x) = ∫ σ(sᵀx) dν(s) (by
2-homogeneity of the neuron; docs/MATH.md "Global optimum"). D(g) = −gᵀy − (n/2)‖g‖² under
sup_s |Σ_j g_j σ(sᵀx_j)| ≤ λ is its dual; every solver returns a certified duality gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from mfjko.objective import fit_loss


@dataclass(frozen=True)
class OptimumResult:
    """A (near-)minimizer ν = Σ_k nu[k] δ_{directions[k]} of P(ν) = F*'s convex form.

    value: P(ν) of the returned measure — an upper bound on F* (exact feasible value).
    lower_bound: a certified lower bound on the *continuous* F* (dual value with an exact
        sup over the whole sphere), or NaN when the activation patterns were not enumerated.
    duality_gap: certified gap of the problem the method solves (the direction-restricted
        Lasso for (a); the continuous problem for (b)).
    iterations: solver iterations (FISTA iterations for (a), interior-point for (b)).
    method: "circle" / "directions" / "exact".
    """

    value: float
    nu: np.ndarray
    directions: np.ndarray
    duality_gap: float
    iterations: int
    method: str
    lower_bound: float = float("nan")
    meta: dict = field(default_factory=dict)

# ----------------------------------------------------------------------------- inputs


def _check_data(X, y, lam, *, allow_zero_lam: bool = False) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite (no NaN or inf)")
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0 or (lam == 0 and not allow_zero_lam):
        need = "lam >= 0" if allow_zero_lam else "lam > 0 (the dual certificate needs it)"
        raise ValueError(f"weight decay must satisfy {need}, got lam={lam}")
    return X, y


def _check_directions(directions, d: int) -> np.ndarray:
    S = np.asarray(directions, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] != d or S.shape[0] == 0:
        raise ValueError(f"directions must be a non-empty (K, {d}) array, got {S.shape}")
    norms = np.linalg.norm(S, axis=1)
    if not np.all(np.abs(norms - 1.0) < 1e-10):
        raise ValueError("directions must be unit vectors (rows of norm 1)")
    return S


def direction_features(X, directions) -> np.ndarray:
    """Φ[j, k] = σ(s_kᵀ x_j), shape (n, K)."""
    return np.maximum(np.asarray(X) @ np.asarray(directions).T, 0.0)


# ---------------------------------------------------------------- primal, dual, certificate


def primal_value(X, y, lam, nu, directions) -> float:
    """P(ν) = (1/(2n))‖Φν − y‖² + λ‖ν‖₁ for ν = Σ_k nu[k] δ_{directions[k]}."""
    return lasso_value(direction_features(X, directions), np.asarray(nu), np.asarray(y), lam)


def lasso_value(Phi, nu, y, lam) -> float:
    """P(ν) = (1/(2n))‖Φν − y‖² + λ‖ν‖₁: F of the lifted measure, a float.

    The data part is :func:`mfjko.objective.fit_loss`. Shapes: Φ (n, K), ν (K,), y (n,).
    """
    return float(fit_loss(Phi @ nu, y) + lam * np.sum(np.abs(nu)))


def dual_value(y, g) -> float:
    """D(g) = −gᵀy − (n/2)‖g‖² (a lower bound on F* when g is dual-feasible)."""
    g = np.asarray(g)
    return float(-g @ np.asarray(y) - 0.5 * len(g) * (g @ g))


def _cone_sup(A: np.ndarray, a: np.ndarray) -> float:
    """sup_{u : Au ≥ 0, ‖u‖ ≤ 1} aᵀu = ‖Π_K(a)‖ for the polyhedral cone K = {Au ≥ 0}.

    Moreau: a = Π_K(a) + Π_{K°}(a) with K° = {−Aᵀη : η ≥ 0}, and Π_{K°}(a) = −Aᵀη* with
    η* = argmin_{η ≥ 0} ‖a + Aᵀη‖ (a non-negative least-squares problem).
    """
    eta, resid = nnls(A.T, -a)
    return float(resid)


def dual_sup(X, g, patterns: np.ndarray) -> float:
    """sup_{s ∈ S^{d−1}} |Σ_j g_j σ(sᵀx_j)|, exactly, given all chamber patterns.

    The closed chambers K_i = {(2D_i − I)Xu ≥ 0} cover ℝ^d and on K_i the function is the
    linear form (Xᵀ D_i g)ᵀu, whose sup over K_i ∩ ball is a cone projection (NNLS).
    """
    X = np.asarray(X, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    best = 0.0
    for D in np.asarray(patterns, dtype=bool):
        A = np.where(D, 1.0, -1.0)[:, None] * X
        a = X.T @ (D * g)
        best = max(best, _cone_sup(A, a), _cone_sup(A, -a))
    return best


def _certificate(X, y, lam, nu, directions, patterns=None) -> tuple[float, float, float]:
    """(primal value, grid dual value, continuous dual value or NaN) for ν on directions."""
    Phi = direction_features(X, directions)
    n = len(y)
    r = Phi @ nu - y
    primal = lasso_value(Phi, nu, y, lam)
    g = r / n
    grid_sup = float(np.max(np.abs(Phi.T @ g)))
    c = 1.0 if grid_sup <= lam else lam / grid_sup
    grid_dual = dual_value(y, c * g)
    cont_dual = float("nan")
    if patterns is not None:
        sup = dual_sup(X, g, patterns)
        c = 1.0 if sup <= lam else lam / sup
        cont_dual = dual_value(y, c * g)
    return primal, grid_dual, cont_dual


def neuron_measure(result: OptimumResult) -> tuple[np.ndarray, np.ndarray]:
    """A probability measure on ``neuron`` particles with F(μ) = P(ν) (module doc).

    Weights p_k = |β_k|/‖β‖₁ on balanced neurons (r s_k, sign(β_k) r), r² = ‖β‖₁.
    Returns (thetas (K, d+1), weights (K,)) over the atoms with β_k ≠ 0.
    """
    keep = np.flatnonzero(result.nu)
    beta = result.nu[keep]
    total = float(np.sum(np.abs(beta)))
    if total == 0:
        d = result.directions.shape[1]
        return np.zeros((1, d + 1)), np.ones(1)
    r = math.sqrt(total)
    thetas = np.concatenate([r * result.directions[keep], (np.sign(beta) * r)[:, None]], axis=1)
    return thetas, np.abs(beta) / total


