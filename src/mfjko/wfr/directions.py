r"""Direction grids for the WFR JKO: cone cost, signed features, and the neuron-measure view.

A WFR grid measure is a pair of nonnegative masses ν = (ν₊, ν₋), stored as an array
(2, N), on fixed unit directions s_1..s_N ∈ S^{d−1} (an array (N, d)). It is the
measure Σ_k ν^±_k δ_{(s_k, ±1)} of both the ``neuron`` and the ``sphere``
parametrization (docs/MATH.md "WFR §6"), predicting
f(x) = Σ_k (ν₊_k − ν₋_k) σ(s_kᵀx). The transport cost between directions is the cone
(Hellinger–Kantorovich) cost C = −ρ log cos²(min(d/√ρ, π/2)) with d the geodesic
distance, ≈ d² for small d.
"""

from __future__ import annotations

import math

import numpy as np

from mfjko.geometry.costs import squared_geodesic_sphere
from mfjko.geometry.sphere import circle_directions
from mfjko.geometry.sphere import sphere_directions as _sphere_directions
from mfjko.optimum.convex import direction_features as _direction_features

__all__ = [
    "circle_directions",
    "sphere_directions",
    "geodesic_distance",
    "cone_cost",
    "direction_features",
    "signed_features",
    "as_neuron_measure",
    "bin_particles",
    "lifted_objective",
]


