r"""Directions on the sphere S^{d−1}: the one generator used by grids and by F*.

d = 2: the uniform circle grid; d = 3: the Fibonacci lattice; d > 3: a scrambled Sobol
sequence pushed to Gaussians and normalized, optionally spread by projected repulsion
steps on the Riesz (d−1)-energy (a packing: larger minimal spacing, for grids).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import norm as _normal
from scipy.stats import qmc

__all__ = ["circle_directions", "sphere_directions", "spread_directions"]


def circle_directions(n_dirs: int, offset: float = 0.0) -> np.ndarray:
    """Uniform grid on S¹: s_k = (cos φ_k, sin φ_k), φ_k = (2πk + offset)/n_dirs.

    Args:
      n_dirs: number of directions (≥ 3).
      offset: rotation in [0, 2π); the grid moves by offset/(2π) of one spacing.

    Returns:
      (n_dirs, 2) unit vectors.
    """
    if n_dirs < 3:
        raise ValueError(f"n_dirs must be >= 3, got {n_dirs}")
    phi = (2.0 * np.pi * np.arange(n_dirs) + offset) / n_dirs
    return np.stack([np.cos(phi), np.sin(phi)], axis=1)


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))  # the golden angle
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _sobol_gaussian(n: int, d: int, seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Sobol' balance wants powers of 2
        u = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    g = _normal.ppf(np.clip(u, 1e-12, 1 - 1e-12))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def spread_directions(x: np.ndarray, steps: int) -> np.ndarray:
    """Spread unit vectors by projected repulsion steps on the Riesz (d−1)-energy.

    Each step moves every point by 1/4 of its nearest-neighbour distance along its
    tangential force, then renormalizes.

    Args:
      x: (n, d) unit vectors.
      steps: number of steps (O(n² d) each).

    Returns:
      (n, d) unit vectors.
    """
    x = np.array(x, dtype=np.float64)
    s = x.shape[1] - 1
    for _ in range(int(steps)):
        diff = x[:, None, :] - x[None, :, :]
        dist = np.linalg.norm(diff, axis=2)
        np.fill_diagonal(dist, np.inf)
        force = np.sum(diff / dist[:, :, None] ** (s + 2), axis=1)
        force -= np.sum(force * x, axis=1, keepdims=True) * x  # tangential part
        fnorm = np.linalg.norm(force, axis=1, keepdims=True)
        step = 0.25 * np.min(dist, axis=1, keepdims=True)
        x = x + step * force / np.where(fnorm > 0, fnorm, 1.0)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def sphere_directions(n_dirs: int, d: int, seed: int = 0, repulsion_steps: int = 0) -> np.ndarray:
    """Quasi-uniform points on S^{d−1} (module docstring).

    Args:
      n_dirs: number of directions (≥ 1; ≥ 3 for d = 2).
      d: ambient dimension (≥ 2).
      seed: scrambling seed of the Sobol sequence (d > 3).
      repulsion_steps: repulsion steps applied for d > 3 (0: plain low-discrepancy points,
        cheap for many directions; ~50: a packing for grids).

    Returns:
      (n_dirs, d) unit vectors.
    """
    if int(d) != d or d < 2:
        raise ValueError(f"d must be an integer >= 2, got {d}")
    if int(n_dirs) != n_dirs or n_dirs < 1:
        raise ValueError(f"n_dirs must be a positive integer, got {n_dirs}")
    n_dirs, d = int(n_dirs), int(d)
    if d == 2:
        return circle_directions(max(n_dirs, 3))
    if d == 3:
        return _fibonacci(n_dirs)
    return spread_directions(_sobol_gaussian(n_dirs, d, seed), repulsion_steps)
