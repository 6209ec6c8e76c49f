"""The options type and the diagnostics type every grid JKO solver shares (issue 19).

One Sinkhorn loop (:func:`mfjko.jko.sinkhorn.sinkhorn_loop`) runs the balanced step of
:mod:`mfjko.jko.solver` and the WFR step of :mod:`mfjko.wfr.solver`; in the OTT style its
settings are one type, :class:`SinkhornOptions` (the shared fields, validated once), which
each problem extends (:class:`~mfjko.jko.JKOSolverOptions` with ε-scaling,
:class:`~mfjko.wfr.WFRSolverOptions` with nothing), and its per-step figures one type,
:class:`StepDiagnostics` (the shared figures, ``as_dict``), which each solver's diagnostics
extend with their own figures. Field order is output order (config keys, metrics columns,
trajectories), so each subclass keeps its historical order: see the two classes.
"""

# no ``from __future__ import annotations``: equinox reads AbstractVar from real annotations
from dataclasses import dataclass, fields

import equinox as eqx
import jax
import numpy as np
from equinox import AbstractVar

Array = jax.Array

__all__ = ["SinkhornOptions", "StepDiagnostics"]


@dataclass(frozen=True)
class _Caps:
    """The tolerances and iteration caps, the first fields of every options class.

    A class of its own so that a subclass may put its fields between these and the rest
    of :class:`SinkhornOptions` (a dataclass lists the fields of its bases from the last
    base of its MRO up): ``class JKOSolverOptions(SinkhornOptions, _EpsScaling)`` with
    ``_EpsScaling(_Caps)`` keeps the order tol … newton_max_iter, eps_scaling …,
    anderson_depth …, the order of the ``methods.jko`` config keys.
    """

    tol: float = 1e-9
    max_iter: int = 20_000
    newton_tol: float = 1e-12
    newton_max_iter: int = 50


@dataclass(frozen=True)
class SinkhornOptions(_Caps):
    """Settings of the one Sinkhorn loop, shared by every grid JKO step.

    Hashable (static under jit); the subclasses add their problem's settings and say what
    each field means for their problem.

    tol: stop when the (problem's) second-marginal error ≤ tol.
    max_iter: Sinkhorn iteration cap.
    newton_tol: the prox's Newton stops at ‖∇H‖₂ ≤ newton_tol·max(1, ‖y‖₂).
    newton_max_iter: Newton iteration cap per prox.
    anderson_depth: m ≥ 2 mixes the last m iterates of the prox dual g (Anderson
        acceleration); 0 gives plain iterations.
    on_failure: "raise" (ConvergenceError) or "warn" (warnings.warn + converged=False)
        when a step misses tol or produces non-finite values.
    debias: solve the debiased step (the entropy's first-order blur removed).
    debias_anderson_depth: the Anderson depth of the debiased fixed point (on log a);
        ``anderson_depth`` applies to the standard step only.
    """

    anderson_depth: int = 6
    on_failure: str = "raise"
    debias: bool = False
    debias_anderson_depth: int = 10

    def __post_init__(self):
        if not (self.tol > 0):
            raise ValueError(f"tol must be positive, got {self.tol}")
        if self.max_iter < 1 or self.newton_max_iter < 1:
            raise ValueError("max_iter and newton_max_iter must be ≥ 1")
        if not (self.newton_tol > 0):
            raise ValueError(f"newton_tol must be positive, got {self.newton_tol}")
        if self.anderson_depth < 0:
            raise ValueError(f"anderson_depth must be ≥ 0, got {self.anderson_depth}")
        if self.debias_anderson_depth < 0:
            raise ValueError("debias_anderson_depth must be ≥ 0, got "
                             f"{self.debias_anderson_depth}")
        if self.on_failure not in ("raise", "warn"):
            raise ValueError(f"on_failure must be 'raise' or 'warn', got {self.on_failure!r}")


class StepDiagnostics(eqx.Module):
    """Per-step figures (scalars) every grid JKO solver reports.

    sinkhorn_iterations, marginal_error (at exit), newton_total and newton_max (prox
    Newton iterations), newton_residual (largest final ‖∇H‖), objective (the training
    objective of the new measure), step_objective (the value the step minimized),
    converged (bool).

    The figures are abstract (:class:`equinox.AbstractVar`): each subclass declares them
    with its own, in the order of its metrics columns (its fields' order is ``as_dict``'s);
    a subclass that misses one cannot be instantiated.
    """

    sinkhorn_iterations: AbstractVar[Array]
    marginal_error: AbstractVar[Array]
    newton_total: AbstractVar[Array]
    newton_max: AbstractVar[Array]
    newton_residual: AbstractVar[Array]
    objective: AbstractVar[Array]
    step_objective: AbstractVar[Array]
    converged: AbstractVar[Array]

    def as_dict(self) -> dict[str, float]:
        """The figures as a dict of Python scalars, keyed by field name, in field order."""
        return {f.name: np.asarray(getattr(self, f.name)).item() for f in fields(self)}
