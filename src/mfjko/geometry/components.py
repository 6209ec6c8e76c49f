r"""Disjoint unions of geometries with infinite cost between blocks (block-diagonal kernel).

No mass moves between blocks: this keeps apart the nonnegative components ν⁺, ν⁻ of a
``signed`` grid (points (w, ±1)) and the (u, 0) / (0, v) halves of a ``pm`` grid.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mfjko.geometry.embeddings import AppendConstant, ZeroPad
from mfjko.geometry.product import cartesian_grid

Array = jax.Array

__all__ = ["ComponentGeometry", "signed_grid", "pm_grid"]

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
        """Total number N of points, summed over the blocks."""
        return sum(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Index of each block's first point in ``points``."""
        return tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes)[:-1]]))

    def lse_operator(self, eps) -> _ComponentLSE:
        """The map u ↦ log K e^u, (N,) → (N,), applied block by block (block-diagonal K)."""
        return _ComponentLSE(tuple(b.lse_operator(eps) for b in self.blocks), self.sizes)

    def apply_lse(self, u: Array, eps) -> Array:
        """Log-domain kernel application u ↦ log K e^u, K = exp(−C/ε), (N,) → (N,)."""
        return self.lse_operator(eps)(u)

    def apply_kernel(self, v: Array, eps) -> Array:
        """Kernel application v ↦ K v, K = exp(−C/ε) block-diagonal, (N,) → (N,)."""
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

    @property
    def cost_kind(self) -> str:
        """The cost inside the blocks (they share one)."""
        return self.blocks[0].cost_kind

    def movable_mask(self) -> np.ndarray:
        """(N, D) bool: the coordinates of Θ that transport can change at each point.

        An embedded constant (e.g. α = ±1 of ``signed`` or the zero half of ``pm``) cannot
        move.
        """
        rows = []
        for b, e in zip(self.blocks, self.embeds, strict=True):
            k = b.points.shape[1]  # a coordinate moves iff the embedding passes block moves on
            movable = np.asarray(e(np.ones((1, k)))) != np.asarray(e(np.zeros((1, k))))
            rows.append(np.repeat(movable, b.size, axis=0))
        return np.concatenate(rows, axis=0)

    def boundary_mask(self) -> np.ndarray:
        """(N,) bool: each block's boundary points, in block order."""
        return np.concatenate([b.boundary_mask() for b in self.blocks])

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Locate each θ: first its block, then its cell in that block.

        The block is the one whose embedded image is closest (e.g. the sign of α for
        ``signed``, the nonzero half for ``pm``).

        Args:
          theta: (q, D) points of Θ.

        Returns:
          (index (q,) int into ``points``, inside (q,) bool: inside that block's box).
        """
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


def signed_grid(w_ranges, sizes) -> ComponentGeometry:
    """``signed`` grid: a box over w ∈ ℝ^d, twice, at α = +1 and α = −1.

    Points (w, +1) and (w, −1) in Θ = (w, α) carry the nonnegative components ν⁺, ν⁻;
    no transport between them.

    Args:
      w_ranges: d pairs (low, high), the box over w.
      sizes: d points per axis.
    """
    box = cartesian_grid(w_ranges, sizes)
    return ComponentGeometry([box, box], [AppendConstant(1.0), AppendConstant(-1.0)])


def pm_grid(ranges, sizes) -> ComponentGeometry:
    """``pm`` grid: a box over ℝ^d, twice, as (u, 0) and (0, v) in Θ = (u, v).

    The two halves are the positive and negative neurons; no transport between them.

    Args:
      ranges: d pairs (low, high), the box over u (and v).
      sizes: d points per axis.
    """
    box = cartesian_grid(ranges, sizes)
    d = len(list(ranges))
    return ComponentGeometry([box, box], [ZeroPad(0, d), ZeroPad(d, 0)])


