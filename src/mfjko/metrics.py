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

import hashlib
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
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration
from ott.solvers.linear import sinkhorn as ott_sinkhorn
from scipy.optimize import minimize

from mfjko.geometry.costs import SphereLineCost
from mfjko.parametrizations import Parametrization
from mfjko.problem import MeanFieldProblem

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


#: OT_ε(ν, ν) of measures seen before, keyed by their bytes and the solver settings: a
#: run compares every method with GD's measure at each record, whose self-term is then
#: computed once instead of once per method (same solve, same value).
_SELF_TERMS: dict = {}
_SELF_TERMS_SIZE = 8


def _self_term(y, b, eps, cost, tol, max_iter):
    """OT_ε(ν, ν) for ν = Σ b_j δ_{y_j} (padded arrays), cached by content.

    Solved by the symmetric Sinkhorn updates OTT's divergence uses for its self-terms.

    Returns:
      (value, converged, iterations).
    """
    key = (cost, float(eps), float(tol), int(max_iter), y.shape,
           hashlib.sha256(y.tobytes() + b.tobytes()).hexdigest())
    hit = _SELF_TERMS.get(key)
    if hit is None:
        geom = pointcloud.PointCloud(jnp.asarray(y), jnp.asarray(y), cost_fn=COSTS[cost](),
                                     epsilon=eps)
        v, ok, it = _reg_ot_cost(geom, jnp.asarray(b), jnp.asarray(b), tol, max_iter,
                                 mode="symmetric")
        hit = (float(v), bool(ok), int(it))
        if len(_SELF_TERMS) >= _SELF_TERMS_SIZE:
            _SELF_TERMS.pop(next(iter(_SELF_TERMS)))
        _SELF_TERMS[key] = hit
    return hit


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
                        tol: float = 1e-9, max_iter: int = 20_000,
                        return_info: bool = False):
    r"""Debiased Sinkhorn divergence S_ε(Σ a_i δ_{x_i}, Σ b_j δ_{y_j}) (module docstring).

    x (K, D), a (K,), y (L, D), b (L,): two probability measures on Θ; ``eps`` is the absolute
    entropic regularization (units of the cost: squared distance); ``cost`` one of
    ``"sqeuclidean"`` or ``"sphere_line"``; Sinkhorn stops when the marginal error is below
    ``tol`` (‖marginal error‖₁; the divergence is then accurate to about tol × the cost's
    scale) or after ``max_iter`` iterations. Zero-weight points are allowed. Identical
    measures give 0 exactly; the self-term of a measure seen before (GD's, compared with
    every method at a record) is taken from a cache (:func:`_self_term`). Returns a
    float ≥ 0 (clipped at 0 where the three terms cancel to rounding); with
    ``return_info`` also ``{"converged": bool, "iterations": int}`` (the largest count of
    the three solves). A solve that misses ``tol`` within ``max_iter`` warns.
    """
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; choose one of {sorted(COSTS)}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive, got {eps}")
    x, a = _check_measure("first measure", x, a)
    y, b = _check_measure("second measure", y, b)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"measures live in different dimensions: {x.shape[1]} vs {y.shape[1]}")
    if x.shape == y.shape and np.array_equal(x, y) and np.array_equal(a, b):
        # S_ε(μ, μ) = 0 exactly (e.g. every particle method at t = 0 of a run)
        return (0.0, {"converged": True, "iterations": 0}) if return_info else 0.0
    x, a = _pad_to_bucket(x, a)
    y, b = _pad_to_bucket(y, b)
    xx, ok_xx, it_xx = _self_term(x, a, eps, cost, tol, max_iter)
    yy, ok_yy, it_yy = _self_term(y, b, eps, cost, tol, max_iter)
    geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), cost_fn=COSTS[cost](),
                                 epsilon=eps)
    args = (geom, jnp.asarray(a), jnp.asarray(b), float(tol), int(max_iter))
    xy, converged, iters = (float(v) for v in _reg_ot_cost(*args, mode="anderson"))
    if not (converged and np.isfinite(xy)):
        xy, converged, iters = (float(v) for v in _reg_ot_cost(*args, mode="momentum"))
    value = xy - 0.5 * (xx + yy)
    converged = bool(converged) and ok_xx and ok_yy
    iters = max(int(iters), it_xx, it_yy)
    if not np.isfinite(value):
        raise FloatingPointError(
            f"Sinkhorn divergence is {value} at eps = {eps}: raise metrics.sinkhorn_eps"
        )
    if not converged:
        warnings.warn(f"Sinkhorn divergence missed tol {tol:g} after {iters} "
                      f"iterations at eps = {eps:g}; raise the iteration cap or eps",
                      RuntimeWarning, stacklevel=2)
    value = max(value, 0.0)
    if return_info:
        return value, {"converged": converged, "iterations": iters}
    return value


