r"""Sliced-W₂ proximal steps: θ_{k+1} = argmin_θ G(θ) + SW²(μ_θ, μ_{θ_k})/(2h).

SW²(μ, ν) = D · (1/L) Σ_l W₂²(u_l#μ, u_l#ν), u_l uniform on S^{D−1} (D = dim Θ), each 1-D
W₂² by sorting. The factor D (E[(uᵀz)²] = ‖z‖²/D) makes SW² ≈ W₂² for small displacements,
so h is comparable with the other methods' step. Directions are redrawn every step from
fold_in(key, k), k the global step index (reproducible segments). ``sphere``: θ(z) =
(s/‖s‖, β) with the penalty (‖s‖ − 1)²/(2hm), chordal transport cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from pydantic import BaseModel, ConfigDict, Field

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_int,
    check_positive,
)
from mfjko.methods.gd import ReferenceInit, particle_velocity
from mfjko.methods.implicit import warn_unconverged
from mfjko.objective import particle_objective

__all__ = ["SlicedProx", "SlicedConfig", "sliced_w2_squared", "METHOD"]


def sliced_w2_squared(theta, anchor, directions) -> jax.Array:
    """SW² = D · (1/L) Σ_l (1/m) Σ_i (sort(θ u_l)_i − sort(a u_l)_i)², a scalar.

    Differentiable (through the sort permutation).

    Args:
      theta: (m, D) particles θ.
      anchor: (m, D) particles a of the other uniform measure.
      directions: (L, D) unit directions u_l.
    """
    D = theta.shape[1]
    pt = jnp.sort(theta @ directions.T, axis=0)
    pa = jnp.sort(anchor @ directions.T, axis=0)
    return D * jnp.mean((pt - pa) ** 2)


def _embed(param, z):
    if param.on_sphere:
        s = z[..., :-1]
        n = jnp.sqrt(jnp.sum(s * s, axis=-1, keepdims=True))
        return jnp.concatenate([s / n, z[..., -1:]], axis=-1)
    return z


def _sliced_merit(param, z, anchor, dirs, X, y, lam, h):
    """J(z) = G(θ(z)) + SW²(μ_θ(z), μ_anchor)/(2h) (+ sphere norm penalty)."""
    theta = _embed(param, z)
    m = z.shape[0]
    val = particle_objective(param, theta, X, y, lam) + sliced_w2_squared(theta, anchor, dirs) / (
        2.0 * h)
    if param.on_sphere:
        val = val + jnp.sum((jnp.sqrt(jnp.sum(z[:, :-1] ** 2, axis=1)) - 1.0) ** 2) / (2.0 * h * m)
    return val


@partial(jax.jit, static_argnames=("param", "n_proj", "max_iter"))
def _sliced_step(param, anchor, X, y, lam, h, key, tol, n_proj, max_iter):
    """One sliced prox step by gradient descent with safeguarded Barzilai–Borwein steps.

    Starts from the explicit Euler predictor and runs until m·‖∇J‖_∞ ≤ tol (velocity
    units, as the implicit step's residual) or ``max_iter``. Returns (θ, iterations,
    residual).
    """
    m, D = anchor.shape
    u = jax.random.normal(key, (n_proj, D))
    dirs = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    grad = jax.grad(_sliced_merit, argnums=1)
    z0 = param.project(anchor + h * particle_velocity(param, anchor, X, y, lam))
    g0 = grad(param, z0, anchor, dirs, X, y, lam, h)
    # Initial step: the prox term's curvature is ≈ 1/(h m) per coordinate.
    step0 = h * m / (1.0 + h)

    def res_of(g):
        return m * jnp.max(jnp.abs(g))

    def cond(state):
        _, g, _, it = state
        return (res_of(g) > tol) & (it < max_iter)

    def body(state):
        z, g, step, it = state
        z_new = z - step * g
        g_new = grad(param, z_new, anchor, dirs, X, y, lam, h)
        s, yy = (z_new - z).ravel(), (g_new - g).ravel()
        sy = jnp.dot(s, yy)
        bb = jnp.where(sy > 0, jnp.dot(s, s) / jnp.where(sy > 0, sy, 1.0), step0)
        return z_new, g_new, jnp.clip(bb, 1e-3 * step0, 1e3 * step0), it + 1

    z, g, _, it = lax.while_loop(cond, body, (z0, g0, step0, 0))
    return _embed(param, z), it, res_of(g)


_DIAGNOSTICS = {"inner_iterations_max": 0.0, "inner_iterations_total": 0.0,
                "inner_residual": 0.0, "converged": 1.0}


@dataclass(frozen=True)
class SlicedProx(Stepper):
    """Sliced-W₂ proximal steps of length h.

    Each step is minimized by Barzilai–Borwein gradient descent to m·‖∇J‖_∞ ≤ tol
    (velocity units).

    Attributes:
      h: time step (mean-field time).
      tol: inner tolerance.
      n_projections: directions per step.
      key: PRNG key (or int seed) of the directions.
      max_iter: inner iteration cap.

    Interval diagnostics: ``inner_iterations_max``, ``inner_iterations_total``,
    ``inner_residual`` (max), ``converged``.
    """

    name = "sliced"
    diagnostics = _DIAGNOSTICS
    h: float = 0.01
    tol: float = 1e-8
    n_projections: int = 64
    key: object = field(default=0, repr=False, compare=False)
    max_iter: int = 20_000

    def __post_init__(self):
        check_positive(self.h, "h")
        check_positive(self.tol, "tol")
        check_int(self.n_projections, "n_projections")
        if isinstance(self.key, int):
            object.__setattr__(self, "key", jax.random.PRNGKey(self.key))

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` sliced prox steps of h (fresh directions each); warns above ``tol``."""
        p, th = state.problem, state.theta
        its_max, its_tot, res_max = 0, 0, 0.0
        for k in range(n_steps):
            kk = jax.random.fold_in(self.key, state.k + k)
            th, it, res = _sliced_step(p.param, th, p.X, p.y, p.lam, jnp.float64(self.h), kk,
                                       jnp.float64(self.tol), int(self.n_projections),
                                       int(self.max_iter))
            its_max, its_tot = max(its_max, int(it)), its_tot + int(it)
            res_max = max(res_max, float(res))
        diag = dict(inner_iterations_max=float(its_max), inner_iterations_total=float(its_tot),
                    inner_residual=res_max, converged=float(res_max <= self.tol))
        if res_max > self.tol:
            warn_unconverged(self.name, self.tol, state.k, n_steps, self.h, diag)
        return ParticleState(p, th, state.k + n_steps), Diagnostics(diag)


class SlicedConfig(BaseModel):
    """``methods.sliced``: sliced-W₂ proximal steps with ``n_projections`` directions.

    ``init`` resolves to ``particles`` only: the step's SW² sorts equal-mass projections
    (``init: grid`` is a ConfigError).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    n_projections: int = Field(50, ge=1)
    tol: float = Field(1e-8, gt=0, allow_inf_nan=False)
    init: ReferenceInit = "auto"

    def step_size(self) -> float:
        """The time step h (mean-field time), to check it divides ``record_every``."""
        return self.h


def _build(mc: SlicedConfig, setup) -> SlicedProx:
    return SlicedProx(h=mc.h, tol=mc.tol, n_projections=mc.n_projections,
                      key=setup.keys["peers"])


METHOD = MethodInfo("sliced", SlicedProx, SlicedConfig, _build, color="tab:pink",
                    summary="proximal steps in sliced W₂ (D-normalized)")
