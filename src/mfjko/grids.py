r"""Grids over Θ: weighted point sets with a ground cost, and their Gibbs-kernel operators.

A *geometry* is an immutable pytree (``equinox.Module``; sizes and shapes are static
fields, so a geometry can be passed into jitted functions) with

- ``points``: the support θ_1..θ_N in Θ of its parametrization, shape (N, D), so that
  ``param.features(geom.points, X)`` and ``param.potentials(geom.points)`` just work;
- ``apply_lse(u, eps)``: out_k = log Σ_l exp(−C_kl/ε + u_l), shape (N,) → (N,),
  the log-domain Gibbs kernel application (C is symmetric, so K = Kᵀ);
- ``lse_operator(eps)``: the same map with everything that depends on ε alone
  (e.g. the factor kernels exp(−C_k/ε)) computed once; a pytree that is callable on u,
  so a Sinkhorn loop builds it once per ε, outside its ``lax.while_loop``;
- ``apply_kernel(v, eps)``: K v with K = exp(−C/ε) (scaling domain, no stabilization);
- ``cost_matrix()``: the dense N×N cost (tests and small N only);
- ``spacing``: the smallest distance between two distinct support points (a float);
- ``size``: N;
- ``locate(theta)``: index of the support point (cell) each θ falls in, and whether it
  is inside the grid's box (used by :func:`discretize`).

Costs are squared distances in Θ: squared Euclidean on Cartesian boxes, squared
geodesic on the sphere factor of ``sphere`` (periodic angle for d = 2, arc length
arccos(sᵀs') for d > 2), +∞ between the two components of ``signed`` / ``pm`` grids.

Geometries
----------
- :class:`DenseGeometry`: any point set, explicit N×N cost (N ≲ 4000).
- :class:`ChunkedGeometry`: any point set, the cost recomputed per block of rows inside
  ``lax.map``; memory O(N·block), time O(N²) per application.
- :class:`ProductGeometry`: Cartesian product of factors with additive cost
  C = Σ_k C_k, so K = ⊗_k K_k and one application costs O(N·Σ_k n_k) time and O(N)
  memory (never an N×N array).
- :class:`ComponentGeometry`: disjoint union of geometries (blocks) with infinite cost
  between blocks: a block-diagonal kernel, no mass moves between blocks.

Constructors: :func:`cartesian_grid`, :func:`point_set`, :func:`sphere_line_grid`,
:func:`signed_grid`, :func:`pm_grid`, :func:`multiscale`, :func:`grid_for`.
Initial laws onto grids: :func:`discretize`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp
from scipy.special import ndtr

from mfjko import parametrizations as _params
from mfjko.initial import FileLaw, GaussianLaw

Array = jax.Array

__all__ = [
    "Geometry",
    "squared_euclidean",
    "squared_geodesic_sphere",
    "squared_periodic",
    "DenseGeometry",
    "ChunkedGeometry",
    "Factor",
    "line_factor",
    "angle_factor",
    "sphere_factor",
    "ProductGeometry",
    "ComponentGeometry",
    "Identity",
    "CircleEmbed",
    "ScaledEmbed",
    "AppendConstant",
    "ZeroPad",
    "cartesian_grid",
    "point_set",
    "fibonacci_sphere",
    "quasi_uniform_sphere",
    "sphere_line_grid",
    "signed_grid",
    "pm_grid",
    "multiscale",
    "grid_for",
    "discretize",
    "boundary_mask",
    "UNDERFLOW",
]

#: A kernel-mode line sum below this (or non-finite) sends that axis to the exact
#: log-sum-exp: terms lost to underflow (< 1e-308) are then < 1e-28 relative to the sum.
UNDERFLOW = 1e-280

#: point sets above this size use :class:`ChunkedGeometry` in :func:`point_set`.
DENSE_MAX = 4000


# --------------------------------------------------------------------------- costs


def _xp(*arrays):
    """numpy for numpy inputs (grid construction: no XLA compile per shape), else jax."""
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def squared_euclidean(x: Array, z: Array) -> Array:
    """C_kl = ‖x_k − z_l‖², shape (len(x), len(z))."""
    xp = _xp(x, z)
    d2 = xp.sum(x * x, 1)[:, None] + xp.sum(z * z, 1)[None, :] - 2.0 * x @ z.T
    return xp.maximum(d2, 0.0)


def squared_geodesic_sphere(s: Array, t: Array) -> Array:
    """C_kl = arccos(s_kᵀt_l)² for unit vectors, shape (len(s), len(t)).

    Computed as (2 arcsin(‖s_k − t_l‖/2))², which stays accurate for nearby points where
    arccos of a dot product close to 1 loses half the digits.
    """
    xp = _xp(s, t)
    chord = xp.sqrt(squared_euclidean(s, t))
    angle = 2.0 * xp.arcsin(xp.minimum(0.5 * chord, 1.0))
    return angle * angle


def squared_periodic(a: Array, b: Array, period: float = 2.0 * math.pi) -> Array:
    """C_kl = min(|a_k − b_l|, P − |a_k − b_l|)² for angles (mod P), shape (len(a), len(b))."""
    xp = _xp(a, b)
    diff = xp.mod(xp.abs(a.reshape(-1)[:, None] - b.reshape(-1)[None, :]), period)
    dist = xp.minimum(diff, period - diff)
    return dist * dist


def _squared_sphere_line(x: Array, z: Array) -> Array:
    """Cost on S^{d−1} × ℝ: squared geodesic on the direction + squared β difference."""
    return squared_geodesic_sphere(x[:, :-1], z[:, :-1]) + squared_euclidean(x[:, -1:], z[:, -1:])


_POINT_COSTS = {
    "sqeuclidean": squared_euclidean,
    "sphere": squared_geodesic_sphere,
    "sphere_line": _squared_sphere_line,
}


def _point_cost(kind: str):
    try:
        return _POINT_COSTS[kind]
    except KeyError:
        raise ValueError(f"unknown cost {kind!r}; choose one of {sorted(_POINT_COSTS)}") from None


def _check_eps(eps) -> None:
    # Only concrete values can be checked; inside jit ε is trusted.
    if isinstance(eps, int | float | np.floating | np.integer) and not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Geometry(Protocol):
    """What the JKO solver needs from a grid (see the module docstring)."""

    points: Array

    @property
    def size(self) -> int: ...

    def apply_lse(self, u: Array, eps) -> Array: ...

    def lse_operator(self, eps): ...

    def apply_kernel(self, v: Array, eps) -> Array: ...

    def cost_matrix(self) -> Array: ...

    def locate(self, theta: Array) -> tuple[Array, Array]: ...


def _nearest_index(query: Array, points: Array, cost_fn=squared_euclidean) -> Array:
    """argmin_l cost(query_i, points_l) for every query row, in chunks of queries so that
    memory stays O(chunk·N) (chunk·N ≈ 4M entries)."""
    query = jnp.asarray(query, dtype=jnp.float64)
    q, n = query.shape[0], points.shape[0]
    if q == 0:
        return jnp.zeros((0,), dtype=jnp.int32)
    chunk = max(1, min(q, (1 << 22) // max(n, 1)))
    pad = (-q) % chunk
    blocks = jnp.pad(query, ((0, pad), (0, 0))).reshape(-1, chunk, query.shape[1])
    idx = lax.map(lambda b: jnp.argmin(cost_fn(b, points), axis=1), blocks)
    return idx.reshape(-1)[:q]


def _min_offdiagonal_cost(points: Array, cost_fn, block: int = 256) -> float:
    """min_{k≠l} C_kl, by blocks of rows (O(N·block) memory)."""
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


# --------------------------------------------------------------------------- dense


class _DenseLSE(eqx.Module):
    neg_cost_over_eps: Array

    def __call__(self, u: Array) -> Array:
        return logsumexp(self.neg_cost_over_eps + u[None, :], axis=1)


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

    def lse_operator(self, eps) -> _DenseLSE:
        """u ↦ log K e^u with −C/ε precomputed."""
        _check_eps(eps)
        return _DenseLSE(-self.cost / eps)

    def apply_kernel(self, v: Array, eps) -> Array:
        """K v, K = exp(−C/ε)."""
        return jnp.exp(-self.cost / eps) @ v

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Nearest support point in squared Euclidean distance; a point set has no box,
        so every θ counts as inside."""
        idx = _nearest_index(theta, self.points)
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
    """Apply ``per_block(C_block)`` to each (block, N) slab of the cost, diagonal set to
    exactly 0 (the ‖x‖² + ‖z‖² − 2xᵀz formula leaves ~1e-16‖x‖² there, which ε⁻¹
    would amplify), and stack the rows back to (N, ...)."""
    cost_fn = _point_cost(cost_kind)
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
            _min_offdiagonal_cost(points, _point_cost(cost_kind), self.block_size)
        )

    @property
    def size(self) -> int:
        return self.points.shape[0]

    def cost_matrix(self) -> Array:
        return _chunked_rows(self.points, self.block_size, self.cost_kind, lambda c: c)

    def lse_operator(self, eps) -> _ChunkedLSE:
        _check_eps(eps)
        return _ChunkedLSE(
            self.points, jnp.asarray(eps, jnp.float64), self.block_size, self.cost_kind
        )

    def apply_lse(self, u: Array, eps) -> Array:
        return self.lse_operator(eps)(u)

    def apply_kernel(self, v: Array, eps) -> Array:
        return _chunked_rows(
            self.points, self.block_size, self.cost_kind, lambda c: jnp.exp(-c / eps) @ v
        )

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Nearest support point in this geometry's cost; every θ counts as inside."""
        idx = _nearest_index(theta, self.points, _point_cost(self.cost_kind))
        return idx, jnp.ones(idx.shape, dtype=bool)