@partial(jax.jit, static_argnames=("max_iter", "mode"))
def _reg_ot_cost(geom, a, b, tol, max_iter, mode, init=None):
    """OT_ε(a, b) on ``geom`` (OTT's reg_ot_cost), accelerated by ``mode``.

    See :func:`_acceleration`; optionally started from dual potentials ``init`` = (f, g).

    Returns:
      (value, converged, iterations).
    """
    prob = linear_problem.LinearProblem(geom, a=a, b=b)
    solver = ott_sinkhorn.Sinkhorn(lse_mode=True, threshold=tol, max_iterations=max_iter,
                                   **_acceleration(mode))
    out = solver(prob) if init is None else solver(prob, init=init)
    return out.reg_ot_cost, out.converged, out.n_iters


#: rows of the cost matrix per block in :func:`_semidual`: a (512, L) block stays in
#: cache, where one (K, L) pass over a large grid is bound by memory traffic
_SEMIDUAL_BLOCK = 512


@jax.jit
def _semidual(x, y, eps, a, b, g):
    """The semi-dual of OT_ε at g for the cost ‖x_k − y_j‖², with the c-transform f of g.

    OTT's convention π_kj = exp((f_k + g_j − C_kj)/ε): f_k = ε log a_k − ε LSE_j (g_j −
    C_kj)/ε (OTT's exact f-update), so π_kj = a_k softmax_j((g − C_k·)/ε). The value is
    OTT's reg_ot_cost at (f, g) (the balanced formula of ``compute_kl_reg_cost``) and the
    gradient b − πᵀ1, whose ℓ1 norm is the marginal error OTT's Sinkhorn stops on. C is
    formed block by block of :data:`_SEMIDUAL_BLOCK` rows inside the reductions (never
    stored whole: memory traffic dominates).

    Args:
      x: (K, D) support of the first measure (K a multiple of :data:`_SEMIDUAL_BLOCK`).
      y: (L, D) support of the second.
      eps: ε.
      a: (K,) first marginal (zeros allowed).
      b: (L,) second marginal (zeros allowed).
      g: (L,) the column potential.

    Returns:
      (value, gradient (L,), f (K,)).
    """
    on_b = b > 0
    g_on = jnp.where(on_b, g, -jnp.inf)
    y2 = jnp.sum(y * y, 1)

    def block(args):
        xb, ab = args
        E = (g_on[None, :] - (jnp.sum(xb * xb, 1)[:, None] + y2[None, :] - 2.0 * xb @ y.T)) / eps
        top = jnp.max(E, axis=1)
        P = jnp.exp(E - top[:, None])
        total = jnp.sum(P, axis=1)
        return top + jnp.log(total), (jnp.where(ab > 0, ab, 0.0) / total) @ P

    n_blocks = x.shape[0] // _SEMIDUAL_BLOCK
    lse, cols = jax.lax.map(block, (x.reshape(n_blocks, _SEMIDUAL_BLOCK, x.shape[1]),
                                    a.reshape(n_blocks, _SEMIDUAL_BLOCK)))
    col = jnp.sum(cols, axis=0)
    f = eps * jnp.log(a) - eps * lse.reshape(-1)
    return (*_semidual_value(a, b, f, g, col, eps), f)


def _semidual_value(a, b, f, g, col, eps):
    """OTT's balanced reg_ot_cost at (f, g) and the gradient b − πᵀ1 (col = πᵀ1)."""
    on_a, on_b = a > 0, b > 0
    div_a = jnp.sum(jnp.where(on_a, a * (f - eps * jnp.log(a)), 0.0))
    div_b = jnp.sum(jnp.where(on_b, b * (g - eps * jnp.log(b)), 0.0))
    value = div_a + div_b + eps * (jnp.sum(a) * jnp.sum(b) - jnp.sum(col))
    return value, jnp.where(on_b, b - col, 0.0)


#: a row sum of the separable kernel below this may have lost digits to underflow: the
#: evaluation then falls back to the log-domain :func:`_semidual`
_SEPARABLE_FLOOR = 1e-250


