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

:func:`discretize` puts the same law on a grid (exact cell masses or a histogram).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from mfjko.parametrizations import Parametrization
from mfjko.parametrizations import get as get_param

Array = jax.Array

__all__ = ["GaussianLaw", "BalancedLaw", "FileLaw", "sample_particles", "discretize"]


@dataclass(frozen=True)
class GaussianLaw:
    """Independent Gaussians: w ~ N(0, s² I_d), α ~ N(0, s²), s = ``scale``."""
    scale: float = 1.0

    def sample_classic(self, key: Array, m: int, d: int) -> tuple[Array, Array]:
        """Draw m classic neurons: W (m, d) and α (m,)."""
        kw, ka = jax.random.split(key)
        W = self.scale * jax.random.normal(kw, (m, d))
        alpha = self.scale * jax.random.normal(ka, (m,))
        return W, alpha

    def log_density_classic(self, W: Array, alpha: Array) -> Array:
        """Log density of (w, α) ∈ ℝ^{d+1} (the law is absolutely continuous there)."""
        z = jnp.concatenate([W, alpha[:, None]], axis=1) / self.scale
        D = z.shape[1]
        return -0.5 * jnp.sum(z * z, axis=1) - D * jnp.log(self.scale * jnp.sqrt(2 * jnp.pi))


@dataclass(frozen=True)
class BalancedLaw:
    """Balanced neurons: w ~ N(0, s² I_d), α = ±‖w‖ with a fair random sign, s = ``scale``."""
    scale: float = 1.0

    def sample_classic(self, key, m, d):
        """Draw m balanced classic neurons: W (m, d) and α (m,) with |α_i| = ‖w_i‖."""
        kw, ks = jax.random.split(key)
        W = self.scale * jax.random.normal(kw, (m, d))
        sign = jnp.where(jax.random.bernoulli(ks, 0.5, (m,)), 1.0, -1.0)
        return W, sign * jnp.linalg.norm(W, axis=1)