# --------------------------------------------------------------------------- factors


class Factor(eqx.Module):
    """One factor of a product grid: n_k points (n_k, d_k) and their n_k×n_k cost.

    ``kind``: "line" (sorted 1-D values, squared difference, cells are the Voronoi
    intervals, the outer ones extended by half a spacing), "angle" (uniform angles in
    [0, 2π), periodic squared distance, no boundary), "sphere" (unit vectors, squared
    geodesic, no boundary), "points" (any point set, squared Euclidean, no boundary).
    """

    points: Array
    cost: Array
    kind: str = eqx.field(static=True)

    @property
    def size(self) -> int:
        return self.points.shape[0]

    @property
    def spacing(self) -> float:
        if self.size < 2:
            return math.inf
        off = np.asarray(self.cost) + np.diag(np.full(self.size, np.inf))
        return float(np.sqrt(np.min(off)))

    def cell_edges(self) -> Array:
        """Edges (n+1,) of the 1-D cells of a "line" factor (jit-compatible)."""
        if self.kind != "line":
            raise ValueError(f"cell edges are defined for line factors, not {self.kind!r}")
        x = self.points[:, 0]
        first, last = x[:1] - (x[1:2] - x[:1]) / 2, x[-1:] + (x[-1:] - x[-2:-1]) / 2
        return jnp.concatenate([first, 0.5 * (x[1:] + x[:-1]), last])

    def locate(self, coords: Array) -> tuple[Array, Array]:
        """Cell index (q,) of coordinates (q, d_k) and whether they are inside the factor's
        range (only a "line" has a boundary)."""
        if self.kind == "line":
            x = coords[:, 0]
            edges = self.cell_edges()
            idx = jnp.clip(jnp.searchsorted(edges[1:-1], x, side="right"), 0, self.size - 1)
            return idx, (x >= edges[0]) & (x <= edges[-1])
        if self.kind == "angle":
            # angle factors are uniform φ_i = 2πi/n (angle_factor): nearest by rounding
            n = self.size
            idx = jnp.mod(jnp.round(coords[:, 0] * n / (2.0 * jnp.pi)), n).astype(jnp.int32)
        elif self.kind == "sphere":
            unit = coords / jnp.linalg.norm(coords, axis=1, keepdims=True)
            idx = _nearest_index(unit, self.points)  # chord order = geodesic order
        else:
            idx = _nearest_index(coords, self.points)
        return idx, jnp.ones(idx.shape, dtype=bool)


