r"""The four parametrizations of a neuron and their grid facts (MATH.md: parametrizations).

A neuron θ ∈ Θ is a flat float64 vector of length ``dim(d)`` (d includes the bias column).
Each parametrization gives its output m(θ; x), potential V(θ), the exact image of classic
neurons (``from_classic``), the retraction onto Θ and the tangent projection (identity
except on the sphere), and the facts of its grids (kind, cost, multi-scale coordinates,
builders, the 2-D view for plots). σ(z) = max(0, z) with σ′(0) = 0. ``neuron``: (w, α),
α σ(wᵀx), ‖w‖² + α²; ``signed``: (w, α) with V = |α|‖w‖² + α² (grids: two components
α = ±1); ``pm``: (u, v), σ(uᵀx) − σ(vᵀx), 2(‖u‖ + ‖v‖); ``sphere``: (s, β), β σ(sᵀx), 2|β|.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mfjko.geometry import cartesian_grid, multiscale, pm_grid, signed_grid, sphere_line_grid

Array = jax.Array

__all__ = [
    "Parametrization",
    "Neuron",
    "Signed",
    "PlusMinus",
    "Sphere",
    "PARAMETRIZATIONS",
    "get",
    "safe_norm",
    "relu",
]


def relu(z: Array) -> Array:
    """σ(z) = max(0, z) with σ'(0) = 0."""
    return jax.nn.relu(z)


@jax.custom_jvp
def safe_norm(x: Array) -> Array:
    """Euclidean norm over the last axis whose (sub)gradient at 0 is 0, not NaN."""
    return jnp.sqrt(jnp.sum(x * x, axis=-1))


@safe_norm.defjvp
def _safe_norm_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    n = safe_norm(x)
    safe = jnp.where(n > 0, n, 1.0)
    return n, jnp.where(n > 0, jnp.sum(x * dx, axis=-1) / safe, 0.0)