@jax.jit
def _semidual_separable(axes, y, eps, a, b, g):
    """:func:`_semidual` for a Cartesian grid x = axes[0] × … × axes[D−1], in scaling form.

    exp(−‖x_k − y_j‖²/ε) = Π_d K_d[i_d, j] with K_d = exp(−(axes[d] − y_·d)²/ε) (n_d, L),
    so the row sums S_k = Σ_j G_j Π_d K_d[i_d, j], G_j = exp((g_j − max g)/ε), and the
    column sums of the plan are two matrix products with the (n_1, L) kernel and one
    (N/n_1, L) Khatri–Rao product of the others: O(N·L) multiply-adds, no exponential of
    the (N, L) matrix. Values equal :func:`_semidual`'s to rounding unless some S_k with
    a_k > 0 underflows, which the returned flag reports.

    Args:
      axes: D arrays (n_d,): the grid's axes; its points in row-major order.
      y: (L, D) support of the second measure.
      eps: ε.
      a: (N,) grid weights, N = Π n_d (zeros allowed).
      b: (L,) second marginal (zeros allowed).
      g: (L,) the column potential.

    Returns:
      (value, gradient (L,), f (N,), whether every S_k with a_k > 0 is ≥ the floor).
    """
    on_a, on_b = a > 0, b > 0
    top = jnp.max(jnp.where(on_b, g, -jnp.inf))
    G = jnp.where(on_b, jnp.exp((g - top) / eps), 0.0)
    kernels = [jnp.exp(-((ax[:, None] - y[None, :, d]) ** 2) / eps) for d, ax in enumerate(axes)]
    rest = jnp.ones((1, y.shape[0]))  # (Π_{d≥1} n_d, L), rows in row-major order
    for K in kernels[1:]:
        rest = (rest[:, None, :] * K[None, :, :]).reshape(-1, y.shape[0])
    S = (kernels[0] @ (rest * G).T).reshape(-1)
    ok = jnp.all(jnp.where(on_a, S >= _SEPARABLE_FLOOR, True))
    lse = top / eps + jnp.log(S)
    f = jnp.where(on_a, eps * jnp.log(a) - eps * lse, -jnp.inf)
    scaled = jnp.where(on_a, a / S, 0.0).reshape(kernels[0].shape[0], -1)
    col = G * jnp.sum(rest * (scaled.T @ kernels[0]), axis=0)
    return (*_semidual_value(a, b, f, g, col, eps), f, ok)


class _Reached(Exception):
    pass