def line_factor(values, weight: float = 1.0) -> Factor:
    """1-D factor at sorted ``values`` with cost weight·(x − x')²."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < 2:
        raise ValueError(f"a line factor needs at least 2 points, got {x.size}")
    if not np.all(np.diff(x) > 0):
        raise ValueError("line factor values must be strictly increasing")
    if not np.isfinite(x).all():
        raise ValueError("line factor values must be finite")
    pts = x[:, None]
    cost = weight * (pts - pts.T) ** 2
    return Factor(points=jnp.asarray(pts), cost=jnp.asarray(cost), kind="line")


def angle_factor(n: int) -> Factor:
    """n uniform angles φ_i = 2πi/n on the circle with periodic (geodesic) squared cost."""
    if n < 3:
        raise ValueError(f"an angle factor needs at least 3 angles, got {n}")
    phi = (2.0 * np.pi * np.arange(n) / n)[:, None]
    return Factor(
        points=jnp.asarray(phi), cost=jnp.asarray(squared_periodic(phi, phi)), kind="angle"
    )


def sphere_factor(directions) -> Factor:
    """Unit vectors (n, d) with the squared geodesic cost (diagonal exactly 0)."""
    s = np.asarray(directions, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] < 2:
        raise ValueError(f"directions must have shape (n ≥ 2, d), got {s.shape}")
    if not np.all(np.abs(np.linalg.norm(s, axis=1) - 1.0) < 1e-10):
        raise ValueError("sphere factor directions must be unit vectors")
    cost = squared_geodesic_sphere(s, s) * (1.0 - np.eye(s.shape[0]))
    return Factor(points=jnp.asarray(s), cost=jnp.asarray(cost), kind="sphere")


# --------------------------------------------------------------------------- embeddings
# Maps from a geometry's own coordinates to Θ. Frozen dataclasses: hashable by value,
# so they can be static fields of jitted pytrees. ``inverse`` returns None when the map
# cannot be inverted coordinate-wise (then locate falls back to a nearest-point search).


@dataclass(frozen=True)
class Identity:
    def __call__(self, coords: Array) -> Array:
        return coords

    def inverse(self, theta: Array) -> Array:
        return theta


@dataclass(frozen=True)
class CircleEmbed:
    """(φ, rest) ↦ (cos φ, sin φ, rest): the angle factor of ``sphere`` in d = 2."""

    def __call__(self, coords: Array) -> Array:
        xp, phi = _xp(coords), coords[:, :1]
        return xp.concatenate([xp.cos(phi), xp.sin(phi), coords[:, 1:]], axis=1)

    def inverse(self, theta: Array) -> Array:
        xp = _xp(theta)
        phi = xp.mod(xp.arctan2(theta[:, 1], theta[:, 0]), 2.0 * np.pi)
        return xp.concatenate([phi[:, None], theta[:, 2:]], axis=1)


@dataclass(frozen=True)
class ScaledEmbed:
    """(c, s) ↦ s·base(c) (``which="all"``) or base(c) with its last coordinate times s
    (``which="last"``, e.g. β of ``sphere``)."""

    base: object
    which: str = "all"

    def __call__(self, coords: Array) -> Array:
        theta, s = self.base(coords[:, :-1]), coords[:, -1:]
        if self.which == "all":
            return s * theta
        return _xp(theta).concatenate([theta[:, :-1], s * theta[:, -1:]], axis=1)

    def inverse(self, theta: Array):
        return None


@dataclass(frozen=True)
class AppendConstant:
    """w ↦ (w, value): the components α = ±1 of a ``signed`` grid."""

    value: float

    def __call__(self, coords: Array) -> Array:
        xp = _xp(coords)
        return xp.concatenate([coords, xp.full((coords.shape[0], 1), self.value)], axis=1)

    def inverse(self, theta: Array) -> Array:
        return theta[:, :-1]


@dataclass(frozen=True)
class ZeroPad:
    """x ↦ (0_before, x, 0_after): the components (u, 0) and (0, v) of a ``pm`` grid."""

    before: int
    after: int

    def __call__(self, coords: Array) -> Array:
        return _xp(coords).pad(coords, ((0, 0), (self.before, self.after)))

    def inverse(self, theta: Array) -> Array:
        return theta[:, self.before : theta.shape[1] - self.after]


# --------------------------------------------------------------------------- product


def _axis_lse_exact(U: Array, cost_over_eps: Array, axis: int) -> Array:
    """out[.., i, ..] = logsumexp_j(−C_ij/ε + U[.., j, ..]) along ``axis``, one output
    index i at a time (lax.map) so memory stays O(N)."""
    Um = jnp.moveaxis(U, axis, 0)
    shape = (-1,) + (1,) * (Um.ndim - 1)
    out = lax.map(lambda c_row: logsumexp(-c_row.reshape(shape) + Um, axis=0), cost_over_eps)
    return jnp.moveaxis(out, 0, axis)


def _axis_lse(U: Array, kernel: Array, cost_over_eps: Array, axis: int) -> Array:
    """Stabilized kernel-mode log-sum-exp along one axis of the grid tensor U.

    Per line of the axis: m = max u, out = m + log(K exp(u − m)) (one BLAS contraction).
    exp(u − m) ≤ 1 and K ≤ 1 so nothing overflows; if any line sum underflows (below
    ``UNDERFLOW``, only for tiny ε or very spread u) the whole axis is recomputed by the
    exact broadcasted log-sum-exp under ``lax.cond`` (under vmap both branches run).
    """
    m = jnp.max(U, axis=axis, keepdims=True)
    finite_line = jnp.isfinite(m)
    m_safe = jnp.where(finite_line, m, 0.0)  # an all −∞ line stays −∞, no NaN
    V = jnp.exp(U - m_safe)
    W = jnp.moveaxis(jnp.tensordot(kernel, V, axes=([1], [axis])), 0, axis)
    bad = ((W < UNDERFLOW) | ~jnp.isfinite(W)) & finite_line
    fast = jnp.log(W) + m_safe
    return lax.cond(jnp.any(bad), lambda: _axis_lse_exact(U, cost_over_eps, axis), lambda: fast)


@functools.partial(jax.jit, static_argnums=3)
def _product_lse(kernels: tuple, costs_over_eps: tuple, u: Array, shape: tuple) -> Array:
    # jitted so that eager calls compile once per grid shape (inlined under an outer jit)
    U = u.reshape(shape)
    for axis, (k, c) in enumerate(zip(kernels, costs_over_eps, strict=True)):
        U = _axis_lse(U, k, c, axis)
    return U.reshape(-1)


class _ProductLSE(eqx.Module):
    kernels: tuple
    costs_over_eps: tuple
    shape: tuple = eqx.field(static=True)

    def __call__(self, u: Array) -> Array:
        return _product_lse(self.kernels, self.costs_over_eps, u, self.shape)


class ProductGeometry(eqx.Module):
    """Cartesian product of factors with additive cost C = Σ_k C_k (the separable engine).

    Point k ↔ multi-index (i_1, .., i_K) in row-major order; its coordinates are the
    concatenated factor points, mapped to Θ by ``embed`` (Identity for boxes,
    :class:`CircleEmbed` for the angle of ``sphere`` in d = 2, ...). K = ⊗ K_k, so
    apply_lse contracts one axis at a time: O(N·Σ n_k) time, O(N + Σ n_k²) memory.
    """

    factors: tuple
    points: Array
    embed: object = eqx.field(static=True)
    shape: tuple = eqx.field(static=True)
    spacing: float = eqx.field(static=True)

    def __init__(self, factors, embed=None):
        factors = tuple(factors)
        if not factors:
            raise ValueError("a product geometry needs at least one factor")
        self.factors = factors
        self.embed = Identity() if embed is None else embed
        self.shape = tuple(int(f.size) for f in factors)
        grids = np.indices(self.shape).reshape(len(factors), -1)
        coords = np.concatenate(
            [np.asarray(f.points)[g] for f, g in zip(factors, grids, strict=True)], axis=1
        )
        self.points = jnp.asarray(self.embed(coords))
        self.spacing = min(f.spacing for f in factors)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def kernel_factors(self, eps) -> tuple[Array, ...]:
        """The factor kernels K_k = exp(−C_k/ε), each (n_k, n_k)."""
        return tuple(jnp.exp(-f.cost / eps) for f in self.factors)

    def lse_operator(self, eps) -> _ProductLSE:
        """u ↦ log K e^u with the factor kernels exp(−C_k/ε) precomputed (a pytree)."""
        _check_eps(eps)
        return _ProductLSE(
            kernels=self.kernel_factors(eps),
            costs_over_eps=tuple(f.cost / eps for f in self.factors),
            shape=self.shape,
        )

    def apply_lse(self, u: Array, eps) -> Array:
        return self.lse_operator(eps)(u)

    def apply_kernel(self, v: Array, eps) -> Array:
        """K v = (⊗ K_k) v, one tensordot per axis."""
        V = v.reshape(self.shape)
        for axis, k in enumerate(self.kernel_factors(eps)):
            V = jnp.moveaxis(jnp.tensordot(k, V, axes=([1], [axis])), 0, axis)
        return V.reshape(-1)

    def cost_matrix(self) -> Array:
        """Dense C = Σ_k C_k[i_k, j_k] (N×N; tests and small grids only)."""
        grids = np.indices(self.shape).reshape(len(self.factors), -1)
        return jnp.asarray(
            sum(
                np.asarray(f.cost)[g[:, None], g[None, :]]
                for f, g in zip(self.factors, grids, strict=True)
            )
        )

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Cell of each θ (q, D): per-factor cells of the inverse-embedded coordinates
        (nearest point in Θ if the embedding has no coordinate-wise inverse)."""
        theta = jnp.asarray(theta, dtype=jnp.float64)
        coords = self.embed.inverse(theta)
        if coords is None:
            idx = _nearest_index(theta, self.points)
            return idx, jnp.ones(idx.shape, dtype=bool)
        dims = np.cumsum([f.points.shape[1] for f in self.factors])[:-1]
        parts = jnp.split(coords, dims, axis=1)
        located = [f.locate(c) for f, c in zip(self.factors, parts, strict=True)]
        idx = jnp.ravel_multi_index(tuple(i for i, _ in located), self.shape, mode="clip")
        inside = jnp.all(jnp.stack([ok for _, ok in located]), axis=0)
        return idx, inside


