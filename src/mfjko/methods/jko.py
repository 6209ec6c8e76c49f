r"""Entropic JKO on a fixed grid (MATH.md "Entropic JKO"; Peyré 2015) as a stepper.

p_{k+1} = argmin_{p ∈ simplex} W_ε(p, p_k) + 2τF(p), one step advancing t by τ, solved by
:func:`mfjko.jko.solve_step` (log-domain generalized Sinkhorn, Anderson acceleration,
warm-started from the previous step's KL-prox dual). The config section ``methods.jko``
is τ, ε, the grid and every field of :class:`~mfjko.jko.JKOSolverOptions` (generated
from it, so a new solver option is one edit there; ``debias: true`` selects the debiased
step, MATH.md "Debiased entropic JKO").
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
from pydantic import create_model, model_validator

from mfjko.geometry.spec import GridSpec  # re-exported: its historical home
from mfjko.jko.solver import (
    JKODiagnostics,
    JKOSolverOptions,
    JKOState,
    check_grid_inputs,
    solve_step,
    solve_step_batch,
)
from mfjko.methods.base import (
    Diagnostics,
    GridMethodConfig,
    MethodInfo,
    Stepper,
    check_positive,
    merge_steps,
)
from mfjko.parametrizations import get as get_param
from mfjko.problem import GridProblem

__all__ = ["EntropicJKO", "EntropicJKOBatch", "JKOStepperState", "JKOConfig", "GridSpec",
           "METHOD"]

_NAMES = [f.name for f in dataclasses.fields(JKODiagnostics)]


@dataclass(frozen=True)
class JKOStepperState:
    """State of a JKO run: the grid problem, weights p (N,), warm start and step count k.

    ``solver`` is the solver's warm-start :class:`~mfjko.jko.JKOState` (None before the
    first step).
    """

    problem: GridProblem
    p: object
    solver: JKOState | None = None
    k: int = 0


@dataclass(frozen=True)
class EntropicJKO(Stepper):
    """Entropic JKO steps of length τ on the grid of a :class:`~mfjko.problem.GridProblem`.

    Attributes:
      tau: JKO step (mean-field time).
      eps: entropic ε (θ-distance² units); entropy acts as diffusion D = ε/(4τ).
      options: the solver's :class:`~mfjko.jko.JKOSolverOptions`.
      on_step: optional ``on_step(k, t, p, diag_dict)`` after every step (k counted from
        t = 0).

    Interval diagnostics: the last step's :class:`~mfjko.jko.JKODiagnostics` (NaN at the
    initial record); per-step diagnostics: all of them for every step.
    """

    name = "jko"
    kind = "grid"
    diagnostics = {k: float("nan") for k in _NAMES}
    tau: float = 0.05
    eps: float = 0.01
    options: JKOSolverOptions = field(default_factory=JKOSolverOptions)
    on_step: Callable | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        check_positive(self.tau, "tau")
        check_positive(self.eps, "eps")

    @property
    def step_size(self) -> float:
        """The JKO step τ (mean-field time)."""
        return float(self.tau)

    @property
    def diffusion(self) -> float:
        """D = ε/(4τ), the diffusion the entropy adds (MATH.md); 0 for the debiased step.

        The debiased step (``options.debias``) removes the first-order diffusion; what is
        left is an O(ε²/τ) Fisher-type term (MATH.md "Debiased entropic JKO").
        """
        return 0.0 if self.options.debias else self.eps / (4.0 * self.tau)

    def init(self, problem: GridProblem, initial) -> JKOStepperState:
        """Validated initial weights p (N,) on the problem's grid, no warm start, k = 0."""
        p = jnp.asarray(initial, jnp.float64)
        check_grid_inputs(problem, p, self.tau, self.eps)
        return JKOStepperState(problem, p, None, 0)

    def advance(self, state: JKOStepperState, n_steps: int):
        """Make ``n_steps`` warm-started JKO steps of τ; interval figures are the last step's."""
        p, solver, reports = state.p, state.solver, []
        for i in range(n_steps):
            p, solver, diag = solve_step(state.problem, p, self.tau, self.eps, solver,
                                         self.options)
            reports.append(diag.as_dict())
            if self.on_step is not None:
                k = state.k + i + 1
                self.on_step(k, k * self.tau, p, reports[-1])
        steps = merge_steps(reports)
        interval = {k: float(v[-1]) for k, v in steps.items()}
        return JKOStepperState(state.problem, p, solver, state.k + n_steps), \
            Diagnostics(interval, steps)

    def measure(self, state: JKOStepperState):
        """(grid points (N, D), weights p (N,)) of the state's grid measure."""
        return np.asarray(state.problem.geom.points), np.asarray(state.p)

    def save(self, state: JKOStepperState) -> dict[str, np.ndarray]:
        """The weights p, step count k and, after a first step, the warm-start duals g, f, psi."""
        out = {"p": np.asarray(state.p), "k": np.asarray(state.k)}
        if state.solver is not None:
            out.update(g=np.asarray(state.solver.g), f=np.asarray(state.solver.f),
                       psi=np.asarray(state.solver.psi))
        return out

    def restore(self, problem: GridProblem, arrays: dict) -> JKOStepperState:
        """Inverse of :meth:`save`: a state on ``problem`` from checkpoint arrays."""
        solver = None
        if "g" in arrays:
            solver = JKOState(g=jnp.asarray(arrays["g"]), f=jnp.asarray(arrays["f"]),
                              psi=jnp.asarray(arrays["psi"]))
        return JKOStepperState(problem, jnp.asarray(arrays["p"]), solver,
                               int(arrays.get("k", 0)))

    def meta(self) -> dict:
        """τ, ε, the diffusion D (ε/(4τ); 0 when debiased) and ``debias``: trajectory meta."""
        return {"tau": self.tau, "eps": self.eps, "diffusion": self.diffusion,
                "debias": bool(self.options.debias)}


