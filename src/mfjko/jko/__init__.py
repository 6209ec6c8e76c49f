"""Entropic JKO on fixed grids (MATH.md "Entropic JKO"; Peyré 2015).

- :func:`entropic_jko_step` — dense NumPy reference for one step;
- :func:`jko_step` — the production log-domain generalized Sinkhorn on any geometry (jit,
  warm start, Anderson acceleration, optional ε-scaling);
- :func:`kl_prox_newton` — the KL-prox of F by Newton on its n-dimensional dual;
- :class:`SinkhornOptions`, :class:`StepDiagnostics` — the options and diagnostics bases of
  the balanced and the WFR (:mod:`mfjko.wfr`) steps.

The time loop ``run_jko`` drives the stepper of :mod:`mfjko.methods.jko`, which imports
this package: it lives one floor up, in :mod:`mfjko.grid_runs`.
"""

from mfjko.jko.dense import ConvergenceError, entropic_jko_step
from mfjko.jko.prox import kl_prox_newton
from mfjko.jko.solver import (
    JKODiagnostics,
    JKOSolverOptions,
    JKOState,
    grid_objective,
    jko_step,
)
from mfjko.jko.step_types import SinkhornOptions, StepDiagnostics

__all__ = [
    "ConvergenceError",
    "entropic_jko_step",
    "kl_prox_newton",
    "JKODiagnostics",
    "JKOSolverOptions",
    "JKOState",
    "SinkhornOptions",
    "StepDiagnostics",
    "grid_objective",
    "jko_step",
]
