r"""Metrics that compare a method's measure with gradient descent's at equal mean-field time.

The columns of metrics.csv (``loss``, ``data_loss``, ``test_loss``, ``loss_gap``,
``pred_gap``, ``pred_gap_test``, ``measure_gap``, ...) are defined in docs/MATH.md
("Comparing JKO with GD") and listed once, with how to compute them, in
:data:`ROW_METRICS`. The measure gap is the debiased Sinkhorn divergence S_ε, computed
with OTT-JAX (dense ``PointCloud`` cost, or the separable ``Grid`` for box grids) for the
squared Euclidean or the S^{d−1} × ℝ geodesic cost; its ε is fixed per run
(``metrics.sinkhorn_eps``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, pointcloud
from ott.geometry import grid as ott_grid
from ott.solvers import linear as ott_linear
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence as ott_divergence

from mfjko.geometry.costs import SphereLineCost
from mfjko.parametrizations import Parametrization

__all__ = [
    "SphereLineCost",
    "sinkhorn_divergence",
    "grid_sinkhorn_divergence",
    "compress_measure",
    "direction_measure",
    "pred_gap",
    "measure_losses",
    "COSTS",
    "RowContext",
    "RowMetric",
    "ROW_METRICS",
    "COLUMNS",
    "row_metrics",
]


COSTS = {"sqeuclidean": costs.SqEuclidean, "sphere_line": SphereLineCost}


def _acceleration(mode: str) -> dict:
    """Sinkhorn solver keywords for an acceleration ``mode``.

    "anderson" and "momentum" are tried in turn (measured on 300–600-particle measures at ε =
    0.05): Anderson mixing of the potentials needs ~9x fewer iterations than plain Sinkhorn on
    well-separated measures but can stall on nearly identical ones; adaptive momentum (started
    once the error is below 1e-2) converges on both. "symmetric" (a = b): averaged parallel
    updates (Feydy et al. 2019, eq. 25), as OTT's own divergence uses for its self-terms.
    """
    if mode == "symmetric":
        return {"parallel_dual_updates": True,
                "momentum": acceleration.Momentum(start=0, value=0.5)}
    if mode == "anderson":
        return {"anderson": acceleration.AndersonAcceleration(memory=5)}
    return {"momentum": acceleration.Momentum(start=20, error_threshold=1e-2)}


@partial(jax.jit, static_argnames=("cost", "max_iterations", "accel"))
def _divergence(x, a, y, b, eps, cost, threshold, max_iterations, accel):
    kw = _acceleration(accel)
    value, out = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud,
        x,
        y,
        a=a,
        b=b,
        cost_fn=COSTS[cost](),
        epsilon=eps,
        solve_kwargs={"threshold": threshold, "max_iterations": max_iterations,
                      "lse_mode": True, **kw},
    )
    return value, jnp.all(jnp.asarray(out.converged)), jnp.max(jnp.asarray(out.n_iters))


def _check_measure(name, pts, w):
    pts = np.asarray(pts, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if pts.ndim != 2 or w.shape != (pts.shape[0],) or pts.shape[0] == 0:
        raise ValueError(f"{name}: need points (K, D) and weights (K,), got {pts.shape}, {w.shape}")
    if not (np.isfinite(pts).all() and np.isfinite(w).all()):
        raise ValueError(f"{name}: points or weights contain NaN or inf")
    if np.any(w < 0):
        raise ValueError(f"{name}: weights must be nonnegative")
    total = w.sum()
    if not abs(total - 1.0) <= 1e-6:
        raise ValueError(f"{name}: weights must sum to 1 (a probability measure), sum to {total}")
    return pts, w / total


def _pad_to_bucket(pts, w):
    """Pad with zero-weight copies of the first point to a size in a few buckets.

    Sizes 16, 32, 64, then multiples of 64, so that measures of varying support size reuse a few
    compiled Sinkhorn solvers.
    """
    k = pts.shape[0]
    size = 1 << max(int(np.ceil(np.log2(k))), 4) if k <= 64 else 64 * int(np.ceil(k / 64))
    if size == k:
        return pts, w
    pad = size - k
    return (np.concatenate([pts, np.repeat(pts[:1], pad, axis=0)]),
            np.concatenate([w, np.zeros(pad)]))


def sinkhorn_divergence(x, a, y, b, eps: float, cost: str = "sqeuclidean",
                        threshold: float = 1e-9, max_iterations: int = 20_000,
                        return_info: bool = False):
    r"""Debiased Sinkhorn divergence S_ε(Σ a_i δ_{x_i}, Σ b_j δ_{y_j}) (module docstring).

    x (K, D), a (K,), y (L, D), b (L,): two probability measures on Θ; ``eps`` is the absolute
    entropic regularization (units of the cost: squared distance); ``cost`` one of
    ``"sqeuclidean"`` or ``"sphere_line"``; Sinkhorn stops when the marginal error is below
    ``threshold`` (‖marginal error‖₁; the divergence is then accurate to about
    threshold × the cost's scale). Zero-weight points are allowed. Returns a float ≥ 0
    (clipped at 0 where the three terms cancel to rounding); with ``return_info`` also
    ``{"converged": bool, "iterations": int}`` (the largest count of the three solves).
    A solve that misses ``threshold`` within ``max_iterations`` warns.
    """
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; choose one of {sorted(COSTS)}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive, got {eps}")
    x, a = _check_measure("first measure", x, a)
    y, b = _check_measure("second measure", y, b)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"measures live in different dimensions: {x.shape[1]} vs {y.shape[1]}")
    x, a = _pad_to_bucket(x, a)
    y, b = _pad_to_bucket(y, b)
    args = (jnp.asarray(x), jnp.asarray(a), jnp.asarray(y), jnp.asarray(b), float(eps), cost,
            float(threshold), int(max_iterations))
    value, converged, iters = (float(v) for v in _divergence(*args, "anderson"))
    if not (converged and np.isfinite(value)):
        value, converged, iters = (float(v) for v in _divergence(*args, "momentum"))
    converged, iters = bool(converged), int(iters)
    if not np.isfinite(value):
        raise FloatingPointError(
            f"Sinkhorn divergence is {value} at eps = {eps}: raise metrics.sinkhorn_eps"
        )
    if not converged:
        warnings.warn(f"Sinkhorn divergence missed threshold {threshold:g} after {iters} "
                      f"iterations at eps = {eps:g}; raise the iteration cap or eps",
                      RuntimeWarning, stacklevel=2)
    value = max(value, 0.0)
    if return_info:
        return value, {"converged": converged, "iterations": iters}
    return value


@partial(jax.jit, static_argnames=("max_iterations", "mode"))
def _reg_ot_cost(geom, a, b, threshold, max_iterations, mode):
    """OT_ε(a, b) on ``geom`` (OTT's reg_ot_cost), accelerated by ``mode``.

    See :func:`_acceleration`.
    """
    out = ott_linear.solve(geom, a=a, b=b, lse_mode=True, threshold=threshold,
                           max_iterations=max_iterations, **_acceleration(mode))
    return out.reg_ot_cost, out.converged, out.n_iters


def grid_sinkhorn_divergence(axes, p, y, b, eps: float, threshold: float = 1e-9,
                             max_iterations: int = 20_000, prune: float = 1e-14):
    r"""Debiased Sinkhorn divergence S_ε between a grid measure and a point measure.

    For the squared Euclidean cost, without compressing the grid.

    ``axes``: a box geometry (:class:`mfjko.geometry.ProductGeometry` with ``is_box``) or
    the grid's 1-D axes (n_1..n_D); ``p`` (Π n_k,) its weights in row-major order
    (``mfjko.grids.cartesian_grid`` order); ``y`` (L, D), ``b`` (L,) the other measure.
    OT_ε(μ, μ) runs on OTT-JAX's separable ``Grid`` geometry (memory O(N)); OT_ε(μ, ν)
    on a PointCloud over the grid points with p_k > ``prune``·max p (the mass left out,
    at most N·prune of the total, is returned); OT_ε(ν, ν) on a PointCloud. Same
    conventions as :func:`sinkhorn_divergence`, which it equals on small grids.

    Returns (S_ε ≥ 0, pruned mass).
    """
    axes = [np.asarray(ax, dtype=np.float64).reshape(-1)
            for ax in (axes.axes if hasattr(axes, "ott_grid") else axes)]
    shape = tuple(len(ax) for ax in axes)
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (int(np.prod(shape)),):
        raise ValueError(f"grid weights must have shape ({int(np.prod(shape))},), got {p.shape}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive, got {eps}")
    mesh = np.meshgrid(*axes, indexing="ij")
    x, p = _check_measure("grid measure", np.stack([m.reshape(-1) for m in mesh], 1), p)
    y, b = _check_measure("second measure", y, b)
    if y.shape[1] != len(axes):
        raise ValueError(f"measures live in different dimensions: {len(axes)} vs {y.shape[1]}")
    keep = p > prune * p.max()
    pruned = float(p[~keep].sum())
    xk, ak = _pad_to_bucket(x[keep], p[keep] / p[keep].sum())
    yk, bk = _pad_to_bucket(y, b)
    solve = partial(_reg_ot_cost, threshold=float(threshold), max_iterations=int(max_iterations))
    geom_xy = pointcloud.PointCloud(jnp.asarray(xk), jnp.asarray(yk), epsilon=eps)
    xy, ok_xy, _ = solve(geom_xy, jnp.asarray(ak), jnp.asarray(bk), mode="anderson")
    if not (bool(ok_xy) and np.isfinite(float(xy))):
        xy, ok_xy, _ = solve(geom_xy, jnp.asarray(ak), jnp.asarray(bk), mode="momentum")
    geom_xx = ott_grid.Grid(x=[jnp.asarray(ax) for ax in axes], epsilon=eps)
    xx, ok_xx, _ = solve(geom_xx, jnp.asarray(p), jnp.asarray(p), mode="symmetric")
    geom_yy = pointcloud.PointCloud(jnp.asarray(yk), jnp.asarray(yk), epsilon=eps)
    yy, ok_yy, _ = solve(geom_yy, jnp.asarray(bk), jnp.asarray(bk), mode="symmetric")
    value = float(xy) - 0.5 * (float(xx) + float(yy))
    if not np.isfinite(value):
        raise FloatingPointError(
            f"Sinkhorn divergence is {value} at eps = {eps}: raise metrics.sinkhorn_eps")
    if not (bool(ok_xy) and bool(ok_xx) and bool(ok_yy)):
        warnings.warn(f"grid Sinkhorn divergence missed threshold {threshold:g} within "
                      f"{max_iterations} iterations at eps = {eps:g}", RuntimeWarning,
                      stacklevel=2)
    return max(value, 0.0), pruned


def compress_measure(points, weights, max_points: int):
    """A measure with at most ``max_points`` support points.

    It approximates Σ_k p_k δ_{θ_k}, for the Sinkhorn divergence (whose dense cost is quadratic
    in the support). With N ≤ max_points the measure is returned unchanged. Otherwise by
    deterministic systematic resampling in the points' stored order (for a grid: the
    lexicographic order, so strata are spatially contiguous): M = max_points quantiles u_j = (j
    + ½)/M of the cumulative weights pick points, duplicates merge, weights are counts/M. Every
    point with p_k ≥ 1/M is kept with its mass to within 1/M.

    Returns (points, weights (sum 1), tv) with tv = ½ Σ_k |p_k − q_k|, the mass moved by
    the compression (reported next to the gap, never hidden).
    """
    points = np.asarray(points)
    weights = np.asarray(weights, dtype=np.float64)
    p = weights / weights.sum()
    if len(p) <= max_points:
        return points, p, 0.0
    cum = np.cumsum(p)
    u = (np.arange(max_points) + 0.5) / max_points
    idx = np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), len(p) - 1)
    keep, counts = np.unique(idx, return_counts=True)
    q = counts / max_points
    tv = 0.5 * (np.abs(p[keep] - q).sum() + np.delete(p, keep).sum())
    return points[keep], q, float(tv)


def pred_gap(f, f_ref) -> float:
    """‖f − f_ref‖ = sqrt(mean_j (f_j − f_ref_j)²), the L2(data) distance of two predictors."""
    f = np.asarray(f, dtype=np.float64)
    f_ref = np.asarray(f_ref, dtype=np.float64)
    if f.shape != f_ref.shape:
        raise ValueError(f"predictions have different shapes {f.shape} and {f_ref.shape}")
    return float(np.sqrt(np.mean((f - f_ref) ** 2)))


def measure_losses(param: Parametrization, points, weights, X, y, X_test, y_test, lam) -> dict:
    """Losses and predictions of μ = Σ_k p_k δ_{θ_k}.

    By :meth:`MeanFieldProblem.losses`: a dict with ``loss`` F(μ), ``data_loss``, ``test_loss``
    (floats) and ``pred_train`` (n,),
    ``pred_test`` (n_test,) arrays.
    """
    from mfjko.problem import MeanFieldProblem

    problem = MeanFieldProblem(param=param, X=jnp.asarray(X), y=jnp.asarray(y),
                               lam=jnp.float64(lam))
    return problem.losses(points, weights, X_test, y_test)


# --------------------------------------------------------------------------- the table
# One row of metrics.csv per method and recorded time. Each RowMetric computes some
# columns from a RowContext; the columns of metrics.csv are theirs, in this order. A new
# metric is one function and one line in ROW_METRICS.


@dataclass
class RowContext:
    """What a row metric may use at one record of one method.

    Attributes:
      method, kind: the method's name and "particles" / "grid".  index, t: record number
      and mean-field time.  points (K, D), weights (K,): the measure.  losses: its
      :meth:`~mfjko.problem.MeanFieldProblem.losses` (with predictions).  reference: GD at
      the same record (``loss``, ``pred_train``, ``pred_test``, ``support``), None for GD
      itself.  settings: the run's ``metrics`` config.  cost: the cost kind of Θ.
      geom: the grid of a grid method (else None).  F_star: the reference optimum (NaN).
      final: whether this is the run's last record.  param: the parametrization's name
      ("" if unknown: the direction gap is then left empty).
    """

    method: str
    kind: str
    index: int
    t: float
    points: np.ndarray
    weights: np.ndarray
    losses: dict
    reference: dict | None
    settings: object
    cost: str
    geom: object | None = None
    F_star: float = math.nan
    final: bool = True
    param: str = ""


@dataclass(frozen=True)
class RowMetric:
    """Columns of metrics.csv and how to compute them.

    ``compute(ctx) -> {column: value}``; a column it leaves out is empty in that row).
    ``shown``: columns of the report's compact table.
    """

    columns: tuple[str, ...]
    compute: Callable[[RowContext], dict]
    description: str
    shown: tuple[str, ...] = ()


def _losses(ctx: RowContext) -> dict:
    out = {k: ctx.losses[k] for k in ("loss", "data_loss", "test_loss")}
    for key, value in out.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"{ctx.method}: {key} is {value} at t = {ctx.t:g}")
    return out


def _gaps(ctx: RowContext) -> dict:
    ref = ctx.reference
    if ref is None:
        return {}
    return {"loss_gap": abs(ctx.losses["loss"] - float(ref["loss"])),
            "pred_gap": pred_gap(ctx.losses["pred_train"], ref["pred_train"]),
            "pred_gap_test": pred_gap(ctx.losses["pred_test"], ref["pred_test"])}


def _measure_gap(ctx: RowContext) -> dict:
    mc = ctx.settings
    wanted = {"all": True, "final": ctx.final, "none": False}[mc.measure_gap]
    if ctx.reference is None or not wanted:
        return {}
    gd_pts = ctx.reference["support"][: mc.max_support]
    gd_w = np.full(len(gd_pts), 1.0 / len(gd_pts))
    solver = {"threshold": mc.sinkhorn_threshold, "max_iterations": mc.sinkhorn_max_iterations}
    grid, large = ctx.kind == "grid", len(ctx.weights) > mc.max_grid_support
    if grid and large and getattr(ctx.geom, "is_box", False):
        # a large Cartesian box: exact, its self-term on OTT's separable Grid
        gap, dropped = grid_sinkhorn_divergence(ctx.geom, ctx.weights, gd_pts, gd_w,
                                                mc.sinkhorn_eps, **solver)
        return {"measure_gap": gap, "measure_gap_grid_tv": dropped}
    if grid:
        pts, w, dropped = compress_measure(ctx.points, ctx.weights, mc.max_grid_support)
    else:  # uniform particles: the first max_support are an iid subsample
        pts, dropped = ctx.points[: mc.max_support], None
        w = np.full(len(pts), 1.0 / len(pts))
    gap = sinkhorn_divergence(pts, w, gd_pts, gd_w, mc.sinkhorn_eps, ctx.cost, **solver)
    return {"measure_gap": gap, "measure_gap_grid_tv": dropped}


def direction_measure(param: str, points, weights) -> tuple[np.ndarray, np.ndarray]:
    r"""The normalized directional measure of μ = Σ_k p_k δ_{θ_k} (``neuron``/``sphere``).

    Each neuron is a direction s = w/‖w‖, a sign ε = sign α and a mass r = |α|‖w‖
    (``sphere``: |β|), its output ε r σ(sᵀx); the measure Σ_k (p_k r_k / M) δ_{(s_k, ε_k)},
    M = Σ p_k r_k, is what a WFR (conic) scheme represents, independent of how the mass is
    split between ‖w‖ and |α| or between neurons of one direction (MATH.md "WFR").

    Args:
      param: "neuron" or "sphere".
      points: (K, d + 1) neurons of that Θ.
      weights: (K,) nonnegative weights.

    Returns:
      (points (K', d + 1) = (s, ε), weights (K',) summing to 1), massless neurons dropped,
      sorted by sign, then by angle (d = 2) or lexicographically.
    """
    pts, w = np.asarray(points, np.float64), np.asarray(weights, np.float64)
    if param not in ("neuron", "sphere"):
        raise ValueError(f"direction_measure needs the neuron or sphere parametrization, got "
                         f"{param!r}")
    head, last = pts[:, :-1], pts[:, -1]
    norm = np.linalg.norm(head, axis=1)
    mass = w * np.abs(last) * (norm if param == "neuron" else 1.0)
    keep = mass > 0
    if not keep.any():
        raise ValueError("the measure has no directional mass (all neurons are zero)")
    s, sign = head[keep] / norm[keep, None], np.sign(last[keep])
    # sorted by sign, then angle (d = 2) or lexicographically: compress_measure's strata
    # are then contiguous sets of directions
    keys = [np.arctan2(s[:, 1], s[:, 0])] if s.shape[1] == 2 else list(s.T[::-1])
    order = np.lexsort(keys + [sign])
    return np.c_[s, sign][order], (mass[keep] / mass[keep].sum())[order]


def _direction_gap(ctx: RowContext) -> dict:
    mc = ctx.settings
    wanted = {"all": True, "final": ctx.final, "none": False}[mc.measure_gap]
    if ctx.reference is None or not wanted or ctx.param not in ("neuron", "sphere"):
        return {}
    gd = ctx.reference["support"]
    x, a, _ = compress_measure(*direction_measure(ctx.param, ctx.points, ctx.weights),
                               mc.max_support)
    y, b, _ = compress_measure(*direction_measure(ctx.param, gd, np.full(len(gd), 1 / len(gd))),
                               mc.max_support)
    gap = sinkhorn_divergence(x, a, y, b, mc.sinkhorn_eps, "sphere_line",
                              threshold=mc.sinkhorn_threshold,
                              max_iterations=mc.sinkhorn_max_iterations)
    return {"direction_gap": gap}


#: JKO mass fraction on the grid boundary above which a run warns (box too small)
EDGE_MASS_WARN = 0.01


def _edge_mass(ctx: RowContext) -> dict:
    if ctx.kind != "grid" or ctx.reference is None:
        return {}
    w = np.asarray(ctx.weights)
    edge = float(w[ctx.geom.boundary_mask()].sum() / w.sum())
    if edge > EDGE_MASS_WARN:
        warnings.warn(f"{edge:.1%} of the {ctx.method} mass sits on the grid's boundary at "
                      f"t = {ctx.t:g}: the box clips the dynamics; widen jko.grid.ranges "
                      "(or beta_range)", RuntimeWarning, stacklevel=2)
    return {"edge_mass": edge}


def _f_star(ctx: RowContext) -> dict:
    return {"F_star": ctx.F_star, "loss_minus_F_star": ctx.losses["loss"] - ctx.F_star}


#: the metrics of every row, in column order
ROW_METRICS: tuple[RowMetric, ...] = (
    RowMetric(("loss", "data_loss", "test_loss"), _losses,
              "F, its data part and the test loss", shown=("loss", "test_loss")),
    RowMetric(("loss_gap", "pred_gap", "pred_gap_test"), _gaps,
              "|F − F_GD| and the L2 predictor gaps to GD (train, test)",
              shown=("loss_gap", "pred_gap", "pred_gap_test")),
    RowMetric(("measure_gap", "measure_gap_grid_tv"), _measure_gap,
              "debiased Sinkhorn divergence to GD's particles, and the grid mass it moved",
              shown=("measure_gap",)),
    RowMetric(("direction_gap",), _direction_gap,
              "debiased Sinkhorn divergence (geodesic² + 4 across signs) between the "
              "normalized directional measures Σ p|α|‖w‖ δ_(s, sign α) of the method and of "
              "GD (lift-free: what a WFR scheme represents; neuron and sphere)",
              shown=("direction_gap",)),
    RowMetric(("edge_mass",), _edge_mass, "grid mass on the box's boundary"),
    RowMetric(("F_star", "loss_minus_F_star"), _f_star, "the optimum F* and F − F*",
              shown=("loss_minus_F_star",)),
)

#: the columns of metrics.csv after ``method`` and ``t``
COLUMNS: tuple[str, ...] = tuple(c for m in ROW_METRICS for c in m.columns)


def row_metrics(ctx: RowContext) -> dict:
    """All columns of one row of metrics.csv (method, t and every :data:`ROW_METRICS`)."""
    row = {"method": ctx.method, "t": ctx.t}
    for metric in ROW_METRICS:
        row.update(metric.compute(ctx))
    return row