@dataclass(frozen=True)
class EntropicJKOBatch(EntropicJKO):
    """B entropic JKO runs on one grid with one τ and per-member ε (``eps_batch``).

    They advance together by :func:`mfjko.jko.solve_step_batch` (one compiled program;
    sweeps use it). The state's weights are (B, N); interval diagnostics are (B,) arrays,
    per-step diagnostics (B, n_steps).
    """

    eps_batch: tuple = ()

    def __post_init__(self):
        check_positive(self.tau, "tau")
        if not self.eps_batch:
            raise ValueError("eps_batch needs at least one ε")
        for e in self.eps_batch:
            check_positive(e, "eps")

    @property
    def size(self) -> int:
        """Number B of batch members (one per ε)."""
        return len(self.eps_batch)

    def init(self, problem: GridProblem, initial) -> JKOStepperState:
        """Initial weights broadcast to (B, N), each member validated, no warm start."""
        p = jnp.asarray(initial, jnp.float64)
        p = jnp.broadcast_to(p, (self.size,) + p.shape[-1:])
        for e in self.eps_batch:
            check_grid_inputs(problem, p[0], self.tau, e)
        return JKOStepperState(problem, p, None, 0)

    def advance(self, state: JKOStepperState, n_steps: int):
        """Make ``n_steps`` batched JKO steps of τ; diagnostics are (B,) and (B, n_steps) arrays."""
        p, solver, reports = state.p, state.solver, []
        eps = jnp.asarray(self.eps_batch)
        for _ in range(n_steps):
            p, solver, diag = solve_step_batch(state.problem, p, self.tau, eps, solver,
                                               self.options)
            reports.append({f: np.asarray(getattr(diag, f), dtype=np.float64)
                            for f in _NAMES})
        steps = {k: np.stack([r[k] for r in reports], axis=1) for k in _NAMES}  # (B, n)
        interval = {k: v[:, -1] for k, v in steps.items()}
        return JKOStepperState(state.problem, p, solver, state.k + n_steps), \
            Diagnostics(interval, steps)

    def member(self, i: int) -> EntropicJKO:
        """Member i as a plain stepper (same τ and options, its ε)."""
        return EntropicJKO(tau=self.tau, eps=self.eps_batch[i], options=self.options)


def _solver_fields() -> dict:
    """The pydantic fields of every :class:`JKOSolverOptions` field, with its default."""
    hints = typing.get_type_hints(JKOSolverOptions)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(JKOSolverOptions)}


class _JKOBase(GridMethodConfig):
    # tau, eps (defaults 0.05, 0.01): GridMethodConfig's
    grid: GridSpec

    @model_validator(mode="after")
    def _valid_options(self):
        self.solver_options()  # JKOSolverOptions checks its own values
        return self

    def solver_options(self) -> JKOSolverOptions:
        return JKOSolverOptions(**{k: getattr(self, k) for k in _solver_fields()})

    def spacing(self, d: int, parametrization: str | None = None) -> float:
        """δ of the grid the parametrization builds from ``grid`` for d inputs."""
        return float(self._geometry(d, parametrization).spacing)

    def grid_size(self, d: int | None = None, parametrization: str | None = None) -> int:
        """Number of points of the grid the parametrization builds from ``grid``."""
        return int(self._geometry(d, parametrization).size)

    def _geometry(self, d, parametrization):
        if d is None or parametrization is None:
            raise ValueError("the grid of methods.jko needs the input dimension d and the "
                             "parametrization")
        return get_param(parametrization).build_grid(self.grid, d)


#: ``methods.jko``: τ, ε, the grid, and the solver options (JKOSolverOptions' fields)
JKOConfig = create_model("JKOConfig", __base__=_JKOBase,
                         __doc__="``methods.jko``: entropic JKO on a fixed grid: "
                                 "p_{k+1} = argmin W_ε(p, p_k) + 2τF(p).",
                         **_solver_fields())


def _build(mc, setup) -> EntropicJKO:
    return EntropicJKO(tau=mc.tau, eps=mc.eps, options=mc.solver_options())


METHOD = MethodInfo("jko", EntropicJKO, JKOConfig, _build, color="tab:red",
                    summary="entropic JKO on a fixed grid of neurons (Peyré 2015)")
