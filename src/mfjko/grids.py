"""Stable functional API for grids (the implementation lives in :mod:`mfjko.geometry`).

``mfjko.grids.cartesian_grid(ranges, sizes)`` and friends keep working for users' scripts;
:func:`grid_for` is a parametrization's default grid and :func:`discretize` puts an
initial law on a grid (:mod:`mfjko.initial`).
"""

from __future__ import annotations

from mfjko import parametrizations as _params
from mfjko.geometry import *  # noqa: F403 — the re-exported geometry API
from mfjko.geometry import __all__ as _geometry_all
from mfjko.initial import discretize

__all__ = [*_geometry_all, "grid_for", "discretize", "boundary_mask"]


def grid_for(param, d: int, **kwargs):
    """The default grid of parametrization ``param`` for d inputs (bias included).

    Keywords as :meth:`mfjko.parametrizations.Parametrization.default_grid`.
    """
    return _params.get(param).default_grid(d, **kwargs)


def boundary_mask(geom):
    """(N,) bool: the points of ``geom`` on its box's boundary (``geom.boundary_mask()``)."""
    return geom.boundary_mask()
