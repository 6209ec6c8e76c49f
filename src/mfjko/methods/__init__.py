r"""The methods: one module each, one line each in :data:`REGISTRY`.

Every method is a :class:`~mfjko.methods.base.Stepper` (``init(problem, initial)``,
``advance(state, n_steps)``) run by :func:`mfjko.driver.drive`. The registry's order is
the order in which a run executes and reports them (GD first: it is every other method's
reference); the config schema's ``methods`` section, the runner and the report's colours
come from it. Adding a method = one module + one line below + its tests.
"""

from __future__ import annotations

from mfjko.methods import (
    classic,
    conic,
    flow,
    frobenius,
    gd,
    icnn_jko,
    implicit,
    jko,
    langevin,
    sliced,
    w2,
    wfr_jko,
)
from mfjko.methods.base import Diagnostics, MethodInfo, ParticleState, Stepper

__all__ = ["REGISTRY", "get", "runnable", "Stepper", "Diagnostics", "MethodInfo",
           "ParticleState"]

#: method name → :class:`MethodInfo`, in run order
REGISTRY: dict[str, MethodInfo] = {m.name: m for m in (
    gd.METHOD,
    flow.METHOD,
    implicit.METHOD,
    frobenius.METHOD,
    langevin.METHOD,
    w2.METHOD,
    sliced.METHOD,
    jko.METHOD,
    conic.METHOD,
    wfr_jko.METHOD,
    icnn_jko.METHOD,
    classic.METHOD,
)}


def get(name: str) -> MethodInfo:
    """The registry entry of method ``name`` (ValueError listing the known ones)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(REGISTRY)}") from None


def runnable() -> list[MethodInfo]:
    """The methods a config can list (those with a config section), in run order."""
    return [m for m in REGISTRY.values() if m.config is not None]
