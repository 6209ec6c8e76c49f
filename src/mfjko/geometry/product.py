r"""Separable product grids: factors with additive cost C = Σ_k C_k, so K = ⊗_k K_k.

One kernel application contracts one axis at a time: O(N·Σ_k n_k) time, O(N + Σ_k n_k²)
memory (never an N×N array). Factors: ``line`` (sorted values), ``angle`` (uniform angles,
periodic cost), ``sphere`` (unit vectors, geodesic cost). Constructors: Cartesian boxes
(:func:`cartesian_grid`) and S^{d−1} × ℝ for ``sphere`` (:func:`sphere_line_grid`).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap
from jax.scipy.special import logsumexp

from mfjko.geometry.costs import (
    check_eps,
    nearest_index,
    squared_geodesic_sphere,
    squared_periodic,
)
from mfjko.geometry.embeddings import CircleEmbed, Identity
from mfjko.geometry.sphere import sphere_directions

Array = jax.Array

__all__ = [
    "Factor",
    "line_factor",
    "angle_factor",
    "sphere_factor",
    "ProductGeometry",
    "cartesian_grid",
    "sphere_line_grid",
    "check_ranges",
    "UNDERFLOW",
]

#: A kernel-mode line sum below this (or non-finite) sends that axis to the exact
#: log-sum-exp: terms lost to underflow (< 1e-308) are then < 1e-28 relative to the sum.
UNDERFLOW = 1e-280
#: inputs per stabilizer group of the grouped kernel mode (:func:`_axis_lse_grouped`)
GROUP = 16
#: axes shorter than this skip the grouped stage (decided when tracing): there the exact
#: log-sum-exp is cheap and a smaller program compiles faster
GROUPED_MIN = 48
#: what underflow may lose in a group is harmless below e^{−GROUP_LOSS} of the sum (4e-18
#: relative, under float64's rounding of 1.1e-16)
GROUP_LOSS = 40.0
# log of the largest absolute error underflow leaves in a group's W_ig: 2·GROUP terms and
# kernel entries, each below the smallest normal float64 (2.2e-308, rounded up)
_LOG_LOST = math.log(2 * GROUP * 2.3e-308)

class Factor(eqx.Module):
    """One factor of a product grid: n_k points (n_k, d_k) and their n_k×n_k cost.

    ``kind``: "line" (sorted 1-D values, squared difference, cells are the Voronoi
    intervals, the outer ones extended by half a spacing), "scale" (the same, for the scale
    axis of a multi-scale grid: no spatial boundary), "angle" (uniform angles in
    [0, 2π), periodic squared distance, no boundary), "sphere" (unit vectors, squared
    geodesic, no boundary), "points" (any point set, squared Euclidean, no boundary).
    """

    points: Array
    cost: Array
    kind: str = eqx.field(static=True)
    weight: float = eqx.field(static=True, default=1.0)

    @property
    def size(self) -> int:
        """Number n_k of points of the factor."""
        return self.points.shape[0]

    @property
    def spacing(self) -> float:
        """√ of the smallest off-diagonal cost (inf for one point): the factor's δ."""
        if self.size < 2:
            return math.inf
        off = np.asarray(self.cost) + np.diag(np.full(self.size, np.inf))
        return float(np.sqrt(np.min(off)))

    def cell_edges(self) -> Array:
        """Edges (n+1,) of the 1-D cells of a "line" factor (jit-compatible)."""
        if self.kind not in ("line", "scale"):
            raise ValueError(f"cell edges are defined for line factors, not {self.kind!r}")
        x = self.points[:, 0]
        first, last = x[:1] - (x[1:2] - x[:1]) / 2, x[-1:] + (x[-1:] - x[-2:-1]) / 2
        return jnp.concatenate([first, 0.5 * (x[1:] + x[:-1]), last])

    def locate(self, coords: Array) -> tuple[Array, Array]:
        """Cell index (q,) of coordinates (q, d_k), and whether each is inside the range.

        Only a "line" has a boundary (cells extend half a spacing past the end points);
        other kinds report every coordinate as inside.
        """
        if self.kind in ("line", "scale"):
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
            idx = nearest_index(unit, self.points)  # chord order = geodesic order
        else:
            idx = nearest_index(coords, self.points)
        return idx, jnp.ones(idx.shape, dtype=bool)