@dataclass(frozen=True)
class FileLaw:
    """The classic neurons stored at ``path`` (``.npz`` with W and alpha, or ``.csv``)."""
    path: str

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Read and validate the file: W (m, d) and α (m,), finite."""
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
        """The first m stored neurons, W (m, d) and α (m,); ValueError if d or m do not fit."""
        W, alpha = self.load()
        if W.shape[1] != d:
            raise ValueError(f"{self.path}: particles have d = {W.shape[1]}, data has d = {d}")
        if m > W.shape[0]:
            raise ValueError(f"{self.path}: holds {W.shape[0]} particles, {m} requested")
        return jnp.asarray(W[:m]), jnp.asarray(alpha[:m])


def sample_particles(law, param: Parametrization, key: Array, m: int, d: int) -> Array:
    """The m particles θ_i (m, D) of ``param`` drawn from ``law`` (d includes the bias column)."""
    W, alpha = law.sample_classic(key, m, d)
    return param.project(param.from_classic(W, alpha))


def _input_dim(param, D: int) -> int:
    for d in (D - 1, D // 2):
        if d >= 1 and param.dim(d) == D:
            return d
    raise ValueError(
        f"grid points have dimension {D}, which no input dimension gives "
        f"for parametrization {param.name!r}"
    )


def discretize(
    law, param, geom, key: Array, n_samples: int = 200_000, method: str = "auto"
) -> tuple[Array, float]:
    r"""Grid weights p0 (N,) of an initial law, and the fraction of its mass outside the grid.

    ``method="cells"`` (``neuron`` on a Cartesian box, law with a density): p0_k is the
    law's mass in the Voronoi cell of θ_k; exact (products of normal CDF differences)
    for :class:`~mfjko.initial.GaussianLaw`, else density at θ_k × cell volume.
    ``method="histogram"``: ``n_samples`` classic neurons (all rows of a FileLaw) are
    mapped to Θ by ``param.from_classic`` and counted in the cell of their nearest grid
    point (``geom.locate``: per axis on boxes; nearest direction and β cell on the sphere;
    nearest component for signed/pm). ``"auto"`` picks cells when they apply.

    Mass outside the box is dropped and reported as ``mass_outside`` (a fraction); p0 is
    the inside mass renormalized. For ``neuron``, ``pm``, ``sphere`` p0 sums to 1. For
    ``signed`` the grid points carry |α| = 1, so a neuron (w, α) puts mass |α| at
    (w, sign α): p0 sums to the law's E|α| (Monte-Carlo estimate), which makes the grid
    predictor equal the particle predictor f = E[α σ(wᵀx)].

    Raises ValueError if (essentially) all the mass falls outside the grid.
    """
    param = get_param(param)
    if method not in ("auto", "cells", "histogram"):
        raise ValueError(f"method must be 'auto', 'cells' or 'histogram', got {method!r}")
    d = _input_dim(param, geom.points.shape[1])
    cells_ok = (param.classic_coordinates and getattr(geom, "is_box", False)
                and hasattr(law, "log_density_classic"))
    if method == "cells" and not cells_ok:
        raise ValueError(
            "method='cells' needs the neuron parametrization, a Cartesian box "
            "grid and a law with a density (log_density_classic)"
        )
    if method == "cells" or (method == "auto" and cells_ok):
        p, inside = _cell_masses(law, geom)
    else:
        p, inside = _histogram(law, param, geom, key, d, n_samples)
    mass_outside = float(min(max(1.0 - inside, 0.0), 1.0))
    total = float(jnp.sum(p))
    if not (total > 0) or mass_outside > 1.0 - 1e-9:
        raise ValueError(
            f"essentially all the initial mass ({mass_outside:.6g}) falls outside "
            "the grid; enlarge the grid's box or shrink the law's scale"
        )
    return p, mass_outside


def _cell_masses(law, geom) -> tuple[Array, float]:
    """(p0 normalized, fraction of mass inside the box) by cell integration."""
    edges = [np.asarray(f.cell_edges()) for f in geom.factors]
    if isinstance(law, GaussianLaw):
        per_axis = [np.diff(ndtr(e / law.scale)) for e in edges]
        inside = math.prod(float(np.sum(m)) for m in per_axis)
        p = per_axis[0]
        for m in per_axis[1:]:
            p = np.multiply.outer(p, m)
        p = jnp.asarray(p.reshape(-1))
    else:
        vol = np.ones(())
        for e in edges:
            vol = np.multiply.outer(vol, np.diff(e))
        pts = geom.points
        logp = law.log_density_classic(pts[:, :-1], pts[:, -1])
        p = jnp.exp(logp) * jnp.asarray(vol.reshape(-1))
        inside = float(jnp.sum(p))
    if not inside > 0:
        return jnp.zeros(geom.size), 0.0
    return p / jnp.sum(p), inside


def _histogram(law, param, geom, key, d: int, n_samples: int) -> tuple[Array, float]:
    if isinstance(law, FileLaw):
        W, alpha = (jnp.asarray(a) for a in law.load())
        if W.shape[1] != d:
            raise ValueError(f"{law.path}: particles have d = {W.shape[1]}, grid has d = {d}")
    else:
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
        W, alpha = law.sample_classic(key, int(n_samples), d)
    theta, weights = param.grid_measure_of_classic(W, alpha)
    hist, kept = _weighted_histogram(geom, theta, weights)
    total, kept = float(jnp.sum(weights)), float(kept)
    if not (total > 0 and kept > 0):
        return jnp.zeros(geom.size), 0.0
    # mean mass per neuron: 1, except for `signed` (E|α|)
    mass = total / weights.shape[0]
    return hist / kept * mass, kept / total


@eqx.filter_jit
def _weighted_histogram(geom, theta: Array, weights: Array) -> tuple[Array, Array]:
    """Σ of the weights of the θ inside each cell (N,), and the total weight inside."""
    idx, inside = geom.locate(theta)
    w_in = jnp.where(inside, weights, 0.0)
    return jnp.zeros(geom.size).at[idx].add(w_in), jnp.sum(w_in)
