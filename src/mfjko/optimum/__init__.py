r"""The global optimum F* of the mean-field objective, and the orthogonal-input limit.

F* = min over signed measures ν on S^{d−1} of (1/(2n))‖Φν − y‖² + λ‖ν‖_TV (MATH.md
"Global optimum"), by (a) a Lasso on a direction set (:mod:`.lasso`), (b) the exact
Pilanci–Ergen cone program over the chambers of the data's arrangement (:mod:`.exact`,
:mod:`.arrangements`), (c) a refined local version for d > 2 (:mod:`.reference`), with
certified duality gaps (:mod:`.convex`); :func:`reference_value` picks one and says why.
:mod:`.orthogonal`: the closed-form limit of Boursier et al. (2022).
"""

from mfjko.geometry.sphere import circle_directions, sphere_directions
from mfjko.optimum.arrangements import activation_patterns, chamber_count_bound
from mfjko.optimum.convex import (
    OptimumResult,
    direction_features,
    dual_sup,
    dual_value,
    neuron_measure,
    primal_value,
)
from mfjko.optimum.exact import optimum_exact
from mfjko.optimum.lasso import kink_directions, optimum_circle, optimum_directions
from mfjko.optimum.orthogonal import orthogonal_limit_predictor, orthogonal_limit_vectors
from mfjko.optimum.reference import ReferenceValue, optimum_refined, reference_value

__all__ = [
    "OptimumResult",
    "ReferenceValue",
    "circle_directions",
    "sphere_directions",
    "direction_features",
    "primal_value",
    "dual_value",
    "dual_sup",
    "activation_patterns",
    "chamber_count_bound",
    "optimum_directions",
    "optimum_circle",
    "kink_directions",
    "optimum_exact",
    "optimum_refined",
    "reference_value",
    "neuron_measure",
    "orthogonal_limit_vectors",
    "orthogonal_limit_predictor",
]