def line_factor(values, weight: float = 1.0, kind: str = "line") -> Factor:
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
    return Factor(points=jnp.asarray(pts), cost=jnp.asarray(cost), kind=kind,
                  weight=float(weight))


def angle_factor(n: int) -> Factor:
    """N uniform angles φ_i = 2πi/n on the circle with periodic (geodesic) squared cost."""
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


def _axis_lse_exact(U: Array, cost_over_eps: Array, axis: int) -> Array:
    """out[.., i, ..] = logsumexp_j(−C_ij/ε + U[.., j, ..]) along ``axis``.

    One output index i at a time (lax.map), so memory stays O(N).
    """
    Um = jnp.moveaxis(U, axis, 0)
    shape = (-1,) + (1,) * (Um.ndim - 1)
    out = lax.map(lambda c_row: logsumexp(-c_row.reshape(shape) + Um, axis=0), cost_over_eps)
    return jnp.moveaxis(out, 0, axis)


def _axis_lse_grouped(U: Array, kernel: Array, cost_over_eps: Array, axis: int):
    """Kernel-mode log-sum-exp along ``axis`` with one stabilizer per group of inputs.

    The axis's inputs j are cut into groups g of :data:`GROUP` consecutive indices; per
    line, m_g = max_{j∈g} u_j and W_ig = Σ_{j∈g} K_ij e^{u_j − m_g} (one contraction, the
    flops of the plain kernel mode), out_i = log Σ_g e^{m_g} W_ig. Row i's own group holds
    a j within GROUP − 1 cells of i, so its W_ig underflows only when ε is below a cell²
    over ~(GROUP − 1)²/700. Terms below the smallest normal number are lost in W_ig (and
    kernel entries underflow), an absolute error of at most 2·GROUP·2.3e-308 in W_ig,
    so e^{m_g}·min(2·GROUP·2.3e-308, GROUP·e^{−min_{j∈g} C_ij/ε}) in the sum: harmless
    when below e^{−GROUP_LOSS} of out_i for every group.

    Returns:
      (out, exact_needed): the log-sum-exp, and whether some underflowed group could
      matter (or a sum is not finite), in which case ``out`` must not be used.
    """
    n = kernel.shape[0]
    groups = -(-n // GROUP)
    pad = groups * GROUP - n
    Um = jnp.moveaxis(U, axis, 0)
    rest = Um.shape[1:]
    Ug = jnp.pad(Um.reshape(n, -1), ((0, pad), (0, 0)), constant_values=-jnp.inf)
    Ug = Ug.reshape(groups, GROUP, -1)
    m = jnp.max(Ug, axis=1)  # (G, R)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    V = jnp.exp(Ug - m_safe[:, None, :])
    Kg = jnp.pad(kernel, ((0, 0), (0, pad))).reshape(n, groups, GROUP).transpose(1, 0, 2)
    W = jnp.einsum("gib,gbr->gir", Kg, V)  # (G, n, R): one batched matmul
    out = logsumexp(jnp.log(W) + m_safe[:, None, :], axis=0)  # (n, R)
    Cg = jnp.pad(cost_over_eps, ((0, 0), (0, pad)), constant_values=jnp.inf)
    nearest = jnp.min(Cg.reshape(n, groups, GROUP), axis=2).T  # min_{j∈g} C_ij/ε, (G, n)
    log_error = jnp.minimum(math.log(GROUP) - nearest, _LOG_LOST)
    lost = m[:, None, :] + log_error[:, :, None] > out[None] - GROUP_LOSS
    exact_needed = jnp.any(lost) | ~jnp.all(jnp.isfinite(W))
    return jnp.moveaxis(out.reshape((n,) + rest), 0, axis), exact_needed


def _axis_lse(U: Array, kernel: Array, cost_over_eps: Array, axis: int) -> Array:
    """Stabilized kernel-mode log-sum-exp along one axis of the grid tensor U.

    Per line of the axis: m = max u, out = m + log(K exp(u − m)) (one BLAS contraction).
    exp(u − m) ≤ 1 and K ≤ 1 so nothing overflows. If any line sum underflows (below
    ``UNDERFLOW``: a row far, in units of √ε, from where its line's u is largest; on fine
    grids at ε ≈ δ² most lines have such rows) the axis is recomputed with one stabilizer
    per group of :data:`GROUP` inputs (:func:`_axis_lse_grouped`, the same flops and G =
    n/GROUP logs per point; axes of fewer than :data:`GROUPED_MIN` points skip it); only
    if that may have lost a term is the axis recomputed by the exact broadcasted
    log-sum-exp (n exps per point). Each step is a ``lax.cond``
    (under vmap both branches run).
    """
    m = jnp.max(U, axis=axis, keepdims=True)
    finite_line = jnp.isfinite(m)
    m_safe = jnp.where(finite_line, m, 0.0)  # an all −∞ line stays −∞, no NaN
    V = jnp.exp(U - m_safe)
    W = jnp.moveaxis(jnp.tensordot(kernel, V, axes=([1], [axis])), 0, axis)
    bad = ((W < UNDERFLOW) | ~jnp.isfinite(W)) & finite_line
    fast = jnp.log(W) + m_safe

    exact = lambda: _axis_lse_exact(U, cost_over_eps, axis)  # noqa: E731

    def grouped():
        out, exact_needed = _axis_lse_grouped(U, kernel, cost_over_eps, axis)
        return lax.cond(exact_needed, exact, lambda: out)

    slow = exact if kernel.shape[-1] < GROUPED_MIN else grouped
    return lax.cond(jnp.any(bad), slow, lambda: fast)


def _lse_tensor(kernels, costs_over_eps, U):
    for axis, (k, c) in enumerate(zip(kernels, costs_over_eps, strict=True)):
        U = _axis_lse(U, k, c, axis)
    return U


def _axis_lse_batch(U, kernel, cost_over_eps, axis: int, shared: bool):
    """:func:`_axis_lse` for a batch U (B, *shape) along grid axis ``axis``.

    The kernel is (n, n) when ``shared``, else (B, n, n). One lax.cond per stage (plain,
    grouped, exact) for the whole batch.
    """
    a = axis + 1
    m = jnp.max(U, axis=a, keepdims=True)
    finite_line = jnp.isfinite(m)
    m_safe = jnp.where(finite_line, m, 0.0)
    V = jnp.moveaxis(jnp.exp(U - m_safe), a, 1)
    W = jnp.einsum("ij,bj...->bi...", kernel, V) if shared else \
        jnp.einsum("bij,bj...->bi...", kernel, V)
    W = jnp.moveaxis(W, 1, a)
    bad = ((W < UNDERFLOW) | ~jnp.isfinite(W)) & finite_line
    fast = jnp.log(W) + m_safe
    if shared:
        exact = lambda: jax.vmap(lambda u: _axis_lse_exact(u, cost_over_eps, axis))(U)
        grouped_all = jax.vmap(lambda u: _axis_lse_grouped(u, kernel, cost_over_eps, axis))
    else:
        exact = lambda: jax.vmap(lambda u, c: _axis_lse_exact(u, c, axis))(U, cost_over_eps)
        grouped_all = lambda u: jax.vmap(  # noqa: E731
            lambda u, k, c: _axis_lse_grouped(u, k, c, axis))(u, kernel, cost_over_eps)

    def grouped():
        out, needed = grouped_all(U)
        return lax.cond(jnp.any(needed), exact, lambda: out)

    slow = exact if kernel.shape[-1] < GROUPED_MIN else grouped
    return lax.cond(jnp.any(bad), slow, lambda: fast)


@functools.cache
def _product_lse_fn(shape: tuple):
    """The jitted map u ↦ log K e^u on a product grid of ``shape``, with a batching rule.

    Under vmap the batch contracts each axis in one einsum and takes the exact path only if
    a member underflows (one lax.cond for the batch, where vmap's default would turn the
    cond into a select that runs both paths for every member).
    """

    @custom_vmap
    def lse(kernels, costs_over_eps, u):
        return _lse_tensor(kernels, costs_over_eps, u.reshape(shape)).reshape(-1)

    @lse.def_vmap
    def _rule(axis_size, in_batched, kernels, costs_over_eps, u):
        kb, cb, ub = in_batched
        U = (u if ub else jnp.broadcast_to(u, (axis_size,) + u.shape))
        U = U.reshape((axis_size,) + shape)
        for axis, (k, c, kbat, cbat) in enumerate(zip(kernels, costs_over_eps, kb, cb,
                                                      strict=True)):
            shared = not (kbat or cbat)
            if not shared:  # both per member
                k = k if kbat else jnp.broadcast_to(k, (axis_size,) + k.shape)
                c = c if cbat else jnp.broadcast_to(c, (axis_size,) + c.shape)
            U = _axis_lse_batch(U, k, c, axis, shared)
        return U.reshape(axis_size, -1), True

    return jax.jit(lse)


def _product_lse(kernels: tuple, costs_over_eps: tuple, u: Array, shape: tuple) -> Array:
    # jitted per grid shape, so eager calls compile once (inlined under an outer jit)
    return _product_lse_fn(shape)(kernels, costs_over_eps, u)


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
        """Number N = Π_k n_k of grid points."""
        return math.prod(self.shape)

    def theta_blocks(self) -> tuple[tuple[slice, float], ...] | None:
        """Each factor's coordinates in Θ and its typical spacing, for the pinning model.

        A line or angle factor's spacing is uniform; a sphere factor's is the median
        nearest-neighbour geodesic distance of its directions (a quasi-uniform set: its
        smallest distance, :attr:`spacing`, is not the step the kernel sees in most places).
        An angle factor under :class:`CircleEmbed` spans two coordinates of Θ (cos φ, sin φ).
        None for other embeddings, whose Θ coordinates mix factors.

        Returns:
          ((slice of Θ's coordinates, δ_k), ...) in factor order, or None.
        """
        circle = isinstance(self.embed, CircleEmbed)
        if not (circle or isinstance(self.embed, Identity)):
            return None
        blocks, start = [], 0
        for f in self.factors:
            width = int(f.points.shape[1]) + (1 if circle and f.kind == "angle" else 0)
            if f.kind in ("sphere", "points"):
                off = np.asarray(f.cost) + np.diag(np.full(f.size, np.inf))
                delta = float(np.median(np.sqrt(off.min(axis=1))))
            else:
                delta = f.spacing
            blocks.append((slice(start, start + width), delta))
            start += width
        return tuple(blocks)

    def kernel_factors(self, eps) -> tuple[Array, ...]:
        """The factor kernels K_k = exp(−C_k/ε), each (n_k, n_k)."""
        return tuple(jnp.exp(-f.cost / eps) for f in self.factors)

    def lse_operator(self, eps) -> _ProductLSE:
        """The map u ↦ log K e^u, (N,) → (N,), with the factor kernels exp(−C_k/ε) built once."""
        check_eps(eps)
        return _ProductLSE(
            kernels=self.kernel_factors(eps),
            costs_over_eps=tuple(f.cost / eps for f in self.factors),
            shape=self.shape,
        )

    def apply_lse(self, u: Array, eps) -> Array:
        """Log-domain kernel application u ↦ log K e^u, K = ⊗_k exp(−C_k/ε), (N,) → (N,)."""
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

    @property
    def cost_kind(self) -> str:
        """"sphere_line" when a factor is an angle or a sphere, else "sqeuclidean"."""
        if any(f.kind in ("angle", "sphere") for f in self.factors):
            return "sphere_line"
        return "sqeuclidean"

    @property
    def is_box(self) -> bool:
        """A Cartesian box in Θ: identity embedding, every factor a line of weight 1."""
        return isinstance(self.embed, Identity) and all(
            f.kind == "line" and f.weight == 1.0 for f in self.factors)

    @property
    def axes(self) -> tuple[np.ndarray, ...]:
        """The 1-D coordinates of each line factor (boxes), each (n_k,)."""
        return tuple(np.asarray(f.points)[:, 0] for f in self.factors)

    def ott_grid(self, eps: float):
        """This box as OTT-JAX's separable ``Grid`` at entropy ``eps``.

        Same squared Euclidean cost, same row-major point order. ValueError if not a box.
        """
        # OTT-JAX loaded on use (start-up cost: the geometry package does not need it)
        from ott.geometry import grid as ott_grid

        if not self.is_box:
            raise ValueError("only a Cartesian box (identity embedding, line factors) is an "
                             "OTT Grid")
        return ott_grid.Grid(x=[jnp.asarray(a) for a in self.axes], epsilon=eps)

    def boundary_mask(self) -> np.ndarray:
        """(N,) bool: points on the first or last value of any ``line`` factor.

        Angles and sphere directions have no boundary. Mass piling up there means the box
        clips the dynamics.
        """
        mask = np.zeros(self.size, dtype=bool)
        index = np.indices(self.shape).reshape(len(self.factors), -1)
        for f, i in zip(self.factors, index, strict=True):
            if f.kind == "line":
                mask |= (i == 0) | (i == f.size - 1)
        return mask

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Cell of each θ (q, D) and whether it lies inside the grid.

        Per-factor cells of the inverse-embedded coordinates (the nearest point in Θ, and
        always inside, if the embedding has no coordinate-wise inverse).

        Args:
          theta: (q, D) points of Θ.

        Returns:
          (index (q,) int, row-major; inside (q,) bool).
        """
        theta = jnp.asarray(theta, dtype=jnp.float64)
        coords = self.embed.inverse(theta)
        if coords is None:
            idx = nearest_index(theta, self.points)
            return idx, jnp.ones(idx.shape, dtype=bool)
        dims = np.cumsum([f.points.shape[1] for f in self.factors])[:-1]
        parts = jnp.split(coords, dims, axis=1)
        located = [f.locate(c) for f, c in zip(self.factors, parts, strict=True)]
        idx = jnp.ravel_multi_index(tuple(i for i, _ in located), self.shape, mode="clip")
        inside = jnp.all(jnp.stack([ok for _, ok in located]), axis=0)
        return idx, inside


def check_ranges(ranges, sizes, what: str = "ranges") -> list[tuple[float, float, int]]:
    """Validate box axes: one finite (lo, hi) with lo < hi and one integer size ≥ 2 each.

    Args:
      ranges: K pairs (lo, hi).
      sizes: K numbers of points per axis.
      what: the name of ``ranges`` in error messages (a config key).

    Returns:
      [(lo, hi, n)] per axis, as floats and int.

    Raises:
      ValueError: naming the offending axis.
    """
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
    """Box grid in ℝ^D with cost ‖θ − θ'‖².

    Axis k has ``sizes[k]`` points linspace(lo_k, hi_k) (endpoints included). The cells
    are the Voronoi boxes, so the grid covers Π_k [lo_k − δ_k/2, hi_k + δ_k/2] with
    spacing δ_k = (hi_k − lo_k)/(n_k − 1).

    Args:
      ranges: D pairs (lo_k, hi_k).
      sizes: D numbers of points n_k ≥ 2.
    """
    axes = check_ranges(ranges, sizes)
    return ProductGeometry([line_factor(np.linspace(lo, hi, n)) for lo, hi, n in axes])


def sphere_line_grid(
    d: int, n_dirs: int, beta_range, n_beta: int, *, seed: int = 0, repulsion_steps: int = 50
) -> ProductGeometry:
    """Grid on S^{d−1} × ℝ for ``sphere`` (θ = (s, β)), separable in (direction, β).

    d = 2: ``n_dirs`` uniform angles φ with periodic cost min(|Δφ|, 2π − |Δφ|)², points
    s = (cos φ, sin φ). d > 2: ``n_dirs`` quasi-uniform directions
    (:func:`mfjko.geometry.sphere.sphere_directions`) with squared geodesic cost
    arccos(sᵀs')² as a dense factor (keep n_dirs ≲ 4000). β: ``n_beta`` points linspace(beta_range).
    Total cost: geodesic² + (β − β')².
    """
    if int(d) != d or d < 2:
        raise ValueError(f"sphere grids need input dimension d ≥ 2 (bias included), got {d}")
    ((lo, hi, nb),) = check_ranges([beta_range], [n_beta], "beta_range")
    beta = line_factor(np.linspace(lo, hi, nb))
    if d == 2:
        return ProductGeometry([angle_factor(int(n_dirs)), beta], CircleEmbed())
    dirs = sphere_directions(int(n_dirs), int(d), seed=seed, repulsion_steps=repulsion_steps)
    return ProductGeometry([sphere_factor(dirs), beta])