@dataclass(frozen=True)
class Parametrization:
    """Base class: Euclidean Θ = ℝ^D. Subclasses define the neuron, V and their grid facts.

    Grid facts (one place per parametrization, used by grids, runner, metrics, report):
    ``grid_kind`` (the ``methods.jko.grid.kind`` its Θ needs), ``cost_kind`` (the
    transport cost on Θ, a key of :data:`mfjko.geometry.costs.POINT_COSTS`),
    ``scaled_coords`` (which coordinates a multi-scale copy scales: "all" or "last"),
    ``classic_coordinates`` (Θ's coordinates are the classic (w, α), so a law's density
    on (w, α) is a density on Θ), :meth:`build_grid`, :meth:`default_grid`,
    :meth:`grid_measure_of_classic` and :meth:`view2d`.
    """

    name: str = "base"
    #: whether the parametrization has a bounded direction factor (sphere)
    on_sphere: bool = False
    grid_kind: str = "cartesian"
    cost_kind: str = "sqeuclidean"
    scaled_coords: str = "all"
    classic_coordinates: bool = False

    def dim(self, d: int) -> int:
        """Dimension D of Θ (length of a flat θ) for d inputs, bias included."""
        raise NotImplementedError

    def output(self, theta: Array, X: Array) -> Array:
        """Neuron output m(θ; x_j) for every data row: θ (D,), X (n, d) → (n,)."""
        raise NotImplementedError

    def potential(self, theta: Array) -> Array:
        """Weight-decay potential V(θ) of one neuron θ (D,), a scalar."""
        raise NotImplementedError

    def from_classic(self, W: Array, alpha: Array) -> Array:
        """Classic neurons (W (m, d), α (m,)) as particles θ (m, D) with the same outputs."""
        raise NotImplementedError

    def to_classic(self, theta: Array) -> tuple[Array, Array]:
        """Classic neurons (W (m, d), α (m,)) with the same outputs as particles θ (m, D)."""
        raise NotImplementedError

    def project(self, theta: Array) -> Array:
        """Retraction of θ (..., D) onto Θ (the identity on a Euclidean Θ)."""
        return theta

    def tangent(self, theta: Array, g: Array) -> Array:
        """Projection of an ambient gradient g (..., D) onto the tangent space at θ (identity)."""
        return g

    # Vectorized helpers over a set of points θ (K, D).
    def features(self, thetas: Array, X: Array) -> Array:
        """Φ with Φ[j, k] = m(θ_k; x_j), shape (n, K)."""
        return jax.vmap(self.output, in_axes=(0, None), out_axes=1)(thetas, X)

    def potentials(self, thetas: Array) -> Array:
        """V(θ_k) for each point, shape (K,)."""
        return jax.vmap(self.potential)(thetas)

    # ------------------------------------------------------------------ grid facts
    def grid_axes(self, d: int) -> int:
        """Number of box axes of this Θ's grid for input dimension d (bias included)."""
        return self.dim(d)

    def _box(self, ranges, sizes):
        return cartesian_grid(ranges, sizes)

    def _check_axes(self, ranges, d: int, key: str = "methods.jko.grid.ranges") -> None:
        want = self.grid_axes(d)
        if len(ranges) != want:
            raise ValueError(
                f"{key} has {len(ranges)} axes; the {self.name} parametrization with d = {d} "
                f"inputs (bias included) needs {want} ({self.axes_label(d)})"
            )

    def axes_label(self, d: int) -> str:
        """Human-readable names of the grid's box axes, used in error messages."""
        return "one per coordinate of θ"

    def build_grid(self, spec, d: int):
        """The grid a config's ``methods.jko.grid`` (``spec``) describes, for d inputs.

        Raises ValueError naming the config key when the spec does not fit this Θ.
        """
        if spec.kind != self.grid_kind:
            raise ValueError(f"methods.jko.grid.kind = {spec.kind} does not fit "
                             f"model.parametrization = {self.name}: use kind {self.grid_kind}")
        geom = self._grid_from_spec(spec, d)
        if getattr(spec, "scales", None) is not None:
            geom = multiscale(geom, spec.scales, which=self.scaled_coords,
                              separable=getattr(spec, "separable_scales", False))
        return geom

    def _grid_from_spec(self, spec, d: int):
        self._check_axes(spec.ranges, d)
        return self._box(spec.ranges, spec.sizes)

    def default_grid(self, d: int, *, size: int = 16, radius: float = 3.0,
                     n_dirs: int | None = None, n_beta: int | None = None, scales=None,
                     separable_scales: bool = False):
        """A default grid over [−radius, radius] per box axis with ``size`` points.

        Args:
          d: input dimension (bias included).
          size: points per box axis.
          radius: half-width of each box axis (and of the β range for ``sphere``).
          n_dirs: number of directions (``sphere`` only; default ``size``).
          n_beta: number of β values (``sphere`` only; default ``size``).
          scales: wrap in :func:`mfjko.geometry.multiscale` copies at these scales.
          separable_scales: use the separable (surrogate-cost) multi-scale product.

        Returns:
          A geometry whose points live in Θ.
        """
        if int(d) != d or d < 1:
            raise ValueError(f"d must be a positive integer, got {d}")
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        geom = self._default_grid(int(d), size, radius, n_dirs, n_beta)
        if scales is not None:
            geom = multiscale(geom, scales, which=self.scaled_coords, separable=separable_scales)
        return geom

    def _default_grid(self, d, size, radius, n_dirs, n_beta):
        return self._box([(-radius, radius)] * self.grid_axes(d), [size] * self.grid_axes(d))

    def grid_measure_of_classic(self, W: Array, alpha: Array) -> tuple[Array, Array]:
        """Where classic neurons (W (m, d), α (m,)) put their mass on this Θ's grids.

        Returns:
          (θ (m, D), mass (m,)): each neuron puts ``mass`` at θ (1 except for ``signed``).
        """
        return self.project(self.from_classic(W, alpha)), jnp.ones_like(alpha)

    def view2d(self, points: np.ndarray, weights: np.ndarray):
        """A 2-D view of a measure on Θ for heatmaps.

        Args:
          points: grid or particle positions θ_k, shape (K, D).
          weights: mass of each point, shape (K,).

        Returns:
          (x (K,), y (K,), signed weight (K,), (x label, y label)).
        """
        return points[:, 0], points[:, -1], weights, ("w_1", "α")


def _signed_view(w: np.ndarray, sign: np.ndarray, weights: np.ndarray):
    """(w_1, w_2 (0 if d = 1), weight × sign, labels): the view of signed neurons."""
    second = w[:, 1] if w.shape[1] > 1 else np.zeros(len(w))
    return w[:, 0], second, weights * sign, ("w_1", "w_2")


