r"""Mean-field Langevin: noisy GD, the particle counterpart of entropic JKO (MATH.md).

θ ← θ + h v(θ) + √(2Dh) ξ_k (Euler–Maruyama for dθ = v dt + √(2D) dB, whose law solves
∂_t μ = div(μ ∇F′(μ)) + D Δμ); ξ_k = normal(fold_in(key_s, k)) with k the global step
index, so resumed runs draw the same noise. D = 0 is exactly GD. ``sphere``: the noise is
projected on the tangent space, then the step is retracted. A run is S independent seeds
of m interacting particles each (state (S·m, D), seed s in rows s·m..(s+1)·m): the measure
is their pool, and every record reports the seeds' standard error of F and of f
(``loss_se``, ``pred_se``), the noise floor of every gap to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_positive,
)
from mfjko.methods.gd import ReferenceInit, particle_velocity
from mfjko.objective import loss_from_features

__all__ = ["Langevin", "LangevinConfig", "METHOD", "seed_keys", "seed_statistics"]


def seed_keys(key, seeds: int):
    """(S, 2) PRNG keys of the seeds.

    ``key`` itself for seed 0 (a one-seed run draws the noise it always drew),
    ``fold_in(key, s)`` for s ≥ 1.
    """
    return jnp.stack([key] + [jax.random.fold_in(key, s) for s in range(1, seeds)])


@partial(jax.jit, static_argnames=("param", "seeds"))
def _langevin_advance(param, theta, X, y, lam, h, diffusion, keys, k_start, n, seeds):
    scale = jnp.sqrt(2.0 * diffusion * h)
    theta = theta.reshape(seeds, -1, theta.shape[-1])

    def one_seed(key, th0):
        def body(i, th):
            xi = jax.random.normal(jax.random.fold_in(key, k_start + i), th.shape, th.dtype)
            drift = h * particle_velocity(param, th, X, y, lam)
            return param.project(th + drift + scale * param.tangent(th, xi))

        return lax.fori_loop(0, n, body, th0)

    return jax.vmap(one_seed)(keys, theta).reshape(-1, theta.shape[-1])


@partial(jax.jit, static_argnames=("param", "seeds"))
def _seed_figures(param, theta, X, y, lam, seeds):
    th = theta.reshape(seeds, -1, theta.shape[-1])
    m = th.shape[1]
    w = jnp.full((m,), 1.0 / m)

    def one_seed(t):  # F (the one formula, loss_from_features) and f of one seed's measure
        phi = param.features(t, X)
        return loss_from_features(phi, w, y, param.potentials(t), lam), phi @ w

    return jax.vmap(one_seed)(th)  # (S,), (S, n)


def seed_statistics(values) -> tuple[float, float]:
    """(mean, standard error) of per-seed values (S,) (SE = std/√S with ddof 1; NaN at S = 1)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()), math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


@dataclass(frozen=True)
class Langevin(Stepper):
    """Mean-field Langevin at diffusion D.

    Attributes:
      h: time step (mean-field time).
      diffusion: D ≥ 0 (units: Θ-distance² per unit time).
      key: JAX PRNG key (or an int seed) of the noise.
      seeds: S, the number of independent seeds the state holds (its rows split in S
        equal blocks of interacting particles).

    Recorded at every record (the noise floor of the gaps to Langevin): ``loss_se``, the
    seeds' standard error of F, and ``pred_se``, the RMS over the data of the standard
    error of f (NaN with one seed).
    """

    name = "langevin"
    h: float = 0.01
    diffusion: float = 0.0
    key: object = field(default=0, repr=False)
    seeds: int = 1

    def __post_init__(self):
        check_positive(self.h, "h")
        D = float(self.diffusion)
        if not math.isfinite(D) or D < 0:
            raise ValueError(f"diffusion D must be finite and >= 0, got {D}")
        if isinstance(self.key, int):
            object.__setattr__(self, "key", jax.random.PRNGKey(self.key))
        if int(self.seeds) != self.seeds or self.seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1, got {self.seeds!r}")

    def init(self, problem, initial) -> ParticleState:
        """Particles (S·m, D): S seeds of m particles each, stacked."""
        state = super().init(problem, initial)
        if state.theta.shape[0] % self.seeds:
            raise ValueError(f"{state.theta.shape[0]} particles do not split into "
                             f"{self.seeds} seeds of equal size")
        return state

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` Euler–Maruyama steps of h: (new state, empty Diagnostics)."""
        p = state.problem
        theta = _langevin_advance(p.param, jnp.asarray(state.theta), p.X, p.y, p.lam,
                                  jnp.float64(self.h), jnp.float64(self.diffusion),
                                  seed_keys(self.key, self.seeds), jnp.int32(state.k),
                                  jnp.int32(n_steps), self.seeds)
        return ParticleState(p, theta, state.k + n_steps), Diagnostics()

    def record_diagnostics(self, state) -> dict[str, float]:
        """``loss_se`` and ``pred_se``: the seeds' standard errors of F and of f."""
        p = state.problem
        loss, f = _seed_figures(p.param, jnp.asarray(state.theta), p.X, p.y, p.lam,
                                self.seeds)
        _, loss_se = seed_statistics(loss)
        if self.seeds < 2:
            return {"loss_se": math.nan, "pred_se": math.nan}
        f = np.asarray(f)
        pred_se = float(np.sqrt(np.mean(f.var(axis=0, ddof=1) / self.seeds)))
        return {"loss_se": loss_se, "pred_se": pred_se}


class LangevinConfig(BaseModel):
    """``methods.langevin``: give D, or ``match_jko: true`` for D = ε/(4τ) of the jko method.

    D = ε/(4τ) is the diffusion entropic JKO adds (MATH.md). ``m`` particles per seed and
    ``seeds`` independent seeds (their standard error is every gap's noise floor);
    ``init``: where the particles are drawn from — ``grid``: the grid method's initial
    measure (jko: p0's atoms at the grid points; wfr_jko: ν₀'s conic view; the measure the
    JKO starts from), ``particles``: the initial law; ``auto``: grid when the run has one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    D: float | None = Field(None, ge=0, allow_inf_nan=False)
    match_jko: bool = False
    m: int = Field(100_000, ge=1)
    seeds: int = Field(4, ge=1)
    init: ReferenceInit = "auto"

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
    return Langevin(h=mc.h, diffusion=setup.cfg.langevin_D(), key=setup.keys["langevin"],
                    seeds=mc.seeds)


def _initial(mc: LangevinConfig, setup):
    """S·m particles: ``mc.seeds`` independent draws of ``mc.m`` (see :class:`LangevinConfig`)."""
    return setup.sample_particles(mc.init, mc.m * mc.seeds, setup.keys["langevin_init"])


METHOD = MethodInfo("langevin", Langevin, LangevinConfig, _build, color="tab:orange",
                    linestyle="-.", summary="mean-field Langevin at diffusion D",
                    initial=_initial)
