r"""Multi-scale copies of a grid (research note §2.3.1).

The note's remedy for "the grid dictates the neuron's scale": "duplicate each neuron,
make one with a small scale and one with a very big scale".
"""

from __future__ import annotations

import numpy as np

from mfjko.geometry.components import ComponentGeometry
from mfjko.geometry.embeddings import ScaledEmbed
from mfjko.geometry.pointset import point_set
from mfjko.geometry.product import ProductGeometry, line_factor

__all__ = ["multiscale"]


def multiscale(geom, scales, *, which: str = "all", separable: bool = False):
    r"""Copies of a grid's points at several scales (seed §2.3.1).

    The seed's "duplicate each neuron, make one with a small scale and one with a very big
    scale". Copy a holds θ scaled by s_a: all coordinates (``which="all"``: (w, α) ↦ s(w, α) for
    ``neuron``, w ↦ s w inside each block of ``signed`` / ``pm``) or only the last one
    (``which="last"``: β ↦ s β for ``sphere``). A :class:`ComponentGeometry` is scaled
    block by block (its components stay apart).

    Cost, ``separable=False`` (default): the exact squared distance in Θ between all
    copies (geodesic on the sphere factor), as a point set (:func:`point_set`: dense, or
    chunked above 4000 points). The exact cost ‖s_aθ_k − s_bθ_l‖² is not a sum of a
    base term and a scale term, so it is not separable.

    Cost, ``separable=True`` (``geom`` a :class:`ProductGeometry`): a surrogate,
    C((k, a), (l, b)) = C_base(k, l) + ρ²(s_a − s_b)², ρ² = mean ‖scaled part of θ_k‖²:
    product of the base grid with a 1-D scale axis, O(N) memory. It is exact between
    copies of one point when ‖θ_k‖ = ρ and within the copy s = 1, but it underprices
    moves inside copy a by a factor s_a² (use it for speed, knowing this).

    Args:
      geom: the base grid (any geometry; a :class:`ProductGeometry` if ``separable``).
      scales: the distinct positive scales s_a, one copy each.
      which: "all" (scale every coordinate of θ) or "last" (scale β only).
      separable: use the separable surrogate cost above instead of the exact one.

    Returns:
      A geometry with len(scales)·N points (a :class:`ComponentGeometry` stays one).
    """
    s = np.asarray(scales, dtype=np.float64).reshape(-1)
    if s.size < 1 or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"scales must be positive and finite, got {scales!r}")
    if len(np.unique(s)) != s.size:
        raise ValueError(f"scales must be distinct, got {scales!r}")
    if which not in ("all", "last"):
        raise ValueError(f"which must be 'all' or 'last', got {which!r}")
    if isinstance(geom, ComponentGeometry):
        blocks = [multiscale(b, s, which=which, separable=separable) for b in geom.blocks]
        return ComponentGeometry(blocks, geom.embeds)
    if separable:
        if not isinstance(geom, ProductGeometry):
            raise ValueError("separable multiscale needs a ProductGeometry base")
        pts = np.asarray(geom.points if which == "all" else geom.points[:, -1:])
        rho2 = float(np.mean(np.sum(pts * pts, axis=1)))
        order = np.argsort(s)
        scale = line_factor(s[order], weight=rho2, kind="scale")
        return ProductGeometry([*geom.factors, scale], ScaledEmbed(geom.embed, which))
    P = np.asarray(geom.points)
    scale_cols = np.ones(P.shape[1]) if which == "all" else np.eye(P.shape[1])[-1]
    copies = [P * np.where(scale_cols > 0, c, 1.0) for c in s]
    return point_set(np.concatenate(copies, axis=0), cost=geom.cost_kind)


