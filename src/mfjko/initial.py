"""Initial laws of the neurons, shared by particles and grids.

A law is defined on *classic* neurons (w ∈ ℝ^d, α ∈ ℝ) and pushed to any
parametrization by its exact map ``Parametrization.from_classic``; so particle
methods sample from it and grid methods discretize the very same law
(``mfjko.grids.discretize``).

- ``GaussianLaw(scale)``: w ~ N(0, s² I_d), α ~ N(0, s²) independent.
- ``BalancedLaw(scale)``: w ~ N(0, s² I_d), α = ±‖w‖ with a fair random sign
  (‖w‖ = |α|, the state weight decay drives GD to).
- ``FileLaw(path)``: the particles stored in a ``.npz`` (``W`` (m, d), ``alpha`` (m,))
  or ``.csv`` (columns w_1..w_d, alpha); sampling m particles takes the first m rows
  (m must not exceed the file's), and the grid discretization histograms all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mfjko.parametrizations import Parametrization

Array = jax.Array

__all__ = ["GaussianLaw", "BalancedLaw", "FileLaw", "sample_particles"]


@dataclass(frozen=True)
class GaussianLaw:
    scale: float = 1.0

    def sample_classic(self, key: Array, m: int, d: int) -> tuple[Array, Array]:
        kw, ka = jax.random.split(key)
        W = self.scale * jax.random.normal(kw, (m, d))
        alpha = self.scale * jax.random.normal(ka, (m,))
        return W, alpha

    def log_density_classic(self, W: Array, alpha: Array) -> Array:
        """log density of (w, α) ∈ ℝ^{d+1} (the law is absolutely continuous there)."""
        z = jnp.concatenate([W, alpha[:, None]], axis=1) / self.scale
        D = z.shape[1]
        return -0.5 * jnp.sum(z * z, axis=1) - D * jnp.log(self.scale * jnp.sqrt(2 * jnp.pi))


@dataclass(frozen=True)
class BalancedLaw:
    scale: float = 1.0

    def sample_classic(self, key, m, d):
        kw, ks = jax.random.split(key)
        W = self.scale * jax.random.normal(kw, (m, d))
        sign = jnp.where(jax.random.bernoulli(ks, 0.5, (m,)), 1.0, -1.0)
        return W, sign * jnp.linalg.norm(W, axis=1)


@dataclass(frozen=True)
class FileLaw:
    path: str

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        p = Path(self.path)
        if not p.exists():
            raise FileNotFoundError(f"initial particles file {p} does not exist")
        if p.suffix == ".npz":
            with np.load(p) as z:
                missing = {"W", "alpha"} - set(z.files)
                if missing:
                    raise ValueError(f"{p}: missing arrays {sorted(missing)} (need W and alpha)")
                W, alpha = np.asarray(z["W"], float), np.asarray(z["alpha"], float)
        elif p.suffix == ".csv":
            arr = np.loadtxt(p, delimiter=",", ndmin=2, comments="#")
            W, alpha = arr[:, :-1], arr[:, -1]
        else:
            raise ValueError(f"{p}: initial particles must be .npz or .csv")
        if W.ndim != 2 or alpha.shape != (W.shape[0],) or W.shape[0] == 0:
            raise ValueError(f"{p}: need W (m, d) and alpha (m,), got {W.shape}, {alpha.shape}")
        if not (np.isfinite(W).all() and np.isfinite(alpha).all()):
            raise ValueError(f"{p}: initial particles contain NaN or inf")
        return W, alpha

    def sample_classic(self, key, m, d):
        W, alpha = self.load()
        if W.shape[1] != d:
            raise ValueError(f"{self.path}: particles have d = {W.shape[1]}, data has d = {d}")
        if m > W.shape[0]:
            raise ValueError(f"{self.path}: holds {W.shape[0]} particles, {m} requested")
        return jnp.asarray(W[:m]), jnp.asarray(alpha[:m])


def sample_particles(law, param: Parametrization, key: Array, m: int, d: int) -> Array:
    """m particles θ_i (m, D) of ``param`` drawn from ``law`` (d includes the bias column)."""
    W, alpha = law.sample_classic(key, m, d)
    return param.project(param.from_classic(W, alpha))
