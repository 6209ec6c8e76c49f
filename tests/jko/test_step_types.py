"""The options and diagnostics bases of the grid JKO solvers (issue 19): one validation,
one ``as_dict``, and the field orders the config keys and metrics columns depend on."""

from dataclasses import fields

import jax
import pytest

from mfjko.jko import JKODiagnostics, JKOSolverOptions, SinkhornOptions, StepDiagnostics
from mfjko.wfr import WFRDiagnostics, WFRSolverOptions

SHARED = ["tol", "max_iter", "newton_tol", "newton_max_iter", "anderson_depth", "on_failure",
          "debias", "debias_anderson_depth"]


def _names(cls):
    return [f.name for f in fields(cls)]


def test_field_orders_are_the_historical_ones():
    assert _names(WFRSolverOptions) == _names(SinkhornOptions) == SHARED
    assert _names(JKOSolverOptions) == SHARED[:4] + ["eps_scaling", "eps_start_ratio",
                                                     "stage_tol"] + SHARED[4:]
    head = ["sinkhorn_iterations", "marginal_error", "newton_total", "newton_max",
            "newton_residual"]
    assert _names(JKODiagnostics) == head + ["objective", "step_objective", "mass_error",
                                             "converged", "drift_ratio"]
    assert _names(WFRDiagnostics) == head + ["exact_lse", "objective", "step_objective",
                                             "mass_plus", "mass_minus", "mass_change",
                                             "converged"]


@pytest.mark.parametrize("cls", [SinkhornOptions, JKOSolverOptions, WFRSolverOptions])
@pytest.mark.parametrize("bad", [dict(tol=0.0), dict(max_iter=0), dict(newton_tol=-1.0),
                                 dict(anderson_depth=-1), dict(debias_anderson_depth=-1),
                                 dict(on_failure="ignore")])
def test_one_validation_of_the_shared_fields(cls, bad):
    with pytest.raises(ValueError):
        cls(**bad)


def test_options_are_hashable_and_distinct_per_problem():
    assert issubclass(JKOSolverOptions, SinkhornOptions)
    assert issubclass(WFRSolverOptions, SinkhornOptions)
    assert hash(JKOSolverOptions()) == hash(JKOSolverOptions())
    assert WFRSolverOptions() == WFRSolverOptions() != SinkhornOptions()
    with pytest.raises(ValueError):
        JKOSolverOptions(eps_scaling=1.0)


def test_diagnostics_base_requires_every_shared_figure():
    assert issubclass(JKODiagnostics, StepDiagnostics)
    assert issubclass(WFRDiagnostics, StepDiagnostics)

    class Partial(StepDiagnostics):
        sinkhorn_iterations: jax.Array

    with pytest.raises(TypeError):
        Partial(1)
