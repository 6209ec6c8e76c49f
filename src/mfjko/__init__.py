"""mfjko: does an entropic JKO scheme on a fixed grid of neurons behave like gradient descent?

Mean-field training dynamics of two-layer ReLU networks, simulated as particles
(GD, implicit steps, gradient flow, mean-field Langevin) and as grid measures
(entropic JKO, Peyré 2015). Conventions: ../shared/MATH.md (copied in docs/MATH.md).

Importing the package enables float64 in JAX: the science runs in double precision.

The public API below is importable from ``mfjko`` directly (``mfjko.run``,
``mfjko.jko_step``, ...); each name is loaded from its module on first use, so
``import mfjko`` stays cheap and no module imports the package's ``__init__`` for it.
"""

import importlib

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

#: public name → the module that defines it
_API = {
    # configs, one run, sweeps and studies
    "load_config": "mfjko.config", "RunConfig": "mfjko.config", "ConfigError": "mfjko.errors",
    "run": "mfjko.runner", "prepare": "mfjko.runner",
    "run_sweep": "mfjko.sweep", "load_sweep": "mfjko.sweep",
    "classify": "mfjko.study.regime", "predicted_drift_ratio": "mfjko.study.regime",
    "open_run": "mfjko.io",
    # the problem, the driver and the methods
    "MeanFieldProblem": "mfjko.problem", "GridProblem": "mfjko.problem",
    "drive": "mfjko.driver", "Trajectory": "mfjko.trajectory", "REGISTRY": "mfjko.methods",
    # the stable functional API (POT-style)
    "gradient_descent": "mfjko.particles", "langevin": "mfjko.particles",
    "implicit_steps": "mfjko.particles", "gradient_flow": "mfjko.particles",
    "conic_gradient_descent": "mfjko.particles", "run_wfr_jko": "mfjko.grid_runs",
    "jko_step": "mfjko.jko", "entropic_jko_step": "mfjko.jko",
    "JKOSolverOptions": "mfjko.jko", "run_jko": "mfjko.grid_runs",
    "cartesian_grid": "mfjko.grids", "sphere_line_grid": "mfjko.grids",
    "grid_for": "mfjko.grids", "discretize": "mfjko.grids",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """Load a public name from its module on first access (PEP 562)."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mfjko' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
