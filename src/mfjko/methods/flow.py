r"""The particle gradient flow dθ_i/dt = −∇F′(μ_m)(θ_i), solved tightly: the reference.

diffrax's Tsit5 (5th order) with a PID step-size controller to (rtol, atol); one "step"
of this stepper integrates a segment of duration ``dt`` and restarts the adaptive solver
(the ODE is autonomous, so segmentation does not change the result). ``sphere``: the
state is re-projected on the sphere after each segment (removes the O(tol) drift).

Sliding on kinks: v is discontinuous across ReLU kinks wᵀx_j = 0 (and β = 0 / ‖u‖ = 0 for
``sphere`` / ``pm``); where the field points into a kink from both sides the Filippov flow
slides along it, while this ODE chatters across it and the solver pays ~1/tol steps. A
segment past ``max_steps`` raises RuntimeError (use implicit steps with small h there).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
from pydantic import BaseModel, ConfigDict, Field

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_int,
    check_positive,
    particle_masses,
)
from mfjko.methods.gd import ReferenceInit
from mfjko.objective import velocity

__all__ = ["GradientFlow", "FlowConfig", "METHOD"]


@partial(jax.jit, static_argnames=("param", "rtol", "atol", "max_steps"))
def _flow_segment(param, theta, weights, X, y, lam, duration, rtol, atol, max_steps):
    term = diffrax.ODETerm(lambda t, th, args: velocity(param, th, weights, X, y, lam))
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        t0=0.0,
        t1=duration,
        dt0=None,
        y0=theta,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )
    # The exact flow stays on the sphere; remove the solver's O(tol) radial drift.
    theta1 = param.project(sol.ys[0])
    ok = sol.result == diffrax.RESULTS.successful
    return theta1, sol.stats["num_steps"], sol.stats["num_accepted_steps"], \
        sol.stats["num_rejected_steps"], ok


_DIAGNOSTICS = {"solver_steps": 0.0, "accepted_steps": 0.0, "rejected_steps": 0.0}


@dataclass(frozen=True)
class GradientFlow(Stepper):
    """The exact particle flow, segment by segment.

    Attributes:
      dt: duration of one segment (the stepper's "step"; records fall on segment ends).
      rtol: the adaptive solver's relative tolerance.
      atol: the adaptive solver's absolute tolerance.
      max_steps: solver steps per segment.

    Interval diagnostics (the last segment): ``solver_steps``, ``accepted_steps``,
    ``rejected_steps``.
    """

    name = "flow"
    weighted = True
    diagnostics = _DIAGNOSTICS
    dt: float = 1.0
    rtol: float = 1e-10
    atol: float = 1e-10
    max_steps: int = 100_000

    def __post_init__(self):
        check_positive(self.dt, "dt")
        check_positive(self.rtol, "rtol")
        check_positive(self.atol, "atol")
        check_int(self.max_steps, "max_steps")

    @property
    def step_size(self) -> float:
        """Mean-field time of one segment, ``dt``."""
        return float(self.dt)

    def advance(self, state: ParticleState, n_steps: int):
        """Solve the flow over ``n_steps`` segments of dt; RuntimeError if the ODE solver fails."""
        p, theta = state.problem, state.theta
        w = jnp.asarray(particle_masses(state))
        for i in range(n_steps):
            theta, ns, na, nr, ok = _flow_segment(p.param, theta, w, p.X, p.y, p.lam,
                                                  jnp.float64(self.dt), self.rtol, self.atol,
                                                  self.max_steps)
            if not bool(ok):
                t_start = (state.k + i) * self.dt
                raise RuntimeError(
                    f"gradient_flow: the ODE solver failed on [{t_start:g}, "
                    f"{t_start + self.dt:g}] (max_steps = {self.max_steps}, rtol = "
                    f"{self.rtol:g}, atol = {self.atol:g}). Usually a particle has reached a "
                    "non-smooth point where the flow slides (e.g. ‖u‖ = 0 for 'pm', β = 0 "
                    "for 'sphere', or a ReLU kink w·x_j = 0 pushed from both sides); use "
                    "implicit_steps with a small h as the reference there, or raise "
                    "max_steps / loosen the tolerances")
        diag = {"solver_steps": float(ns), "accepted_steps": float(na),
                "rejected_steps": float(nr)}
        return ParticleState(p, theta, state.k + n_steps, state.weights), Diagnostics(diag)


class FlowConfig(BaseModel):
    """``methods.flow``: the gradient flow as a tight ODE solve (segments = records)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rtol: float = Field(1e-8, gt=0, allow_inf_nan=False)
    atol: float = Field(1e-10, gt=0, allow_inf_nan=False)
    init: ReferenceInit = "auto"

    def step_size(self) -> None:
        """None: the flow is adaptive, one segment per recording interval."""
        return None  # adaptive: one segment per recording interval


def _build(mc: FlowConfig, setup) -> GradientFlow:
    return GradientFlow(dt=setup.cfg.record_every, rtol=mc.rtol, atol=mc.atol)


METHOD = MethodInfo("flow", GradientFlow, FlowConfig, _build, color="tab:gray", linestyle="--",
                    summary="the gradient flow, a tight adaptive ODE solve")
