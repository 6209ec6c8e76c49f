r"""The stepper interface every method implements (in the spirit of diffrax's solvers).

A stepper is an immutable settings object. ``init(problem, initial)`` returns a state
(the problem included, so ``advance`` needs nothing else); ``advance(state, n_steps)``
makes n steps of length ``step_size`` on the mean-field time axis and returns the new
state and its :class:`Diagnostics`. ``measure(state)`` is the weighted point set, and
``save``/``restore`` turn a state into arrays and back (checkpoints). The loop, the
records, the trajectory and resume belong to :func:`mfjko.driver.drive`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Diagnostics", "Stepper", "ParticleState", "WeightedParticles", "MethodInfo",
           "GridMethodConfig", "rms_speed", "check_positive", "check_int", "merge_steps",
           "particle_masses"]


@dataclass
class Diagnostics:
    """What one ``advance`` call reports.

    Attributes:
      interval: figures summarizing the interval (recorded with the state at its end).
      steps: per-step figures, each an array (n_steps,) (empty when the method has none).
    """

    interval: dict[str, float] = field(default_factory=dict)
    steps: dict[str, np.ndarray] = field(default_factory=dict)


class WeightedParticles(NamedTuple):
    """A weighted particle measure Σ_i p_i δ_{θ_i}: the initial state of a matched reference.

    ``points`` (m, D), ``weights`` (m,) ≥ 0 (fixed along the flow: particles carry their
    mass). The grid's initial measure as particles at the grid points is one
    (:meth:`mfjko.runner.setup.Setup.grid_particles`).
    """

    points: Any
    weights: Any


@dataclass(frozen=True)
class ParticleState:
    """State of a particle method: the problem, particles θ (m, D), the step count k, weights.

    k is the global step count (steps since t = 0); it keys Langevin's and sliced W₂'s
    random draws. ``weights`` (m,) are the particles' masses (None: uniform 1/m); only
    methods with ``weighted = True`` accept them.
    """

    problem: Any
    theta: Any
    k: int = 0
    weights: Any = None


def particle_masses(state) -> np.ndarray:
    """The masses (m,) of a particle state: its ``weights``, or 1/m each when uniform.

    ``state`` has ``theta`` (m, D) and may lack ``weights`` (other methods' states, e.g.
    ICNN JKO's, are uniform).
    """
    weights = getattr(state, "weights", None)
    if weights is not None:
        return np.asarray(weights)
    m = np.shape(state.theta)[0]
    return np.full(m, 1.0 / m)


@dataclass(frozen=True)
class Stepper:
    """Base class of the methods (module docstring).

    Subclasses set ``name``, ``kind`` ("particles" or "grid"), ``diagnostics`` (name →
    value at the initial record) and implement :meth:`init` and :meth:`advance`.
    """

    name: ClassVar[str] = "base"
    kind: ClassVar[str] = "particles"
    #: interval diagnostics and their value at the initial record (no step made yet)
    diagnostics: ClassVar[dict[str, float]] = {}
    #: whether the method accepts weighted particles (:class:`WeightedParticles`)
    weighted: ClassVar[bool] = False

    @property
    def step_size(self) -> float:
        """Mean-field time advanced by one step."""
        return float(self.h)

    def init(self, problem, initial) -> ParticleState:
        """Particles: validated θ (m, D) of the problem's Θ, or :class:`WeightedParticles`.

        Weighted particles are accepted by methods with ``weighted = True`` only (others
        raise ValueError: their steps assume equal masses).
        """
        if isinstance(initial, WeightedParticles):
            if not self.weighted:
                raise ValueError(f"{self.name} steps uniform particles; it cannot start from "
                                 "weighted particles (set methods.<name>.init: particles)")
            theta = problem.check_particles(initial.points)
            w = np.asarray(initial.weights, dtype=np.float64)
            if w.shape != (theta.shape[0],) or not np.all(np.isfinite(w)) or (w < 0).any():
                raise ValueError(f"weights must be finite, >= 0 and of shape "
                                 f"({theta.shape[0]},), got shape {w.shape}")
            return ParticleState(problem, theta, 0, w)
        return ParticleState(problem, problem.check_particles(initial), 0)

    def advance(self, state, n_steps: int) -> tuple[Any, Diagnostics]:
        """Make ``n_steps`` steps of ``step_size``; return (new state, :class:`Diagnostics`)."""
        raise NotImplementedError

    def record_diagnostics(self, state) -> dict[str, float]:
        """Figures of a state recorded at every record, the initial one included."""
        return {}

    def measure(self, state) -> tuple[np.ndarray, np.ndarray]:
        """(support (K, D), weights (K,)) of the state's measure (uniform unless weighted)."""
        return np.asarray(state.theta), particle_masses(state)

    def save(self, state) -> dict[str, np.ndarray]:
        """The state's arrays for a checkpoint (the problem is rebuilt from the config)."""
        return {f.name: np.asarray(getattr(state, f.name)) for f in dataclasses.fields(state)
                if f.name != "problem" and getattr(state, f.name) is not None}

    def restore(self, problem, arrays: dict) -> Any:
        """Inverse of :meth:`save`."""
        w = arrays.get("weights")
        return ParticleState(problem, np.asarray(arrays["theta"]), int(arrays.get("k", 0)),
                             None if w is None else np.asarray(w))

    def meta(self) -> dict:
        """Settings recorded in a trajectory's meta."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.repr and not callable(getattr(self, f.name))}


@dataclass(frozen=True)
class MethodInfo:
    """A registry entry (:data:`mfjko.methods.REGISTRY`) for one method.

    Everything the runner, the config schema and the report need to know about a method.

    Attributes:
      name: the method's key in configs and results.
      stepper: its Stepper class.
      config: the pydantic model of ``methods.<name>`` (None: not runnable from configs).
      build: ``build(config_section, setup) -> Stepper`` (setup: the run's
        :class:`mfjko.runner.setup.Setup`).
      color: matplotlib colour in figures.
      linestyle: matplotlib line style in figures.
      summary: one line for docs.
      directional: its measure is a directional (WFR) one: a run with it records
        ``direction_gap`` unless ``metrics.direction_gap`` says otherwise.
      initial: ``initial(config_section, setup) -> initial state input`` (None: the
        setup's initial particles or grid weights, resolved by the section's ``init``).
    """

    name: str
    stepper: type
    config: type | None
    build: Callable | None
    color: str
    linestyle: str = "-"
    summary: str = ""
    directional: bool = False
    initial: Callable | None = None

    @property
    def kind(self) -> str:
        """"particles" or "grid"."""
        return self.stepper.kind


def rms_speed(problem, theta) -> float:
    """(mean_i ‖v_i‖²)^{1/2}: the RMS mean-field GD speed of particles θ (m, D) at t = 0.

    v_i = −∇F′(μ₀)(θ_i) (:meth:`mfjko.problem.MeanFieldProblem.particle_velocity`); in Θ
    units per unit of mean-field time.
    """
    v = np.asarray(problem.particle_velocity(theta))
    return float(np.sqrt(np.mean(np.sum(v * v, axis=1))))


class GridMethodConfig(BaseModel):
    r"""The config section of a grid method: JKO steps τ, entropy ε, a grid of spacing δ.

    What sweeps, the runner and the report read off any grid method (``jko``, ``wfr_jko``):
    τ, ε, :meth:`spacing` δ, :meth:`grid_size`, the initial speed V₀ its Courant number
    c = τV₀/δ is measured with (:meth:`initial_speed`) and the dimensionless
    :meth:`facts`. A subclass may redeclare ``tau`` and ``eps`` with its own defaults
    (their place among the fields stays first).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: the settings :meth:`initial_particles` depends on; empty: the method gives none
    #: (a sweep shares its particle references only between points that agree on them)
    initial_measure_fields: ClassVar[tuple[str, ...]] = ()
    tau: float = Field(0.05, gt=0, allow_inf_nan=False)
    eps: float = Field(0.01, gt=0, allow_inf_nan=False)

    def step_size(self) -> float:
        """The JKO step τ (mean-field time)."""
        return self.tau

    def initial_particles(self, problem, theta0, law) -> tuple[WeightedParticles, float]:
        """The method's initial measure as weighted particles of Θ, and its own F(0).

        For a grid method that does not run on the run's grid over Θ (``wfr_jko``): the
        run's grid-matched references start from these particles when there is no such
        grid (:meth:`mfjko.runner.setup.Setup.grid_particles`). Arguments as
        :meth:`initial_speed`. Only methods with :attr:`initial_measure_fields` give one.
        """
        raise NotImplementedError(f"{type(self).__name__} gives no initial particles")

    def spacing(self, d: int, parametrization: str | None = None) -> float:
        """δ of the grid for d inputs (bias included) and the run's parametrization."""
        raise NotImplementedError

    def grid_size(self, d: int | None = None, parametrization: str | None = None) -> int:
        """Number of grid points for d inputs and the run's parametrization."""
        raise NotImplementedError

    def grid_shape(self) -> str:
        """How the grid is sized in the config, for messages (e.g. ``n_dirs = 512``)."""
        return f"{self.grid_size()} points"

    def initial_speed(self, problem, theta0, law) -> float:
        """V₀ of the Courant number: by default the RMS GD speed :func:`rms_speed` of θ₀.

        ``problem``: the run's MeanFieldProblem; ``theta0`` (m, D): its initial particles;
        ``law``: its initial law (methods that lift the law, e.g. wfr_jko, use it).
        """
        return rms_speed(problem, theta0)

    def facts(self, delta: float, speed: float, grid_size: int) -> dict:
        """δ, τ, ε, D = ε/(4τ), ε/δ², V₀, c = τV₀/δ and N: a sweep point's facts."""
        tau, eps = self.tau, self.eps
        return dict(delta=delta, tau=tau, eps=eps, D=eps / (4 * tau),
                    eps_over_delta2=eps / delta**2, speed0=speed, courant=tau * speed / delta,
                    grid_size=grid_size)


def check_positive(value, name: str) -> float:
    """float(value) if finite and > 0, else ValueError naming it."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def check_int(value, name: str, minimum: int = 1) -> int:
    """int(value) if it is an integer ≥ minimum, else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | float) or (
        int(value) != value or value < minimum
    ):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def merge_steps(reports: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Per-step dicts of scalars → dict of arrays (n_steps,)."""
    if not reports:
        return {}
    return {k: np.asarray([r[k] for r in reports], dtype=np.float64) for k in reports[0]}