@dataclass(frozen=True)
class Neuron(Parametrization):
    """``neuron``: θ = (w, α) ∈ ℝ^d × ℝ, m(θ; x) = α σ(wᵀx), V(θ) = ‖w‖² + α²."""
    name: str = "neuron"
    classic_coordinates: bool = True

    def axes_label(self, d: int) -> str:
        """Human-readable names of the grid's box axes: w_1..w_d, then α."""
        return "w_1..w_d, alpha"

    def dim(self, d: int) -> int:
        """D = d + 1: the input weights w and the output weight α."""
        return d + 1

    def output(self, theta, X):
        """α σ(Xw) for θ = (w, α) (D,) and X (n, d), shape (n,)."""
        return theta[-1] * relu(X @ theta[:-1])

    def potential(self, theta):
        """V(θ) = ‖w‖² + α²."""
        return jnp.sum(theta * theta)

    def from_classic(self, W, alpha):
        """The identity: θ = (w, α) stacked as (m, d + 1)."""
        return jnp.concatenate([W, alpha[:, None]], axis=1)

    def to_classic(self, theta):
        """Split θ (m, d + 1) into W (m, d) and α (m,)."""
        return theta[:, :-1], theta[:, -1]


@dataclass(frozen=True)
class Signed(Neuron):
    """``signed``: θ = (w, α) carrying signed mass α, V(θ) = |α|‖w‖² + α².

    On a grid the mass is split into two nonnegative components ν⁺, ν⁻ at α = ±1.
    """
    name: str = "signed"
    grid_kind: str = "signed"
    classic_coordinates: bool = False

    def potential(self, theta):
        """V(θ) = |α|‖w‖² + α² for θ = (w, α)."""
        w, a = theta[:-1], theta[-1]
        return jnp.abs(a) * jnp.sum(w * w) + a * a

    # Grids: a box over w, twice, at α = ±1 (the nonnegative components ν⁺, ν⁻).
    def grid_axes(self, d: int) -> int:
        """One box axis per input: a grid is a box over w, repeated at α = ±1."""
        return d

    def axes_label(self, d: int) -> str:
        """Human-readable names of the grid's box axes: a box over w."""
        return "a box over w"

    def _box(self, ranges, sizes):
        return signed_grid(ranges, sizes)

    def grid_measure_of_classic(self, W, alpha):
        """Mass |α| at (w, sign α): θ (m, d + 1) and mass (m,) on the ν⁺/ν⁻ grid."""
        # unit |α| on the grid: the neuron's |α| becomes mass at (w, sign α)
        return jnp.concatenate([W, jnp.sign(alpha)[:, None]], axis=1), jnp.abs(alpha)

    def view2d(self, points, weights):
        """(w_1, w_2, weight × sign α, labels) for heatmaps: points (K, d + 1), weights (K,)."""
        return _signed_view(points[:, :-1], np.sign(points[:, -1]), weights)


@dataclass(frozen=True)
class PlusMinus(Parametrization):
    """``pm``: θ = (u, v) ∈ ℝ^d × ℝ^d, m(θ; x) = σ(uᵀx) − σ(vᵀx), V(θ) = 2(‖u‖ + ‖v‖)."""
    name: str = "pm"
    grid_kind: str = "pm"

    def grid_axes(self, d: int) -> int:
        """One box axis per input: a grid is a box over u (v = 0) and one over v (u = 0)."""
        return d

    def axes_label(self, d: int) -> str:
        """Human-readable names of the grid's box axes: a box over u and v."""
        return "a box over u and v"

    def _box(self, ranges, sizes):
        return pm_grid(ranges, sizes)

    def view2d(self, points, weights):
        """(w_1, w_2, signed weight, labels) of each point's larger block (u: +, v: −)."""
        # a grid point lives in one block; a particle's net neuron is the larger of u, v
        D = points.shape[1]
        u, v = points[:, : D // 2], points[:, D // 2:]
        nu, nv = np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)
        return _signed_view(np.where((nu >= nv)[:, None], u, v), np.where(nu >= nv, 1.0, -1.0),
                            weights)

    def dim(self, d: int) -> int:
        """D = 2d: the positive unit u and the negative unit v."""
        return 2 * d

    def output(self, theta, X):
        """σ(Xu) − σ(Xv) for θ = (u, v) (2d,) and X (n, d), shape (n,)."""
        u, v = jnp.split(theta, 2)
        return relu(X @ u) - relu(X @ v)

    def potential(self, theta):
        """V(θ) = 2(‖u‖ + ‖v‖)."""
        u, v = jnp.split(theta, 2)
        return 2.0 * (safe_norm(u) + safe_norm(v))

    def from_classic(self, W, alpha):
        """α > 0 → (αw, 0), α < 0 → (0, |α|w): particles (m, 2d)."""
        pos = jnp.maximum(alpha, 0.0)[:, None] * W
        neg = jnp.maximum(-alpha, 0.0)[:, None] * W
        return jnp.concatenate([pos, neg], axis=1)

    def to_classic(self, theta):
        """The 2m classic neurons (u_i, +1) then (v_i, −1): W (2m, d), α (2m,)."""
        # Two classic neurons per particle would be exact; we return the sum form
        # (u, +1) and (v, -1) interleaved: W (2m, d), α (2m,).
        u, v = jnp.split(theta, 2, axis=1)
        W = jnp.concatenate([u, v], axis=0)
        a = jnp.concatenate([jnp.ones(len(u)), -jnp.ones(len(v))])
        return W, a


