r"""Geometries on arbitrary point sets: a dense N×N cost, or the cost recomputed by blocks.

:class:`DenseGeometry` holds the explicit cost (N ≲ 4000); :class:`ChunkedGeometry`
recomputes it per block of rows inside ``lax.map`` (memory O(N·block), time O(N²) per
kernel application). :func:`point_set` picks one by size.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from mfjko.geometry.costs import (
    check_eps,
    min_offdiagonal_cost,
    nearest_index,
    point_cost,
    squared_euclidean,
)

Array = jax.Array

__all__ = ["DenseGeometry", "ChunkedGeometry", "point_set", "DENSE_MAX"]

#: point sets above this size use :class:`ChunkedGeometry` in :func:`point_set`.
DENSE_MAX = 4000

class _DenseLSE(eqx.Module):
    neg_cost_over_eps: Array

    def __call__(self, u: Array) -> Array:
        return logsumexp(self.neg_cost_over_eps + u[None, :], axis=1)


class DenseGeometry(eqx.Module):
    """Arbitrary point set with an explicit N×N cost (default squared Euclidean)."""

    points: Array
    cost: Array
    #: name of the cost in :data:`mfjko.geometry.costs.POINT_COSTS` ("custom" if given)
    cost_kind: str = eqx.field(static=True, default="sqeuclidean")

    @classmethod
    def from_points(cls, points: Array, cost: Array | None = None) -> DenseGeometry:
        """A dense geometry on ``points`` (N, D), squared Euclidean unless ``cost`` (N, N)."""
        points = jnp.asarray(points, dtype=jnp.float64)
        if cost is None:
            return cls(points=points, cost=squared_euclidean(points, points))
        return cls(points=points, cost=jnp.asarray(cost), cost_kind="custom")

    def boundary_mask(self) -> np.ndarray:
        """A point set has no box: no point is on a boundary, (N,) False."""
        return np.zeros(self.size, dtype=bool)

    @property
    def size(self) -> int:
        """Number N of support points."""
        return self.points.shape[0]

    @property
    def spacing(self) -> float:
        """Grid spacing δ: the distance √C between the two closest distinct points."""
        off = self.cost + jnp.diag(jnp.full(self.size, jnp.inf))
        return float(jnp.sqrt(jnp.min(off)))

    def cost_matrix(self) -> Array:
        """The stored cost matrix C, shape (N, N)."""
        return self.cost

    def apply_lse(self, u: Array, eps) -> Array:
        """Log-domain kernel application u ↦ log K e^u, K = exp(−C/ε), (N,) → (N,)."""
        return logsumexp(-self.cost / eps + u[None, :], axis=1)

    def lse_operator(self, eps) -> _DenseLSE:
        """The map u ↦ log K e^u, (N,) → (N,), with −C/ε precomputed once."""
        check_eps(eps)
        return _DenseLSE(-self.cost / eps)

    def apply_kernel(self, v: Array, eps) -> Array:
        """Kernel application v ↦ K v, K = exp(−C/ε), (N,) or (N, k) → same shape."""
        return jnp.exp(-self.cost / eps) @ v

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Nearest support point in squared Euclidean distance, and an all-True inside mask.

        A point set has no box, so every θ counts as inside.

        Args:
          theta: (q, D) points.

        Returns:
          (index (q,) int, inside (q,) bool).
        """
        idx = nearest_index(theta, self.points)
        return idx, jnp.ones(idx.shape, dtype=bool)


# --------------------------------------------------------------------------- chunked


def _row_blocks(points: Array, block: int) -> Array:
    pad = (-points.shape[0]) % block
    return jnp.pad(points, ((0, pad), (0, 0))).reshape(-1, block, points.shape[1])


class _ChunkedLSE(eqx.Module):
    points: Array
    eps: Array
    block_size: int = eqx.field(static=True)
    cost_kind: str = eqx.field(static=True)

    def __call__(self, u: Array) -> Array:
        return _chunked_lse(self.points, self.eps, u, self.block_size, self.cost_kind)


def _chunked_rows(points: Array, block_size: int, cost_kind: str, per_block):
    """Apply ``per_block(C_block)`` to each (block, N) slab of the cost; stack rows to (N, ...).

    The diagonal is set to exactly 0 (the ‖x‖² + ‖z‖² − 2xᵀz formula leaves ~1e-16‖x‖²
    there, which ε⁻¹ would amplify).
    """
    cost_fn = point_cost(cost_kind)
    n = points.shape[0]
    rows = _row_blocks(points, block_size)
    starts = jnp.arange(rows.shape[0]) * block_size

    def one(args):
        r, start = args
        gi = start + jnp.arange(block_size)
        c = jnp.where(gi[:, None] == jnp.arange(n)[None, :], 0.0, cost_fn(r, points))
        return per_block(c)

    out = lax.map(one, (rows, starts))
    return out.reshape((-1,) + out.shape[2:])[:n]


