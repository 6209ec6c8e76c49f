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
    """The identity embedding: a geometry's coordinates are already Θ."""
    def __call__(self, coords: Array) -> Array:
        """Return coords (K, D) unchanged."""
        return coords

    def inverse(self, theta: Array) -> Array:
        """Return θ (K, D) unchanged."""
        return theta


@dataclass(frozen=True)
class CircleEmbed:
    """(φ, rest) ↦ (cos φ, sin φ, rest): the angle factor of ``sphere`` in d = 2."""

    def __call__(self, coords: Array) -> Array:
        """(K, 1 + r) coordinates (φ, rest) → (K, 2 + r) points (cos φ, sin φ, rest)."""
        xp, phi = _xp(coords), coords[:, :1]
        return xp.concatenate([xp.cos(phi), xp.sin(phi), coords[:, 1:]], axis=1)

    def inverse(self, theta: Array) -> Array:
        """(K, 2 + r) points → (K, 1 + r) coordinates, φ = atan2(s_2, s_1) in [0, 2π)."""
        xp = _xp(theta)
        phi = xp.mod(xp.arctan2(theta[:, 1], theta[:, 0]), 2.0 * np.pi)
        return xp.concatenate([phi[:, None], theta[:, 2:]], axis=1)


@dataclass(frozen=True)
class ScaledEmbed:
    """(c, s) ↦ s·base(c) (``which="all"``), or base(c) with only its last coordinate scaled.

    ``which="last"`` scales the last coordinate only (e.g. β of ``sphere``).
    """

    base: object
    which: str = "all"

    def __call__(self, coords: Array) -> Array:
        """(K, k + 1) coordinates (c, s) → s-scaled base(c), per ``which``."""
        theta, s = self.base(coords[:, :-1]), coords[:, -1:]
        if self.which == "all":
            return s * theta
        return _xp(theta).concatenate([theta[:, :-1], s * theta[:, -1:]], axis=1)

    def inverse(self, theta: Array):
        """None: the scale and the base coordinates are not inverted coordinate-wise."""
        return None


@dataclass(frozen=True)
class AppendConstant:
    """w ↦ (w, value): the components α = ±1 of a ``signed`` grid."""

    value: float

    def __call__(self, coords: Array) -> Array:
        """(K, k) → (K, k + 1): append the constant column ``value``."""
        xp = _xp(coords)
        return xp.concatenate([coords, xp.full((coords.shape[0], 1), self.value)], axis=1)

    def inverse(self, theta: Array) -> Array:
        """(K, k + 1) → (K, k): drop the last (constant) column."""
        return theta[:, :-1]


@dataclass(frozen=True)
class ZeroPad:
    """x ↦ (0_before, x, 0_after): the components (u, 0) and (0, v) of a ``pm`` grid."""

    before: int
    after: int

    def __call__(self, coords: Array) -> Array:
        """(K, k) → (K, before + k + after): pad with zero columns."""
        return _xp(coords).pad(coords, ((0, 0), (self.before, self.after)))

    def inverse(self, theta: Array) -> Array:
        """(K, before + k + after) → (K, k): drop the zero-padded columns."""
        return theta[:, self.before : theta.shape[1] - self.after]

