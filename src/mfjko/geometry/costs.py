r"""Ground costs on Θ: squared distances between point sets, one implementation each.

Squared Euclidean ‖x − z‖²; squared geodesic on the sphere arccos(sᵀt)², in its stable
form (2 arcsin(‖s − t‖/2))²; periodic squared distance of angles; and their sum on
S^{d−1} × ℝ (``sphere``). Each takes NumPy or JAX arrays and returns the same kind.
:class:`SphereLineCost` is the same geodesic cost as an OTT-JAX ``CostFn``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax import lax
from ott.geometry import costs as ott_costs

Array = jax.Array

__all__ = [
    "squared_euclidean",
    "squared_geodesic_sphere",
    "squared_periodic",
    "squared_sphere_line",
    "point_cost",
    "POINT_COSTS",
    "SphereLineCost",
    "ott_cost",
    "check_eps",
    "nearest_index",
    "min_offdiagonal_cost",
]


def xp_of(*arrays):
    """Numpy for numpy inputs (grid construction: no XLA compile per shape), else jax."""
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def squared_euclidean(x: Array, z: Array) -> Array:
    """C_kl = ‖x_k − z_l‖².

    Args:
      x: (K, D) points.
      z: (L, D) points.

    Returns:
      (K, L) squared distances (clipped at 0 against rounding).
    """
    xp = xp_of(x, z)
    d2 = xp.sum(x * x, 1)[:, None] + xp.sum(z * z, 1)[None, :] - 2.0 * x @ z.T
    return xp.maximum(d2, 0.0)


def _geodesic_from_chord(chord):
    xp = xp_of(chord)
    angle = 2.0 * xp.arcsin(xp.minimum(0.5 * chord, 1.0))
    return angle * angle


def squared_geodesic_sphere(s: Array, t: Array) -> Array:
    """C_kl = arccos(s_kᵀt_l)² for unit vectors.

    Computed as (2 arcsin(‖s_k − t_l‖/2))², which stays accurate for nearby points where
    arccos of a dot product close to 1 loses half the digits.

    Args:
      s: (K, d) unit vectors.
      t: (L, d) unit vectors.

    Returns:
      (K, L) squared geodesic distances (radians²).
    """
    xp = xp_of(s, t)
    return _geodesic_from_chord(xp.sqrt(squared_euclidean(s, t)))


def squared_periodic(a: Array, b: Array, period: float = 2.0 * math.pi) -> Array:
    """C_kl = min(|a_k − b_l|, P − |a_k − b_l|)² for angles (mod P).

    Args:
      a: (K,) or (K, 1) angles (radians unless ``period`` says otherwise).
      b: (L,) or (L, 1) angles.
      period: the period P (2π by default).

    Returns:
      (K, L) squared periodic distances.
    """
    xp = xp_of(a, b)
    diff = xp.mod(xp.abs(a.reshape(-1)[:, None] - b.reshape(-1)[None, :]), period)
    dist = xp.minimum(diff, period - diff)
    return dist * dist


def squared_sphere_line(x: Array, z: Array) -> Array:
    """Cost on S^{d−1} × ℝ: squared geodesic on the direction + squared β difference.

    Args:
      x: (K, d + 1) points (s, β) with ‖s‖ = 1.
      z: (L, d + 1) points (s, β) with ‖s‖ = 1.

    Returns:
      (K, L) costs.
    """
    return squared_geodesic_sphere(x[:, :-1], z[:, :-1]) + squared_euclidean(x[:, -1:], z[:, -1:])


#: point-set costs by name (``cost_kind`` of geometries, ``cost`` of parametrizations)
POINT_COSTS = {
    "sqeuclidean": squared_euclidean,
    "sphere": squared_geodesic_sphere,
    "sphere_line": squared_sphere_line,
}


def point_cost(kind: str):
    """The cost function called ``kind`` (a key of :data:`POINT_COSTS`)."""
    try:
        return POINT_COSTS[kind]
    except KeyError:
        raise ValueError(f"unknown cost {kind!r}; choose one of {sorted(POINT_COSTS)}") from None


@jtu.register_pytree_node_class
class SphereLineCost(ott_costs.CostFn):
    """:func:`squared_sphere_line` as an OTT-JAX cost: points (s_1..s_d, β), ‖s‖ = 1."""

    def __call__(self, x, y):
        """Cost between two single points x, y of shape (d + 1,), a scalar."""
        return self.all_pairs(x[None], y[None])[0, 0]

    def all_pairs(self, x, y):
        """Cost matrix between point sets x (K, d + 1) and y (L, d + 1), shape (K, L)."""
        return squared_sphere_line(x, y)


def ott_cost(kind: str) -> ott_costs.CostFn:
    """The OTT-JAX cost function for ``kind`` ("sqeuclidean" or "sphere_line")."""
    if kind == "sqeuclidean":
        return ott_costs.SqEuclidean()
    if kind == "sphere_line":
        return SphereLineCost()
    raise ValueError(f"no OTT cost for {kind!r}; choose 'sqeuclidean' or 'sphere_line'")


def check_eps(eps) -> None:
    """ValueError unless a concrete ε is > 0 (inside jit ε is traced and trusted)."""
    if isinstance(eps, int | float | np.floating | np.integer) and not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def nearest_index(query: Array, points: Array, cost_fn=squared_euclidean) -> Array:
    """argmin_l cost(query_i, points_l) for every query row.

    Runs in chunks of queries so that memory stays O(chunk·N) (chunk·N ≈ 4M entries).

    Args:
      query: (q, D) points to locate.
      points: (N, D) candidate points.
      cost_fn: a point-set cost, (K, D) × (L, D) → (K, L).

    Returns:
      (q,) int indices.
    """
    query = jnp.asarray(query, dtype=jnp.float64)
    q, n = query.shape[0], points.shape[0]
    if q == 0:
        return jnp.zeros((0,), dtype=jnp.int32)
    chunk = max(1, min(q, (1 << 22) // max(n, 1)))
    pad = (-q) % chunk
    blocks = jnp.pad(query, ((0, pad), (0, 0))).reshape(-1, chunk, query.shape[1])
    idx = lax.map(lambda b: jnp.argmin(cost_fn(b, points), axis=1), blocks)
    return idx.reshape(-1)[:q]


def min_offdiagonal_cost(points: Array, cost_fn, block: int = 256) -> float:
    """min_{k≠l} C_kl, by blocks of rows (O(N·block) memory).

    Args:
      points: (N, D).
      cost_fn: a point-set cost, (K, D) × (L, D) → (K, L).
      block: rows per block.

    Returns:
      The smallest off-diagonal cost (inf for N < 2).
    """
    n = points.shape[0]
    if n < 2:
        return math.inf
    block = min(block, n)
    pad = (-n) % block
    rows = jnp.pad(points, ((0, pad), (0, 0))).reshape(-1, block, points.shape[1])
    starts = jnp.arange(rows.shape[0]) * block

    def one(args):
        r, start = args
        c = cost_fn(r, points)
        gi = start + jnp.arange(block)
        c = jnp.where(gi[:, None] == jnp.arange(n)[None, :], jnp.inf, c)
        c = jnp.where((gi < n)[:, None], c, jnp.inf)
        return jnp.min(c)

    return float(jnp.min(lax.map(one, (rows, starts))))
