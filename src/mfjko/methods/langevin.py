r"""Mean-field Langevin: noisy GD, the particle counterpart of entropic JKO (MATH.md).

θ ← θ + h v(θ) + √(2Dh) ξ_k (Euler–Maruyama for dθ = v dt + √(2D) dB, whose law solves
∂_t μ = div(μ ∇F′(μ)) + D Δμ); ξ_k = normal(fold_in(key, k)) with k the global step index,
so resumed runs draw the same noise. D = 0 is exactly GD. ``sphere``: the noise is
projected on the tangent space, then the step is retracted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_positive,
)
from mfjko.methods.gd import particle_velocity

__all__ = ["Langevin", "LangevinConfig", "METHOD"]


@partial(jax.jit, static_argnames=("param",))
def _langevin_advance(param, theta, X, y, lam, h, diffusion, key, k_start, n):
    scale = jnp.sqrt(2.0 * diffusion * h)

    def body(i, th):
        xi = jax.random.normal(jax.random.fold_in(key, k_start + i), th.shape, th.dtype)
        drift = h * particle_velocity(param, th, X, y, lam)
        return param.project(th + drift + scale * param.tangent(th, xi))

    return lax.fori_loop(0, n, body, theta)


@dataclass(frozen=True)
class Langevin(Stepper):
    """Mean-field Langevin at diffusion D.

    Attributes:
      h: time step (mean-field time).
      diffusion: D ≥ 0 (units: Θ-distance² per unit time).
      key: JAX PRNG key (or an int seed) of the noise.
    """

    name = "langevin"
    h: float = 0.01
    diffusion: float = 0.0
    key: object = field(default=0, repr=False)

    def __post_init__(self):
        check_positive(self.h, "h")
        D = float(self.diffusion)
        if not math.isfinite(D) or D < 0:
            raise ValueError(f"diffusion D must be finite and >= 0, got {D}")
        if isinstance(self.key, int):
            object.__setattr__(self, "key", jax.random.PRNGKey(self.key))

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` Euler–Maruyama steps of h: (new state, empty Diagnostics)."""
        p = state.problem
        theta = _langevin_advance(p.param, state.theta, p.X, p.y, p.lam, jnp.float64(self.h),
                                  jnp.float64(self.diffusion), self.key, jnp.int32(state.k),
                                  jnp.int32(n_steps))
        return ParticleState(p, theta, state.k + n_steps), Diagnostics()


class LangevinConfig(BaseModel):
    """``methods.langevin``: give D, or ``match_jko: true`` for D = ε/(4τ) of the jko method.

    D = ε/(4τ) is the diffusion entropic JKO adds (MATH.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    D: float | None = Field(None, ge=0, allow_inf_nan=False)
    match_jko: bool = False

    @model_validator(mode="after")
    def _one_way(self):
        if (self.D is None) == (not self.match_jko):
            raise ValueError("methods.langevin: give exactly one of D: <value> or "
                             "match_jko: true")
        return self

    def step_size(self) -> float:
        """The time step h (mean-field time), to check it divides ``record_every``."""
        return self.h


def _build(mc: LangevinConfig, setup) -> Langevin:
    return Langevin(h=mc.h, diffusion=setup.cfg.langevin_D(), key=setup.keys["langevin"])


METHOD = MethodInfo("langevin", Langevin, LangevinConfig, _build, color="tab:orange",
                    linestyle="-.", summary="mean-field Langevin at diffusion D")