def _semidual_ot(geom, a, b, tol, max_iter, axes=None):
    """OT_ε(a, b) by L-BFGS on the concave, smooth semi-dual in g, from g = 0.

    Stops at the first g whose marginal error ‖b − πᵀ1‖₁ ≤ tol: the stopping rule and the
    value formula of OTT's Sinkhorn, at one pass of exponentials over the cost matrix per
    L-BFGS function call (a Sinkhorn iteration makes two), and L-BFGS needs fewer calls
    than Anderson Sinkhorn needs iterations on a large grid against particles. If L-BFGS
    stalls (rounding level), OTT's Sinkhorn finishes from its best potentials. With
    ``axes`` (a Cartesian grid whose row-major points are the first Π n_d of ``geom.x``,
    the rest zero-weight padding), each evaluation is :func:`_semidual_separable`, or the
    log-domain one where that one's row sums underflow.

    Returns:
      (value, converged, evaluations).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    x, y, eps = geom.x, geom.y, jnp.float64(geom.epsilon)
    pad = -x.shape[0] % _SEMIDUAL_BLOCK  # zero-weight copies of a point: whole blocks
    x_blocks = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
    a_blocks = jnp.concatenate([a, jnp.zeros(pad)])
    best = {"err": np.inf, "g": np.zeros(b.shape), "f": None, "n": 0}

    n_grid = 0 if axes is None else int(np.prod([len(ax) for ax in axes]))
    axes = None if axes is None else tuple(jnp.asarray(ax) for ax in axes)

    def evaluate(g):
        if axes is not None:
            v, grad, f, ok = _semidual_separable(axes, y, eps, a[:n_grid], b, g)
            if bool(ok):
                return v, grad, jnp.concatenate([f, jnp.full(x.shape[0] - n_grid, -jnp.inf)])
        v, grad, f = _semidual(x_blocks, y, eps, a_blocks, b, g)
        return v, grad, f[: x.shape[0]]

    def fun(gn):
        v, grad, f = evaluate(jnp.asarray(gn))
        grad = np.asarray(grad)
        err = float(np.abs(grad).sum())
        best["n"] += 1
        if err < best["err"]:
            best.update(err=err, g=gn.copy(), f=f, value=float(v))
        if err <= tol:
            raise _Reached
        return -float(v), -grad

    try:
        minimize(fun, best["g"], jac=True, method="L-BFGS-B",
                 options={"maxcor": 20, "ftol": 0.0, "gtol": 0.0, "maxiter": max_iter,
                          "maxfun": max_iter})
    except _Reached:
        return best["value"], True, best["n"]
    init = (best["f"], jnp.where(b > 0, jnp.asarray(best["g"]), -jnp.inf))
    v, ok, it = _reg_ot_cost(geom, a, b, tol, max_iter, mode="anderson", init=init)
    return float(v), bool(ok) and np.isfinite(float(v)), best["n"] + int(it)


def grid_sinkhorn_divergence(axes, p, y, b, eps: float, tol: float = 1e-9,
                             max_iter: int = 20_000, prune: float = 1e-14):
    r"""Debiased Sinkhorn divergence S_ε between a grid measure and a point measure.

    For the squared Euclidean cost, without compressing the grid.

    ``axes``: a box geometry (:class:`mfjko.geometry.ProductGeometry` with ``is_box``) or
    the grid's 1-D axes (n_1..n_D); ``p`` (Π n_k,) its weights in row-major order
    (``mfjko.grids.cartesian_grid`` order); ``y`` (L, D), ``b`` (L,) the other measure.
    OT_ε(μ, μ) runs on OTT-JAX's separable ``Grid`` geometry (memory O(N)); OT_ε(μ, ν)
    over the grid points, those with p_k ≤ ``prune``·max p given weight 0 (the mass left
    out, at most N·prune of the total, is returned), solved by L-BFGS on its semi-dual
    (:func:`_semidual_ot`: OTT's stopping rule and value) with the separable kernel of
    the grid (:func:`_semidual_separable`); OT_ε(ν, ν)
    on a PointCloud (cached, shared with :func:`sinkhorn_divergence`). Same conventions
    (``tol``, ``max_iter``) as :func:`sinkhorn_divergence`, which it equals on small
    grids.

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
    # zero weights rather than fewer points: one array shape per grid, one compilation
    xk, ak = _pad_to_bucket(x, np.where(keep, p, 0.0) / p[keep].sum())
    yk, bk = _pad_to_bucket(y, b)
    geom_xy = pointcloud.PointCloud(jnp.asarray(xk), jnp.asarray(yk), epsilon=eps)
    xy, ok_xy, _ = _semidual_ot(geom_xy, ak, bk, float(tol), int(max_iter), axes=axes)
    geom_xx = ott_grid.Grid(x=[jnp.asarray(ax) for ax in axes], epsilon=eps)
    xx, ok_xx, _ = _reg_ot_cost(geom_xx, jnp.asarray(p), jnp.asarray(p), float(tol),
                                int(max_iter), mode="symmetric")
    yy, ok_yy, _ = _self_term(yk, bk, eps, "sqeuclidean", float(tol), int(max_iter))
    value = float(xy) - 0.5 * (float(xx) + float(yy))
    if not np.isfinite(value):
        raise FloatingPointError(
            f"Sinkhorn divergence is {value} at eps = {eps}: raise metrics.sinkhorn_eps")
    if not (bool(ok_xy) and bool(ok_xx) and bool(ok_yy)):
        warnings.warn(f"grid Sinkhorn divergence missed tol {tol:g} within "
                      f"{max_iter} iterations at eps = {eps:g}", RuntimeWarning,
                      stacklevel=2)
    return max(value, 0.0), pruned


def compress_measure(points, weights, max_points: int, offset: float = 0.5):
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
    u = (np.arange(max_points) + offset) / max_points
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
      ("" if unknown: the direction gap is then left empty).  noise: the method's own
      standard errors ``loss_se`` of F and ``pred_se`` of f (0: deterministic; NaN:
      unknown, one sampled draw); the reference's are ``reference["loss_se"]`` etc.
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
    noise: dict | None = None


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


def noise_floor(se, se_ref) -> float:
    """One standard error of a gap between two estimates: √(se² + se_ref²) (NaN if unknown)."""
    return float(math.hypot(float(se), float(se_ref)))


def _noise(ctx: RowContext) -> dict:
    own = ctx.noise or {}
    out = {"loss_se": float(own.get("loss_se", math.nan))}
    ref = ctx.reference
    if ref is None:
        return out
    out["loss_gap_floor"] = noise_floor(out["loss_se"], ref.get("loss_se", math.nan))
    out["pred_gap_floor"] = noise_floor(own.get("pred_se", math.nan),
                                        ref.get("pred_se", math.nan))
    return out


def _measure_gap(ctx: RowContext) -> dict:
    mc = ctx.settings
    wanted = {"all": True, "final": ctx.final, "none": False}[mc.measure_gap]
    if ctx.reference is None or not wanted:
        return {}
    gd_pts, gd_w, floor = reference_measure(ctx.reference, mc, ctx.cost)
    out = {} if floor is None else {"measure_gap_floor": floor}
    solver = {"tol": mc.sinkhorn_tol, "max_iter": mc.sinkhorn_max_iter}
    grid, large = ctx.kind == "grid", len(ctx.weights) > mc.max_grid_support
    if grid and large and getattr(ctx.geom, "is_box", False):
        # a large Cartesian box: exact, its self-term on OTT's separable Grid
        gap, dropped = grid_sinkhorn_divergence(ctx.geom, ctx.weights, gd_pts, gd_w,
                                                mc.sinkhorn_eps, **solver)
        return {"measure_gap": gap, "measure_gap_grid_tv": dropped, **out}
    w = np.asarray(ctx.weights)
    if grid:
        pts, w, dropped = compress_measure(ctx.points, w, mc.max_grid_support)
    elif w.size and not np.all(w == w.flat[0]):  # weighted particles: as GD's, compressed
        (pts, w, _), dropped = compress_measure(ctx.points, w, mc.max_support), None
    else:  # uniform particles: the first max_support are an iid subsample
        pts, dropped = ctx.points[: mc.max_support], None
        w = np.full(len(pts), 1.0 / len(pts))
    gap = sinkhorn_divergence(pts, w, gd_pts, gd_w, mc.sinkhorn_eps, ctx.cost, **solver)
    return {"measure_gap": gap, "measure_gap_grid_tv": dropped, **out}


def reference_measure(reference: dict, settings, cost: str):
    """GD's measure for the measure gap, and the floor its compression puts under the gap.

    A sampled (uniform, iid) GD: its first ``max_support`` particles, floor None. The
    weighted grid-matched GD: compressed to ``max_support`` atoms (:func:`compress_measure`,
    quantile offset ½), floor = S_ε between that and the compression at offset ¼ (the
    compression's own error). Cached in ``reference`` (one record's GD serves every method).

    Returns:
      (points (K, D), weights (K,), floor or None).
    """
    if "_measure" in reference:
        return reference["_measure"]
    pts, w, mc = reference["support"], reference.get("weights"), settings
    if w is None or np.all(np.asarray(w) == np.asarray(w).flat[0]):
        pts = pts[: mc.max_support]
        out = (pts, np.full(len(pts), 1.0 / len(pts)), None)
    else:
        a_pts, a_w, _ = compress_measure(pts, w, mc.max_support)
        b_pts, b_w, _ = compress_measure(pts, w, mc.max_support, offset=0.25)
        floor = sinkhorn_divergence(a_pts, a_w, b_pts, b_w, mc.sinkhorn_eps, cost,
                                    tol=mc.sinkhorn_tol, max_iter=mc.sinkhorn_max_iter)
        out = (a_pts, a_w, floor)
    reference["_measure"] = out
    return out


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
    wanted = wanted and mc.direction_gap is not False
    if ctx.reference is None or not wanted or ctx.param not in ("neuron", "sphere"):
        return {}
    gd, gd_w = ctx.reference["support"], ctx.reference.get("weights")
    gd_w = np.full(len(gd), 1 / len(gd)) if gd_w is None else gd_w
    x, a, _ = compress_measure(*direction_measure(ctx.param, ctx.points, ctx.weights),
                               mc.max_support)
    y, b, _ = compress_measure(*direction_measure(ctx.param, gd, gd_w), mc.max_support)
    gap = sinkhorn_divergence(x, a, y, b, mc.sinkhorn_eps, "sphere_line",
                              tol=mc.sinkhorn_tol, max_iter=mc.sinkhorn_max_iter)
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
    RowMetric(("loss_se", "loss_gap_floor", "pred_gap_floor"), _noise,
              "noise floors: the method's seed standard error of F (0: deterministic, "
              "empty: one sampled draw) and one standard error of loss_gap and pred_gap "
              "(method and GD combined)", shown=("loss_gap_floor",)),
    RowMetric(("measure_gap", "measure_gap_grid_tv", "measure_gap_floor"), _measure_gap,
              "debiased Sinkhorn divergence to GD's particles, the grid mass it moved, and "
              "the floor of a compressed (weighted) GD: the divergence between two of its "
              "compressions",
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