# --------------------------------------------------------------------------- components


class _ComponentLSE(eqx.Module):
    ops: tuple
    sizes: tuple = eqx.field(static=True)

    def __call__(self, u: Array) -> Array:
        parts = jnp.split(u, np.cumsum(self.sizes)[:-1])
        return jnp.concatenate([op(p) for op, p in zip(self.ops, parts, strict=True)])


class ComponentGeometry(eqx.Module):
    """Disjoint union of blocks with cost +∞ between blocks (block-diagonal kernel).

    Block b has its own geometry (points in its own coordinates) and a static embedding
    ``embeds[b]`` into Θ; ``points`` stacks the embedded blocks in order. No mass can
    move between blocks: this is how the nonnegative components ν⁺, ν⁻ of ``signed``
    and the (u, 0) / (0, v) halves of ``pm`` are kept apart.
    """

    blocks: tuple
    points: Array
    embeds: tuple = eqx.field(static=True)
    sizes: tuple = eqx.field(static=True)
    spacing: float = eqx.field(static=True)

    def __init__(self, blocks, embeds):
        blocks, embeds = tuple(blocks), tuple(embeds)
        if len(blocks) < 1 or len(blocks) != len(embeds):
            raise ValueError(
                f"need one embedding per block, got {len(blocks)} blocks and "
                f"{len(embeds)} embeddings"
            )
        self.blocks, self.embeds = blocks, embeds
        self.sizes = tuple(int(b.size) for b in blocks)
        pts = [e(np.asarray(b.points)) for b, e in zip(blocks, embeds, strict=True)]
        if len({p.shape[1] for p in pts}) != 1:
            raise ValueError(f"embedded blocks have different dimensions {[p.shape for p in pts]}")
        self.points = jnp.asarray(np.concatenate(pts, axis=0))
        self.spacing = min(b.spacing for b in blocks)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes)[:-1]]))

    def lse_operator(self, eps) -> _ComponentLSE:
        return _ComponentLSE(tuple(b.lse_operator(eps) for b in self.blocks), self.sizes)

    def apply_lse(self, u: Array, eps) -> Array:
        return self.lse_operator(eps)(u)

    def apply_kernel(self, v: Array, eps) -> Array:
        parts = jnp.split(v, np.cumsum(self.sizes)[:-1])
        return jnp.concatenate(
            [b.apply_kernel(p, eps) for b, p in zip(self.blocks, parts, strict=True)]
        )

    def cost_matrix(self) -> Array:
        """Block-diagonal dense cost, +∞ off the diagonal blocks."""
        C = np.full((self.size, self.size), np.inf)
        for b, o, n in zip(self.blocks, self.offsets, self.sizes, strict=True):
            C[o : o + n, o : o + n] = np.asarray(b.cost_matrix())
        return jnp.asarray(C)

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Each θ goes to the block whose embedded image is closest (e.g. the sign of α
        for ``signed``, the nonzero half for ``pm``), then to its cell in that block."""
        theta = jnp.asarray(theta, dtype=jnp.float64)
        dists, cells = [], []
        for b, e, o in zip(self.blocks, self.embeds, self.offsets, strict=True):
            c = e.inverse(theta)
            dists.append(jnp.sum((theta - e(c)) ** 2, axis=1))
            i, ok = b.locate(c)
            cells.append((i + o, ok))
        which = jnp.argmin(jnp.stack(dists), axis=0)[None, :]
        idx = jnp.take_along_axis(jnp.stack([i for i, _ in cells]), which, axis=0)[0]
        inside = jnp.take_along_axis(jnp.stack([ok for _, ok in cells]), which, axis=0)[0]
        return idx, inside


# --------------------------------------------------------------------------- constructors


def _check_ranges(ranges, sizes, what: str = "ranges") -> list[tuple[float, float, int]]:
    ranges, sizes = list(ranges), list(sizes)
    if len(ranges) == 0 or len(ranges) != len(sizes):
        raise ValueError(
            f"need one size per range, got {len(ranges)} {what} and {len(sizes)} sizes"
        )
    out = []
    for k, (r, n) in enumerate(zip(ranges, sizes, strict=True)):
        lo, hi = (float(v) for v in r)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"{what}[{k}] = {r!r} must be finite with lo < hi")
        if int(n) != n or n < 2:
            raise ValueError(f"sizes[{k}] = {n!r} must be an integer ≥ 2")
        out.append((lo, hi, int(n)))
    return out


def cartesian_grid(ranges, sizes) -> ProductGeometry:
    """Box grid in ℝ^D: axis k has ``sizes[k]`` points linspace(lo_k, hi_k) (endpoints
    included); cost ‖θ − θ'‖². The cells are the Voronoi boxes, so the grid covers
    Π_k [lo_k − h_k/2, hi_k + h_k/2] with h_k = (hi_k − lo_k)/(n_k − 1)."""
    axes = _check_ranges(ranges, sizes)
    return ProductGeometry([line_factor(np.linspace(lo, hi, n)) for lo, hi, n in axes])


def point_set(
    points, *, cost: str = "sqeuclidean", dense_max: int = DENSE_MAX, block_size: int = 256
):
    """Arbitrary points (N, D) with cost ``cost`` ("sqeuclidean", "sphere", "sphere_line"):
    a :class:`DenseGeometry` for N ≤ dense_max, else a :class:`ChunkedGeometry`."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError(f"points must have shape (N ≥ 2, D), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf")
    cost_fn = _point_cost(cost)
    if points.shape[0] <= dense_max:
        C = cost_fn(points, points)
        np.fill_diagonal(C, 0.0)
        return DenseGeometry(points=jnp.asarray(points), cost=jnp.asarray(C))
    return ChunkedGeometry(points, block_size=block_size, cost_kind=cost)


