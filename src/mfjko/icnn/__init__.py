"""Meshless JKO steps parametrized by input-convex neural networks (docs/MATH.md).

μ_{k+1} = (∇ψ_k)#μ_k on samples, ψ_k an ICNN trained (optax) on the JKO functional of
F + D ∫μ log μ. ``network``: the convex potential; ``step``: one step, its options,
log-det estimators and checks. The method (stepper, config) is
:mod:`mfjko.methods.icnn_jko`.
"""

from mfjko.icnn.network import ICNN, init_icnn, potential_grad, potential_hessian
from mfjko.icnn.step import (
    ConvergenceWarning,
    ICNNOptions,
    ICNNStepDiagnostics,
    ProblemEnergy,
    QuadraticEnergy,
    icnn_jko_step,
    icnn_prox_step,
    init_potential,
    jko_loss,
    logdet_exact,
    logdet_lanczos,
    resolve_entropy,
)

__all__ = [
    "ICNN",
    "init_icnn",
    "potential_grad",
    "potential_hessian",
    "ICNNOptions",
    "ICNNStepDiagnostics",
    "ConvergenceWarning",
    "icnn_jko_step",
    "icnn_prox_step",
    "ProblemEnergy",
    "QuadraticEnergy",
    "init_potential",
    "jko_loss",
    "logdet_exact",
    "logdet_lanczos",
    "resolve_entropy",
]
