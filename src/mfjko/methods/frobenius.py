r"""Frobenius proximal steps: θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²_F/(2mh).

Exactly the implicit (backward Euler) step of :mod:`mfjko.methods.implicit`, listed as the
peer proximal method with the plainest distance (Teter, Nodozi & Halder 2024 compare
proximal steps in several metrics); see :mod:`mfjko.methods.w2` and
:mod:`mfjko.methods.sliced` for the W₂ and sliced-W₂ prox.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfjko.methods.base import MethodInfo
from mfjko.methods.implicit import ImplicitConfig, ImplicitSteps

__all__ = ["FrobeniusProx", "METHOD"]


@dataclass(frozen=True)
class FrobeniusProx(ImplicitSteps):
    """The implicit step under its peer-method name (same settings and diagnostics)."""

    name = "frobenius"


def _build(mc: ImplicitConfig, setup) -> FrobeniusProx:
    return FrobeniusProx(h=mc.h, tol=mc.tol)


METHOD = MethodInfo("frobenius", FrobeniusProx, ImplicitConfig, _build, color="tab:cyan",
                    summary="proximal steps in the Frobenius distance of the particles")
