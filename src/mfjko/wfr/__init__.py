"""Unbalanced (Wasserstein–Fisher–Rao) entropic JKO on a grid of directions.

The maths: docs/MATH.md "Unbalanced JKO" (sections WFR §1–§6).

- :mod:`mfjko.wfr.directions` — direction grids, cone cost, signed features, the
  neuron-measure view of a WFR grid measure, the lifted objective G;
- :func:`wfr_jko_step_dense` — dense NumPy reference for one step;
- :func:`wfr_kernel`, :func:`wfr_jko_step` — the production JAX solver (log domain, warm
  start, Anderson acceleration);
- :mod:`mfjko.wfr.conic` — conic particle GD steps / the WFR particle flow of balanced
  neurons.

The time loops are :func:`mfjko.driver.drive`'s: :func:`mfjko.grid_runs.run_wfr_jko` and
:func:`mfjko.particles.conic_gradient_descent` (the steppers live in :mod:`mfjko.methods`).
"""

from mfjko.wfr.conic import (
    balanced_to_conic,
    conic_flow,
    conic_objective,
    conic_steps,
    conic_to_balanced,
    conic_velocity,
)
from mfjko.wfr.dense import ConvergenceError, DenseWFRResult, wfr_jko_step_dense
from mfjko.wfr.directions import (
    as_neuron_measure,
    bin_particles,
    circle_directions,
    cone_cost,
    direction_features,
    geodesic_distance,
    lifted_objective,
    signed_features,
    sphere_directions,
)
from mfjko.wfr.solver import (
    WFRDiagnostics,
    WFRKernel,
    WFRSolverOptions,
    WFRState,
    direction_speed,
    drift_ratio,
    wfr_jko_step,
    wfr_kernel,
)

__all__ = [
    "balanced_to_conic",
    "conic_flow",
    "conic_objective",
    "conic_steps",
    "conic_to_balanced",
    "conic_velocity",
    "ConvergenceError",
    "DenseWFRResult",
    "wfr_jko_step_dense",
    "as_neuron_measure",
    "bin_particles",
    "circle_directions",
    "cone_cost",
    "direction_features",
    "geodesic_distance",
    "lifted_objective",
    "signed_features",
    "sphere_directions",
    "WFRDiagnostics",
    "WFRKernel",
    "WFRSolverOptions",
    "WFRState",
    "direction_speed",
    "drift_ratio",
    "wfr_jko_step",
    "wfr_kernel",
]