@dataclass(frozen=True)
class Sphere(Parametrization):
    """``sphere``: θ = (s, β) ∈ S^{d−1} × ℝ, m(θ; x) = β σ(sᵀx), V(θ) = 2|β|."""
    name: str = "sphere"
    on_sphere: bool = True
    grid_kind: str = "sphere_line"
    cost_kind: str = "sphere_line"
    scaled_coords: str = "last"

    def _grid_from_spec(self, spec, d: int):
        return sphere_line_grid(d, spec.n_dirs, spec.beta_range, spec.n_beta)

    def _default_grid(self, d, size, radius, n_dirs, n_beta):
        return sphere_line_grid(d, n_dirs or size, (-radius, radius), n_beta or size)

    def view2d(self, points, weights):
        """(angle of s (d = 2) or s_1, β, weight, labels) for heatmaps: points (K, d + 1)."""
        if points.shape[1] == 3:
            return (np.arctan2(points[:, 1], points[:, 0]), points[:, -1], weights,
                    ("angle of s", "β"))
        return points[:, 0], points[:, -1], weights, ("s_1", "β")

    def dim(self, d: int) -> int:
        """D = d + 1: the unit direction s and the signed scale β."""
        return d + 1

    def output(self, theta, X):
        """β σ(Xs) for θ = (s, β) (d + 1,) and X (n, d), shape (n,)."""
        return theta[-1] * relu(X @ theta[:-1])

    def potential(self, theta):
        """V(θ) = 2|β|."""
        return 2.0 * jnp.abs(theta[-1])

    def from_classic(self, W, alpha):
        """Direction s = w/‖w‖, scale β = ‖w‖α (s = e_1 when w = 0): particles (m, d + 1)."""
        r = safe_norm(W)
        # A zero w has no direction; any unit s gives the same (zero) output.
        e0 = jnp.zeros_like(W).at[:, 0].set(1.0)
        s = jnp.where(r[:, None] > 0, W / jnp.where(r > 0, r, 1.0)[:, None], e0)
        return jnp.concatenate([s, (r * alpha)[:, None]], axis=1)

    def to_classic(self, theta):
        """Split θ (m, d + 1) into W = s (m, d) and α = β (m,), which give the same outputs."""
        return theta[:, :-1], theta[:, -1]

    def project(self, theta):
        """Normalize the direction s of θ (..., d + 1) to the unit sphere; β unchanged."""
        s, b = theta[..., :-1], theta[..., -1:]
        n = safe_norm(s)[..., None]
        return jnp.concatenate([s / jnp.where(n > 0, n, 1.0), b], axis=-1)

    def tangent(self, theta, g):
        """Tangent part of g (..., d + 1) at θ: g_s − ⟨g_s, s⟩ s on the s-block, β-part kept."""
        s = theta[..., :-1]
        gs = g[..., :-1]
        gs = gs - jnp.sum(gs * s, axis=-1, keepdims=True) * s
        return jnp.concatenate([gs, g[..., -1:]], axis=-1)


PARAMETRIZATIONS: dict[str, Parametrization] = {
    p.name: p for p in (Neuron(), Signed(), PlusMinus(), Sphere())
}


def get(name: str | Parametrization) -> Parametrization:
    """The parametrization called ``name`` (one of neuron, signed, pm, sphere)."""
    if isinstance(name, Parametrization):
        return name
    try:
        return PARAMETRIZATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown parametrization {name!r}; choose one of {sorted(PARAMETRIZATIONS)}"
        ) from None
