r"""Grids over Θ: weighted point sets with a ground cost, and their Gibbs-kernel operators.

A *geometry* is an immutable pytree (``equinox.Module``) with

- ``points``: the support θ_1..θ_N in Θ of its parametrization, shape (N, D);
- ``apply_lse(u, eps)``: out_k = log Σ_l exp(−C_kl/ε + u_l), shape (N,) → (N,),
  the log-domain Gibbs kernel application (C is symmetric, so K = Kᵀ);
- ``cost_matrix()``: the dense N×N cost (tests and small N only);
- ``spacing``: the smallest grid spacing h (used to bound ε from below).

This module starts with :class:`DenseGeometry` (any point set, dense cost); the
separable Cartesian / sphere×line / component / multi-scale grids extend it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

Array = jax.Array


def squared_euclidean(x: Array, z: Array) -> Array:
    """C_kl = ‖x_k − z_l‖², shape (len(x), len(z))."""
    d2 = jnp.sum(x * x, 1)[:, None] + jnp.sum(z * z, 1)[None, :] - 2.0 * x @ z.T
    return jnp.maximum(d2, 0.0)


class DenseGeometry(eqx.Module):
    """Arbitrary point set with an explicit N×N cost (default squared Euclidean)."""

    points: Array
    cost: Array

    @classmethod
    def from_points(cls, points: Array, cost: Array | None = None) -> DenseGeometry:
        points = jnp.asarray(points, dtype=jnp.float64)
        cost = squared_euclidean(points, points) if cost is None else jnp.asarray(cost)
        return cls(points=points, cost=cost)

    @property
    def size(self) -> int:
        return self.points.shape[0]

    @property
    def spacing(self) -> float:
        off = self.cost + jnp.diag(jnp.full(self.size, jnp.inf))
        return float(jnp.sqrt(jnp.min(off)))

    def cost_matrix(self) -> Array:
        return self.cost

    def apply_lse(self, u: Array, eps) -> Array:
        return logsumexp(-self.cost / eps + u[None, :], axis=1)