def fibonacci_sphere(n: int) -> Array:
    """n quasi-uniform unit vectors on S² (Fibonacci lattice), shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return jnp.asarray(np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1))


def quasi_uniform_sphere(d: int, n: int, *, seed: int = 0, steps: int = 50) -> Array:
    """n unit vectors on S^{d−1}: d = 3 Fibonacci; otherwise normalized Gaussian points
    spread by ``steps`` projected repulsion steps on the Riesz (d−1)-energy, each moving a
    point by 1/4 of its nearest-neighbour distance along the tangential force."""
    if d < 2 or n < 2:
        raise ValueError(f"need d ≥ 2 and n ≥ 2, got d = {d}, n = {n}")
    if d == 3:
        return fibonacci_sphere(n)
    if d == 2:
        phi = 2.0 * np.pi * np.arange(n) / n
        return jnp.asarray(np.stack([np.cos(phi), np.sin(phi)], axis=1))
    x = np.random.default_rng(seed).standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = d - 1
    for _ in range(steps):
        diff = x[:, None, :] - x[None, :, :]
        dist = np.linalg.norm(diff, axis=2)
        np.fill_diagonal(dist, np.inf)
        force = np.sum(diff / dist[:, :, None] ** (s + 2), axis=1)
        force -= np.sum(force * x, axis=1, keepdims=True) * x  # tangential part
        fnorm = np.linalg.norm(force, axis=1, keepdims=True)
        step = 0.25 * np.min(dist, axis=1, keepdims=True)
        x = x + step * force / np.where(fnorm > 0, fnorm, 1.0)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return jnp.asarray(x)


def sphere_line_grid(
    d: int, n_dirs: int, beta_range, n_beta: int, *, seed: int = 0, repulsion_steps: int = 50
) -> ProductGeometry:
    """Grid on S^{d−1} × ℝ for ``sphere`` (θ = (s, β)), separable in (direction, β).

    d = 2: ``n_dirs`` uniform angles φ with periodic cost min(|Δφ|, 2π − |Δφ|)², points
    s = (cos φ, sin φ). d > 2: ``n_dirs`` quasi-uniform directions
    (:func:`quasi_uniform_sphere`) with squared geodesic cost arccos(sᵀs')² as a dense
    factor (keep n_dirs ≲ 4000). β: ``n_beta`` points linspace(beta_range).
    Total cost: geodesic² + (β − β')².
    """
    if int(d) != d or d < 2:
        raise ValueError(f"sphere grids need input dimension d ≥ 2 (bias included), got {d}")
    ((lo, hi, nb),) = _check_ranges([beta_range], [n_beta], "beta_range")
    beta = line_factor(np.linspace(lo, hi, nb))
    if d == 2:
        return ProductGeometry([angle_factor(int(n_dirs)), beta], CircleEmbed())
    dirs = quasi_uniform_sphere(int(d), int(n_dirs), seed=seed, steps=repulsion_steps)
    return ProductGeometry([sphere_factor(dirs), beta])


def signed_grid(w_ranges, sizes) -> ComponentGeometry:
    """``signed`` grid: a box over w ∈ ℝ^d, twice: points (w, +1) and (w, −1) in
    Θ = (w, α) (the nonnegative components ν⁺, ν⁻), no transport between them."""
    box = cartesian_grid(w_ranges, sizes)
    return ComponentGeometry([box, box], [AppendConstant(1.0), AppendConstant(-1.0)])


def pm_grid(ranges, sizes) -> ComponentGeometry:
    """``pm`` grid: a box over ℝ^d, twice: points (u, 0) and (0, v) in Θ = (u, v)
    (positive and negative neurons), no transport between them."""
    box = cartesian_grid(ranges, sizes)
    d = len(list(ranges))
    return ComponentGeometry([box, box], [ZeroPad(0, d), ZeroPad(d, 0)])


def _cost_kind_of(geom) -> str:
    if isinstance(geom, ProductGeometry) and any(
        f.kind in ("angle", "sphere") for f in geom.factors
    ):
        return "sphere_line"
    if isinstance(geom, ChunkedGeometry):
        return geom.cost_kind
    return "sqeuclidean"


def multiscale(geom, scales, *, which: str = "all", separable: bool = False):
    r"""Copies of a grid's points at several scales (seed §2.3.1: "duplicate each neuron,
    make one with a small scale and one with a very big scale").

    Copy a holds θ scaled by s_a: all coordinates (``which="all"``: (w, α) ↦ s(w, α) for
    ``neuron``, w ↦ s w inside each block of ``signed`` / ``pm``) or only the last one
    (``which="last"``: β ↦ s β for ``sphere``). A :class:`ComponentGeometry` is scaled
    block by block (its components stay apart).

    Cost, ``separable=False`` (default): the exact squared distance in Θ between all
    copies (geodesic on the sphere factor), as a point set (:func:`point_set`: dense, or
    chunked above 4000 points). The exact cost ‖s_aθ_k − s_bθ_l‖² is not a sum of a
    base term and a scale term, so it is not separable.

    Cost, ``separable=True`` (``geom`` a :class:`ProductGeometry`): a surrogate,
    C((k, a), (l, b)) = C_base(k, l) + ρ²(s_a − s_b)², ρ² = mean ‖scaled part of θ_k‖²:
    product of the base grid with a 1-D scale axis, O(N) memory. It is exact between
    copies of one point when ‖θ_k‖ = ρ and within the copy s = 1, but it underprices
    moves inside copy a by a factor s_a² (use it for speed, knowing this).
    """
    s = np.asarray(scales, dtype=np.float64).reshape(-1)
    if s.size < 1 or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"scales must be positive and finite, got {scales!r}")
    if len(np.unique(s)) != s.size:
        raise ValueError(f"scales must be distinct, got {scales!r}")
    if which not in ("all", "last"):
        raise ValueError(f"which must be 'all' or 'last', got {which!r}")
    if isinstance(geom, ComponentGeometry):
        blocks = [multiscale(b, s, which=which, separable=separable) for b in geom.blocks]
        return ComponentGeometry(blocks, geom.embeds)
    if separable:
        if not isinstance(geom, ProductGeometry):
            raise ValueError("separable multiscale needs a ProductGeometry base")
        pts = np.asarray(geom.points if which == "all" else geom.points[:, -1:])
        rho2 = float(np.mean(np.sum(pts * pts, axis=1)))
        order = np.argsort(s)
        scale = line_factor(s[order], weight=rho2)
        return ProductGeometry([*geom.factors, scale], ScaledEmbed(geom.embed, which))
    P = np.asarray(geom.points)
    scale_cols = np.ones(P.shape[1]) if which == "all" else np.eye(P.shape[1])[-1]
    copies = [P * np.where(scale_cols > 0, c, 1.0) for c in s]
    return point_set(np.concatenate(copies, axis=0), cost=_cost_kind_of(geom))


def grid_for(
    param,
    d: int,
    *,
    size: int = 16,
    radius: float = 3.0,
    n_dirs: int | None = None,
    n_beta: int | None = None,
    scales=None,
    separable_scales: bool = False,
):
    """A default grid for parametrization ``param`` and input dimension ``d`` (bias
    included), every axis of every box over [−radius, radius] with ``size`` points:

    - neuron: box over (w, α) ∈ ℝ^{d+1};
    - signed: (w, ±1) with a box over w ∈ ℝ^d;
    - pm: (u, 0) and (0, v) with boxes over ℝ^d;
    - sphere: ``n_dirs`` directions (default ``size``) × ``n_beta`` β values in
      [−radius, radius] (default ``size``).

    ``scales``: wrap in :func:`multiscale` (β only for sphere).
    """
    param = _params.get(param)
    if int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    r = [(-radius, radius)]
    if param.name == "neuron":
        geom = cartesian_grid(r * (d + 1), [size] * (d + 1))
    elif param.name == "signed":
        geom = signed_grid(r * d, [size] * d)
    elif param.name == "pm":
        geom = pm_grid(r * d, [size] * d)
    elif param.name == "sphere":
        geom = sphere_line_grid(d, n_dirs or size, (-radius, radius), n_beta or size)
    else:
        raise ValueError(f"no grid for parametrization {param.name!r}")
    if scales is not None:
        which = "last" if param.name == "sphere" else "all"
        geom = multiscale(geom, scales, which=which, separable=separable_scales)
    return geom


# --------------------------------------------------------------------------- discretize


def _input_dim(param, D: int) -> int:
    for d in (D - 1, D // 2):
        if d >= 1 and param.dim(d) == D:
            return d
    raise ValueError(
        f"grid points have dimension {D}, which no input dimension gives "
        f"for parametrization {param.name!r}"
    )


def _is_box(geom) -> bool:
    return (
        isinstance(geom, ProductGeometry)
        and isinstance(geom.embed, Identity)
        and all(f.kind == "line" for f in geom.factors)
    )



def boundary_mask(geom) -> np.ndarray:
    """Points on the boundary of the grid's box, (N,) bool: the first or last point of any
    ``line`` factor of a :class:`ProductGeometry` (per block for a
    :class:`ComponentGeometry`). Angles and sphere directions have no boundary, nor do
    point sets. Mass piling up there means the box clips the dynamics (the grid dictates
    the neurons' scale, research note §2.3.1)."""
    if isinstance(geom, ComponentGeometry):
        return np.concatenate([boundary_mask(b) for b in geom.blocks])
    mask = np.zeros(geom.size, dtype=bool)
    if isinstance(geom, ProductGeometry):
        index = np.indices(geom.shape).reshape(len(geom.factors), -1)
        for f, i in zip(geom.factors, index, strict=True):
            if f.kind == "line":
                mask |= (i == 0) | (i == f.size - 1)
    return mask

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
    param = _params.get(param)
    if method not in ("auto", "cells", "histogram"):
        raise ValueError(f"method must be 'auto', 'cells' or 'histogram', got {method!r}")
    d = _input_dim(param, geom.points.shape[1])
    cells_ok = param.name == "neuron" and _is_box(geom) and hasattr(law, "log_density_classic")
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


def _cell_masses(law, geom: ProductGeometry) -> tuple[Array, float]:
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
    if param.name == "signed":
        # unit |α| on the grid: the neuron's |α| becomes mass at (w, sign α)
        weights = jnp.abs(alpha)
        theta = jnp.concatenate([W, jnp.sign(alpha)[:, None]], axis=1)
    else:
        weights = jnp.ones_like(alpha)
        theta = param.project(param.from_classic(W, alpha))
    hist, kept = _weighted_histogram(geom, theta, weights)
    total, kept = float(jnp.sum(weights)), float(kept)
    if not (total > 0 and kept > 0):
        return jnp.zeros(geom.size), 0.0
    mass = total / weights.shape[0] if param.name == "signed" else 1.0
    return hist / kept * mass, kept / total


@eqx.filter_jit
def _weighted_histogram(geom, theta: Array, weights: Array) -> tuple[Array, Array]:
    """Σ of the weights of the θ inside each cell (N,), and the total weight inside."""
    idx, inside = geom.locate(theta)
    w_in = jnp.where(inside, weights, 0.0)
    return jnp.zeros(geom.size).at[idx].add(w_in), jnp.sum(w_in)
