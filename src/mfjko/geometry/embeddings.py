r"""Embeddings: maps from a geometry's own coordinates to Θ of a parametrization.

Frozen dataclasses (hashable by value, so they can be static fields of jitted pytrees).
``inverse`` returns None when the map cannot be inverted coordinate-wise (then locating a
θ in the grid falls back to a nearest-point search).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from mfjko.geometry.costs import xp_of as _xp

Array = jax.Array

__all__ = ["Identity", "CircleEmbed", "ScaledEmbed", "AppendConstant", "ZeroPad"]

@dataclass(frozen=True)
class Identity:
    def __call__(self, coords: Array) -> Array:
        return coords

    def inverse(self, theta: Array) -> Array:
        return theta


@dataclass(frozen=True)
class CircleEmbed:
    """(φ, rest) ↦ (cos φ, sin φ, rest): the angle factor of ``sphere`` in d = 2."""

    def __call__(self, coords: Array) -> Array:
        xp, phi = _xp(coords), coords[:, :1]
        return xp.concatenate([xp.cos(phi), xp.sin(phi), coords[:, 1:]], axis=1)

    def inverse(self, theta: Array) -> Array:
        xp = _xp(theta)
        phi = xp.mod(xp.arctan2(theta[:, 1], theta[:, 0]), 2.0 * np.pi)
        return xp.concatenate([phi[:, None], theta[:, 2:]], axis=1)


@dataclass(frozen=True)
class ScaledEmbed:
    """(c, s) ↦ s·base(c) (``which="all"``) or base(c) with its last coordinate times s
    (``which="last"``, e.g. β of ``sphere``).
    """

    base: object
    which: str = "all"

    def __call__(self, coords: Array) -> Array:
        theta, s = self.base(coords[:, :-1]), coords[:, -1:]
        if self.which == "all":
            return s * theta
        return _xp(theta).concatenate([theta[:, :-1], s * theta[:, -1:]], axis=1)

    def inverse(self, theta: Array):
        return None


@dataclass(frozen=True)
class AppendConstant:
    """w ↦ (w, value): the components α = ±1 of a ``signed`` grid."""

    value: float

    def __call__(self, coords: Array) -> Array:
        xp = _xp(coords)
        return xp.concatenate([coords, xp.full((coords.shape[0], 1), self.value)], axis=1)

    def inverse(self, theta: Array) -> Array:
        return theta[:, :-1]


@dataclass(frozen=True)
class ZeroPad:
    """x ↦ (0_before, x, 0_after): the components (u, 0) and (0, v) of a ``pm`` grid."""

    before: int
    after: int

    def __call__(self, coords: Array) -> Array:
        return _xp(coords).pad(coords, ((0, 0), (self.before, self.after)))

    def inverse(self, theta: Array) -> Array:
        return theta[:, self.before : theta.shape[1] - self.after]