def _check_directions(S) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] < 1 or S.shape[1] < 2:
        raise ValueError(f"directions must have shape (N ≥ 1, d ≥ 2), got {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError("directions contain NaN or inf")
    if np.max(np.abs(np.linalg.norm(S, axis=1) - 1.0)) > 1e-10:
        raise ValueError("directions must be unit vectors (normalize them first)")
    return S


def sphere_directions(d: int, n: int, *, seed: int = 0, steps: int = 50) -> np.ndarray:
    """Quasi-uniform directions on S^{d−1}, shape (n, d).

    :func:`mfjko.geometry.sphere.sphere_directions` with ``steps`` repulsion steps for
    d > 3 (a packing; O(n²) memory per step). d = 2 gives :func:`circle_directions`.

    Args:
      d: ambient dimension (≥ 2, bias coordinate included).
      n: number of directions.
      seed: Sobol scrambling seed (d > 3).
      steps: repulsion steps (d > 3).

    Returns:
      (n, d) unit vectors.
    """
    return np.asarray(_sphere_directions(n, d, seed=seed, repulsion_steps=steps),
                      dtype=np.float64)


def geodesic_distance(S, T) -> np.ndarray:
    """Great-circle distance arccos(sᵀt) between rows of S (N, d) and T (M, d), (N, M).

    The square root of :func:`mfjko.geometry.costs.squared_geodesic_sphere` (its stable
    chord form, accurate near 0 where arccos of a dot product loses half the digits).
    """
    return np.sqrt(squared_geodesic_sphere(np.asarray(S, np.float64), np.asarray(T, np.float64)))


def cone_cost(S, rho: float = 2.0, T=None) -> np.ndarray:
    r"""Cone cost C(s, t) = −ρ log cos²(min(d(s, t)/√ρ, π/2)), shape (N, M).

    d is the geodesic distance on S^{d−1}; C = +∞ when d ≥ (π/2)√ρ (no transport:
    destroying and creating the mass is cheaper), C ≈ d² + d⁴/(6ρ) for small d. With
    ρ = 2 (GD on balanced neurons, MATH.md "WFR §2") the cut-off angle is π/√2 ≈ 127°.

    Args:
      S: (N, d) unit directions.
      rho: marginal weight ρ > 0 (= ℓ², ℓ the length scale of the cone).
      T: (M, d) second set (default S).

    Returns:
      (N, M) float64 array, exactly 0 on coincident directions.
    """
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be positive and finite, got {rho}")
    S = _check_directions(S)
    if T is not None:
        T = _check_directions(T)
    if T is not None and T.shape[1] != S.shape[1]:
        raise ValueError(f"directions of dimension {S.shape[1]} and {T.shape[1]}")
    x = geodesic_distance(S, S if T is None else T) / math.sqrt(rho)
    if T is None:  # exactly symmetric with a zero diagonal (the kernel relies on Kᵀ = K)
        x = 0.5 * (x + x.T)
        np.fill_diagonal(x, 0.0)
    inside = x < 0.5 * math.pi
    return np.where(inside, -2.0 * rho * np.log(np.cos(np.where(inside, x, 0.0))), np.inf)


def direction_features(S, X) -> np.ndarray:
    """Φ_S[j, k] = σ(s_kᵀx_j), shape (n, N) (σ = ReLU; X includes the bias column)."""
    S = _check_directions(S)
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != S.shape[1]:
        raise ValueError(f"X must be (n, {S.shape[1]}) to match the directions, got {X.shape}")
    return _direction_features(X, S)


def signed_features(phi) -> np.ndarray:
    """Φ = [Φ_S, −Φ_S], shape (n, 2N): features of the masses ν.reshape(−1) = (ν₊, ν₋)."""
    phi = np.asarray(phi, np.float64)
    return np.concatenate([phi, -phi], axis=1)


def as_neuron_measure(S, masses) -> tuple[np.ndarray, np.ndarray]:
    """The WFR grid measure as the point set Σ_k ν^±_k δ_{(s_k, ±1)}.

    Valid for both ``neuron`` (θ = (w, α) = (s, ±1): m = ±σ(sᵀx), V = 2) and ``sphere``
    (θ = (s, β) = (s, ±1): V = 2|β| = 2), so F of either equals the lifted G.

    Args:
      S: (N, d) unit directions.
      masses: (2, N) nonnegative masses (ν₊, ν₋).

    Returns:
      (points (2N, d + 1), weights (2N,)): first the N points (s_k, +1), then (s_k, −1).
    """
    S = _check_directions(S)
    masses = np.asarray(masses, np.float64)
    N = S.shape[0]
    if masses.shape != (2, N):
        raise ValueError(f"masses must have shape (2, N) = (2, {N}), got {masses.shape}")
    pts = np.concatenate(
        [np.concatenate([S, np.ones((N, 1))], 1), np.concatenate([S, -np.ones((N, 1))], 1)]
    )
    return pts, masses.reshape(-1).copy()


def bin_particles(S, theta, weights=None) -> np.ndarray:
    """Masses (2, N) of particles θ_i = (s_i, β_i) (``sphere`` layout) on the grid S.

    Particle i puts mass w_i|β_i| (w_i = 1/m by default) on the component sign(β_i)
    at the direction s_k nearest to s_i (largest s_kᵀs_i); β_i = 0 contributes nothing.
    For balanced classic neurons, β = α‖w‖ = ±|α|‖w‖ (``Sphere.from_classic``).
    """
    S = _check_directions(S)
    theta = np.asarray(theta, np.float64)
    if theta.ndim != 2 or theta.shape[1] != S.shape[1] + 1:
        raise ValueError(f"theta must have shape (m, {S.shape[1] + 1}), got {theta.shape}")
    m = theta.shape[0]
    w = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (m,):
        raise ValueError(f"weights must have shape ({m},), got {w.shape}")
    s, beta = theta[:, :-1], theta[:, -1]
    idx = np.argmax(s @ S.T, axis=1)
    out = np.zeros((2, S.shape[0]))
    np.add.at(out[0], idx, np.where(beta > 0, w * beta, 0.0))
    np.add.at(out[1], idx, np.where(beta < 0, -w * beta, 0.0))
    return out


def lifted_objective(masses, phi, y, lam, potential=None) -> float:
    r"""G(ν) = (1/(2n))‖Φ_S(ν₊ − ν₋) − y‖² + λ(|ν₊| + |ν₋|) (+ ⟨ψ, ν⟩ if ``potential``).

    Args:
      masses: (2, N).
      phi: (n, N) direction features Φ_S.
      y: (n,) targets.
      lam: λ.
      potential: optional (2, N) extra linear potential ψ.
    """
    nu = np.asarray(masses, np.float64)
    phi = np.asarray(phi, np.float64)
    r = phi @ (nu[0] - nu[1]) - np.asarray(y, np.float64)
    val = 0.5 * np.mean(r * r) + lam * nu.sum()
    if potential is not None:
        val += float(np.sum(np.asarray(potential, np.float64) * nu))
    return float(val)
