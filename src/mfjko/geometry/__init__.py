r"""Grids over Θ: weighted point sets with a ground cost and their Gibbs-kernel operators.

A geometry is an immutable pytree (``equinox.Module``; sizes are static) with ``points``
(N, D) in Θ of its parametrization, ``apply_lse(u, eps)`` (log K e^u, K = exp(−C/ε)),
``lse_operator(eps)`` (the same with the ε-dependent kernels built once), ``apply_kernel``,
``cost_matrix()`` (dense, small N only), ``spacing``, ``size``, ``cost_kind``,
``boundary_mask()`` and ``locate(theta)``. Modules, one concept each: :mod:`.costs`,
:mod:`.sphere` (directions), :mod:`.pointset` (dense / chunked), :mod:`.product`
(separable factors), :mod:`.embeddings`, :mod:`.components` (sign components),
:mod:`.multiscale`, :mod:`.spec` (:class:`GridSpec`, the config model of a grid). The
maths is in docs/MATH.md ("Grid discretization").
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
import numpy as np

from mfjko.geometry.components import ComponentGeometry, pm_grid, signed_grid
from mfjko.geometry.costs import (
    POINT_COSTS,
    SphereLineCost,
    ott_cost,
    point_cost,
    squared_euclidean,
    squared_geodesic_sphere,
    squared_periodic,
    squared_sphere_line,
)
from mfjko.geometry.embeddings import AppendConstant, CircleEmbed, Identity, ScaledEmbed, ZeroPad
from mfjko.geometry.multiscale import multiscale
from mfjko.geometry.pointset import DENSE_MAX, ChunkedGeometry, DenseGeometry, point_set
from mfjko.geometry.product import (
    UNDERFLOW,
    Factor,
    ProductGeometry,
    angle_factor,
    cartesian_grid,
    line_factor,
    sphere_factor,
    sphere_line_grid,
)
from mfjko.geometry.spec import GridSpec
from mfjko.geometry.sphere import circle_directions, sphere_directions, spread_directions

Array = jax.Array

__all__ = [
    "Geometry",
    "GridSpec",
    "squared_euclidean",
    "squared_geodesic_sphere",
    "squared_periodic",
    "squared_sphere_line",
    "point_cost",
    "POINT_COSTS",
    "SphereLineCost",
    "ott_cost",
    "DenseGeometry",
    "ChunkedGeometry",
    "point_set",
    "DENSE_MAX",
    "Factor",
    "line_factor",
    "angle_factor",
    "sphere_factor",
    "ProductGeometry",
    "cartesian_grid",
    "sphere_line_grid",
    "ComponentGeometry",
    "signed_grid",
    "pm_grid",
    "multiscale",
    "Identity",
    "CircleEmbed",
    "ScaledEmbed",
    "AppendConstant",
    "ZeroPad",
    "circle_directions",
    "sphere_directions",
    "spread_directions",
    "UNDERFLOW",
]


@runtime_checkable
class Geometry(Protocol):
    """What the JKO solver, the metrics and the report need from a grid (module docstring)."""

    points: Array

    @property
    def size(self) -> int:
        """Number N of support points."""
        ...

    @property
    def cost_kind(self) -> str:
        """Name of the ground cost, a key of :data:`mfjko.geometry.costs.POINT_COSTS`."""
        ...

    def apply_lse(self, u: Array, eps) -> Array:
        """Log-domain kernel application u ↦ log K e^u, K = exp(−C/ε), (N,) → (N,)."""
        ...

    def lse_operator(self, eps):
        """The map u ↦ log K e^u, (N,) → (N,), with its ε-dependent kernels built once."""
        ...

    def apply_kernel(self, v: Array, eps) -> Array:
        """Kernel application v ↦ K v, K = exp(−C/ε), (N,) → (N,)."""
        ...

    def cost_matrix(self) -> Array:
        """The dense cost C (N, N) (small N only)."""
        ...

    def boundary_mask(self) -> np.ndarray:
        """(N,) bool: the points on the boundary of the grid's box (none for point sets)."""
        ...

    def locate(self, theta: Array) -> tuple[Array, Array]:
        """Cell index (q,) of each θ (q, D) and whether it lies inside the grid, (q,) bool."""
        ...
