r"""Particle gradient descent on the mean-field time axis (MATH.md "time scaling").

θ_{k+1} = θ_k + h v(θ_k), v_i = −∇F′(μ)(θ_i): for uniform particles GD on G with lr = m·h,
one step advances t by h (``sphere``: then retract onto the sphere). Particles may carry
fixed masses p_i (μ = Σ p_i δ_{θ_i}): started from the grid's own initial measure this is
the deterministic mean-field reference of a grid method (``init: grid``, docs/STUDY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax
from pydantic import BaseModel, ConfigDict, Field

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_positive,
    particle_masses,
)
from mfjko.objective import velocity

__all__ = ["GradientDescent", "GDConfig", "particle_velocity", "METHOD", "ReferenceInit"]

#: where a particle reference starts: ``grid`` = the grid method's initial measure as
#: weighted particles (jko: at the grid points; wfr_jko without jko: ν₀'s conic view;
#: deterministic, F(0) equal to the grid method's); ``particles`` = init.m particles sampled
#: from the initial law (one draw); ``auto`` = grid when the run has a grid method (jko or
#: wfr_jko) and the method accepts weights
ReferenceInit = Literal["auto", "grid", "particles"]


def particle_velocity(param, thetas, X, y, lam):
    """v_i = −∇F′(μ_m)(θ_i) (tangent on the sphere) for uniform μ_m, shape (m, D)."""
    m = thetas.shape[0]
    return velocity(param, thetas, jnp.full((m,), 1.0 / m), X, y, lam)


def _gd_step(param, theta, weights, X, y, lam, h):
    return param.project(theta + h * velocity(param, theta, weights, X, y, lam))


# The step count n is a traced argument (fori_loop lowers to a while loop): one compiled
# program serves every interval length, so runs of any length never recompile.
@partial(jax.jit, static_argnames=("param",))
def _gd_advance(param, theta, weights, X, y, lam, h, n):
    return lax.fori_loop(0, n, lambda i, th: _gd_step(param, th, weights, X, y, lam, h), theta)


@dataclass(frozen=True)
class GradientDescent(Stepper):
    """Explicit Euler on the particle flow (GD with lr = m·h).

    Attributes:
      h: time step (mean-field time).
    """

    name = "gd"
    weighted = True
    h: float = 0.01

    def __post_init__(self):
        check_positive(self.h, "h")

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` GD steps of h: (new :class:`ParticleState`, empty Diagnostics)."""
        p = state.problem
        theta = _gd_advance(p.param, state.theta, jnp.asarray(particle_masses(state)), p.X,
                            p.y, p.lam, jnp.float64(self.h), jnp.int32(n_steps))
        return ParticleState(p, theta, state.k + n_steps, state.weights), Diagnostics()


class GDConfig(BaseModel):
    """``methods.gd``: the reference every method is compared with (required)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    init: ReferenceInit = "auto"

    def step_size(self) -> float:
        """The time step h (mean-field time), to check it divides ``record_every``."""
        return self.h


def _build(mc: GDConfig, setup) -> GradientDescent:
    return GradientDescent(h=mc.h)


METHOD = MethodInfo("gd", GradientDescent, GDConfig, _build, color="black",
                    summary="particle GD, lr = m·h (the reference)")
