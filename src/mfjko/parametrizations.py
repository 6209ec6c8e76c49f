r"""The four parametrizations of a neuron (MATH.md, "The four parametrizations").

A neuron is a point θ of Θ, stored as a flat float64 vector of length ``dim(d)``
where ``d`` is the input dimension *including* the bias column. Each
parametrization gives

- ``output(theta, X)``: m(θ; x_j) for every data row, shape (n,), for θ of shape (D,);
- ``potential(theta)``: V(θ), the weight-decay potential, a scalar;
- ``from_classic(W, alpha)``: the exact image of classic neurons (W: (m, d), α: (m,))
  as particles, shape (m, D), so that the predictors agree;
- ``project(theta)``: the retraction onto Θ (identity except on the sphere) and
  ``tangent(theta, g)``: the projection of an ambient gradient g onto the tangent
  space at θ (identity except on the sphere).

σ(z) = max(0, z) with σ'(0) = 0 (``jax.nn.relu``'s derivative at 0 is 0).

| name     | θ              | m(θ; x)           | V(θ)            |
| -------- | -------------- | ----------------- | --------------- |
| neuron   | (w, α)         | α σ(wᵀx)          | ‖w‖² + α²       |
| signed   | (w, α)         | α σ(wᵀx)          | |α|‖w‖² + α²    |
| pm       | (u, v)         | σ(uᵀx) − σ(vᵀx)   | 2(‖u‖ + ‖v‖)    |
| sphere   | (s, β), ‖s‖=1  | β σ(sᵀx)          | 2|β|            |

``signed``: the measure ν = (1/m) Σ α_i δ_{w_i} carries a signed mass α; as particles
we evolve (w, α) jointly, and its weight decay is MATH.md's
(λ/2)(∫‖w‖² d|ν| + Σ α_i²/m), i.e. V(w, α) = |α|‖w‖² + α². On a grid the mass is
split into two nonnegative components with α = ±1 (see ``mfjko.grids``), where
V = ‖w‖² + 1.

``pm`` and ``sphere``: V equals ‖w‖² + α² of the classic neuron exactly when the
neuron is balanced (‖w‖ = |α|); their gradients differ from GD's on (w, α).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

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
    """Base class: Euclidean Θ = ℝ^D. Subclasses define the neuron and V."""

    name: str = "base"
    #: whether the parametrization has a bounded direction factor (sphere)
    on_sphere: bool = False

    def dim(self, d: int) -> int:
        raise NotImplementedError

    def output(self, theta: Array, X: Array) -> Array:
        raise NotImplementedError

    def potential(self, theta: Array) -> Array:
        raise NotImplementedError

    def from_classic(self, W: Array, alpha: Array) -> Array:
        raise NotImplementedError

    def to_classic(self, theta: Array) -> tuple[Array, Array]:
        """Classic neurons (W (m, d), α (m,)) with the same outputs as particles θ (m, D)."""
        raise NotImplementedError

    def project(self, theta: Array) -> Array:
        return theta

    def tangent(self, theta: Array, g: Array) -> Array:
        return g

    # Vectorized helpers over a set of points θ (K, D).
    def features(self, thetas: Array, X: Array) -> Array:
        """Φ with Φ[j, k] = m(θ_k; x_j), shape (n, K)."""
        return jax.vmap(self.output, in_axes=(0, None), out_axes=1)(thetas, X)

    def potentials(self, thetas: Array) -> Array:
        """V(θ_k) for each point, shape (K,)."""
        return jax.vmap(self.potential)(thetas)


@dataclass(frozen=True)
class Neuron(Parametrization):
    name: str = "neuron"

    def dim(self, d: int) -> int:
        return d + 1

    def output(self, theta, X):
        return theta[-1] * relu(X @ theta[:-1])

    def potential(self, theta):
        return jnp.sum(theta * theta)

    def from_classic(self, W, alpha):
        return jnp.concatenate([W, alpha[:, None]], axis=1)

    def to_classic(self, theta):
        return theta[:, :-1], theta[:, -1]


@dataclass(frozen=True)
class Signed(Neuron):
    name: str = "signed"

    def potential(self, theta):
        w, a = theta[:-1], theta[-1]
        return jnp.abs(a) * jnp.sum(w * w) + a * a


@dataclass(frozen=True)
class PlusMinus(Parametrization):
    name: str = "pm"

    def dim(self, d: int) -> int:
        return 2 * d

    def output(self, theta, X):
        u, v = jnp.split(theta, 2)
        return relu(X @ u) - relu(X @ v)

    def potential(self, theta):
        u, v = jnp.split(theta, 2)
        return 2.0 * (safe_norm(u) + safe_norm(v))

    def from_classic(self, W, alpha):
        pos = jnp.maximum(alpha, 0.0)[:, None] * W
        neg = jnp.maximum(-alpha, 0.0)[:, None] * W
        return jnp.concatenate([pos, neg], axis=1)

    def to_classic(self, theta):
        # Two classic neurons per particle would be exact; we return the sum form
        # (u, +1) and (v, -1) interleaved: W (2m, d), α (2m,).
        u, v = jnp.split(theta, 2, axis=1)
        W = jnp.concatenate([u, v], axis=0)
        a = jnp.concatenate([jnp.ones(len(u)), -jnp.ones(len(v))])
        return W, a


@dataclass(frozen=True)
class Sphere(Parametrization):
    name: str = "sphere"
    on_sphere: bool = True

    def dim(self, d: int) -> int:
        return d + 1

    def output(self, theta, X):
        return theta[-1] * relu(X @ theta[:-1])

    def potential(self, theta):
        return 2.0 * jnp.abs(theta[-1])

    def from_classic(self, W, alpha):
        r = safe_norm(W)
        # A zero w has no direction; any unit s gives the same (zero) output.
        e0 = jnp.zeros_like(W).at[:, 0].set(1.0)
        s = jnp.where(r[:, None] > 0, W / jnp.where(r > 0, r, 1.0)[:, None], e0)
        return jnp.concatenate([s, (r * alpha)[:, None]], axis=1)

    def to_classic(self, theta):
        return theta[:, :-1], theta[:, -1]

    def project(self, theta):
        s, b = theta[..., :-1], theta[..., -1:]
        n = safe_norm(s)[..., None]
        return jnp.concatenate([s / jnp.where(n > 0, n, 1.0), b], axis=-1)

    def tangent(self, theta, g):
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