@functools.partial(jax.jit, static_argnums=(3, 4))
def _chunked_lse(points: Array, eps: Array, u: Array, block_size: int, cost_kind: str) -> Array:
    return _chunked_rows(
        points, block_size, cost_kind, lambda c: logsumexp(-c / eps + u[None, :], axis=1)
    )


class ChunkedGeometry(eqx.Module):
    """Arbitrary point set whose cost is recomputed per block of ``block_size`` rows.

    apply_lse is exact (log domain) and needs O(N·block_size) memory, O(N²·D) time.
    ``cost_kind``: "sqeuclidean" (‖θ−θ'‖²), "sphere" (squared geodesic of unit vectors)
    or "sphere_line" (squared geodesic on all but the last coordinate + squared difference
    of the last one, i.e. S^{d−1} × ℝ of ``sphere``).
    """

    points: Array
    block_size: int = eqx.field(static=True)
    cost_kind: str = eqx.field(static=True)
    spacing: float = eqx.field(static=True)

    def __init__(self, points: Array, block_size: int = 256, cost_kind: str = "sqeuclidean"):
        points = jnp.asarray(points, dtype=jnp.float64)
        if points.ndim != 2 or points.shape[0] == 0:
            raise ValueError(f"points must have shape (N, D) with N ≥ 1, got {points.shape}")
        if block_size < 1:
            raise ValueError(f"block_size must be ≥ 1, got {block_size}")
        self.points = points
        self.block_size = int(min(block_size, points.shape[0]))
        self.cost_kind = cost_kind
        self.spacing = math.sqrt(
            min_offdiagonal_cost(points, point_cost(cost_kind), self.block_size)
        )

    @property
    def size(self) -> int:
        """Number N of support points."""
        return self.points.shape[0]

    def boundary_mask(self) -> np.ndarray:
        """A point set has no box: no point is on a boundary, (N,) False."""
        return np.zeros(self.size, dtype=bool)

    def cost_matrix(self) -> Array:
        """The dense cost matrix C (N, N), assembled by blocks (small N only)."""
        return _chunked_rows(self.points, self.block_size, self.cost_kind, lambda c: c)

    def lse_operator(self, eps) -> _ChunkedLSE:
        """The map u ↦ log K e^u, (N,) → (N,), recomputing the cost per block of rows."""
        check_eps(eps)
        return _ChunkedLSE(
            self.points, jnp.asarray(eps, jnp.float64), self.block_size, self.cost_kind
        )

    def apply_lse(self, u: Array, eps) -> Array:
        """Log-domain kernel application u ↦ log K e^u, K = exp(−C/ε), (N,) → (N,)."""
        return self.lse_operator(eps)(u)

    def apply_kernel(self, v: Array, eps) -> Array:
        """Kernel application v ↦ K v, K = exp(−C/ε), (N,) → (N,), by blocks of rows."""
        return _chunked_rows(
            self.points, self.block_size, self.cost_kind, lambda c: jnp.exp(-c / eps) @ v
        )

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Nearest support point in this geometry's cost (index (q,)); every θ is inside."""
        idx = nearest_index(theta, self.points, point_cost(self.cost_kind))
        return idx, jnp.ones(idx.shape, dtype=bool)


def point_set(
    points, *, cost: str = "sqeuclidean", dense_max: int = DENSE_MAX, block_size: int = 256
):
    """A geometry on arbitrary points (N, D), dense or chunked by size.

    Args:
      points: (N, D) support points, N ≥ 2, finite.
      cost: ground cost, a key of :data:`mfjko.geometry.costs.POINT_COSTS`
        ("sqeuclidean", "sphere", "sphere_line").
      dense_max: largest N stored as a dense :class:`DenseGeometry`.
      block_size: rows per block of a :class:`ChunkedGeometry` (N > dense_max).

    Returns:
      A :class:`DenseGeometry` for N ≤ dense_max, else a :class:`ChunkedGeometry`.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError(f"points must have shape (N ≥ 2, D), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf")
    cost_fn = point_cost(cost)
    if points.shape[0] <= dense_max:
        C = cost_fn(points, points)
        np.fill_diagonal(C, 0.0)
        return DenseGeometry(points=jnp.asarray(points), cost=jnp.asarray(C), cost_kind=cost)
    return ChunkedGeometry(points, block_size=block_size, cost_kind=cost)
