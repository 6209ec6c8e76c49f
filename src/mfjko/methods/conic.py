r"""Conic particle gradient descent (Chizat 2022) as a stepper: the WFR flow's particles.

Particles are balanced neurons stored as (s, β) (direction, signed mass r = |β|); one
step advances t by h: s ← (s − h∇_S G′)/‖·‖, β ← β(1 − 2hG′) (:func:`mfjko.wfr.conic_steps`;
MATH.md "WFR"). On balanced neurons this and GD are two first-order schemes of one flow.
``neuron`` problems start from the projection (w, α) ↦ (w/‖w‖, α‖w‖) of the particles
and report the balanced neurons (√r s, ±√r); ``sphere`` problems use (s, β) as is.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mfjko.errors import ConfigError
from mfjko.methods.base import Diagnostics, MethodInfo, ParticleState, Stepper, check_positive
from mfjko.methods.gd import ReferenceInit
from mfjko.methods.wfr_jko import WFR_PARAMETRIZATIONS, _as_sphere_particles, _check_param
from mfjko.wfr.conic import conic_steps, conic_to_balanced

__all__ = ["ConicGD", "ConicConfig", "METHOD"]


@dataclass(frozen=True)
class ConicGD(Stepper):
    """Explicit Euler of the conic (WFR) particle flow.

    Attributes:
      h: time step (mean-field time).

    Interval diagnostic ``min_mass_factor``: the smallest 1 − 2hG′ of the interval (a step
    with a factor ≤ 0 would flip a sign: ValueError, reduce h).
    """

    name = "conic"
    weighted = True
    diagnostics = {"min_mass_factor": float("nan")}
    h: float = 0.01

    def __post_init__(self):
        check_positive(self.h, "h")

    def init(self, problem, initial) -> ParticleState:
        """Conic particles (s, β) of the problem's particles (``neuron``: projected).

        Weighted particles Σ p_i δ_{θ_i} (:class:`~mfjko.methods.base.WeightedParticles`)
        are stepped as m uniform conic particles with β_i scaled by m·p_i (a conic particle
        carries the signed mass β/m: ν is the same measure); the state keeps p
        (:meth:`measure` reports the particles with β_i = β′_i/(m p_i) and weights p).
        """
        _check_param(problem)
        start = super().init(problem, initial)  # checks the particles (and weights)
        theta = _as_sphere_particles(problem, start.theta)
        if start.weights is not None:
            scale = theta.shape[0] * start.weights
            theta = np.concatenate([theta[:, :-1], (theta[:, -1] * scale)[:, None]], axis=1)
        return ParticleState(problem, jnp.asarray(theta), 0, start.weights)

    def advance(self, state: ParticleState, n_steps: int):
        """n_steps conic steps (ValueError if a mass factor is ≤ 0)."""
        p = state.problem
        theta, factor = conic_steps(state.theta, p.X, p.y, p.lam, self.h, n_steps)
        if not factor > 0:
            raise ValueError(f"conic: a mass factor 1 − 2hG′ = {factor:.3g} ≤ 0 within steps "
                             f"{state.k + 1}..{state.k + n_steps}; reduce h (methods.conic.h)")
        return ParticleState(p, theta, state.k + n_steps, state.weights), \
            Diagnostics({"min_mass_factor": factor})

    def measure(self, state: ParticleState):
        """The particles in the problem's Θ (``neuron``: balanced (√r s, ±√r)), weights 1/m.

        A weighted start: β_i = β′_i/(m p_i) with weights p (``sphere``: at t = 0 the
        weighted particles themselves; a particle of mass 0 reports β = 0).
        """
        theta = np.asarray(state.theta)
        m = theta.shape[0]
        weights = np.full(m, 1.0 / m)
        if state.weights is not None:
            weights = np.asarray(state.weights)
            scale = m * weights
            beta = np.divide(theta[:, -1], scale, out=np.zeros(m), where=scale > 0)
            theta = np.concatenate([theta[:, :-1], beta[:, None]], axis=1)
        if state.problem.param.name == "neuron":
            W, alpha = conic_to_balanced(theta)
            theta = np.concatenate([np.asarray(W), np.asarray(alpha)[:, None]], axis=1)
        return theta, weights


class ConicConfig(BaseModel):
    """``methods.conic``: conic particle GD from the run's particles (balanced projection)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    parametrizations: typing.ClassVar[tuple[str, ...]] = WFR_PARAMETRIZATIONS
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    init: ReferenceInit = "auto"

    def step_size(self) -> float:
        """The step h."""
        return self.h


def _build(mc: ConicConfig, setup) -> ConicGD:

    try:
        _check_param(setup.problem)
    except ValueError as e:
        raise ConfigError(f"methods.conic: {e}") from None
    return ConicGD(h=mc.h)


METHOD = MethodInfo("conic", ConicGD, ConicConfig, _build, color="tab:brown", linestyle=":",
                    summary="conic particle GD (the WFR flow of balanced neurons)",
                    directional=True)
