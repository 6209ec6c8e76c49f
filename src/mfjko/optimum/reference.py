r"""(c) Refined F* for d > 2 with too many chambers, and :func:`reference_value`.

:func:`reference_value` picks (b) when the chambers are few, else (a) for d = 2 and (c)
for d > 2, and says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfjko.geometry.sphere import sphere_directions
from mfjko.optimum.arrangements import chamber_count_bound
from mfjko.optimum.convex import (
    OptimumResult,
    _check_data,
    _cone_sup,
    direction_features,
    dual_sup,
    dual_value,
)
from mfjko.optimum.exact import _solve_on_patterns, optimum_exact
from mfjko.optimum.lasso import optimum_circle, optimum_directions


@dataclass(frozen=True)
class ReferenceValue:
    """F* for a data set, with the solver that produced it and why."""

    value: float
    lower_bound: float
    method: str
    reason: str
    result: OptimumResult


def optimum_refined(
    X, y, lam: float, directions, tol: float = 1e-6, max_iter: int = 3000,
    max_patterns: int = 2000, max_rounds: int = 12,
) -> OptimumResult:
    """(a), then the exact program on the chambers met by the grid's near-active directions.

    For d > 2, where the chambers are too many to enumerate.

    The grid Lasso (:func:`optimum_directions`) finds the columns that survive gap-safe
    screening (|φ_kᵀg| within the safe margin of λ); their patterns 1[X s_k ≥ 0] name the
    chambers where optimal atoms can lie up to the grid's resolution. The Pilanci–Ergen
    program over those chambers lets atoms move continuously inside them, removing the
    grid's discretization error (so the grid solve needs only a moderate ``tol``).
    ``value`` is a feasible value (an upper bound on F*, never above the grid's); it
    equals F* when the optimal chambers are among those met (always
    observed in tests, not guaranteed). ``lower_bound`` is NaN (no certificate over the
    whole sphere); meta["sampled_dual"] is the dual value with the sup taken over the met
    chambers only (a lower bound *if* they contain the maximizers).
    """
    X, y = _check_data(X, y, lam)
    grid = optimum_directions(X, y, lam, directions, tol, max_iter, finish=False)
    n = X.shape[0]
    Phi = direction_features(X, grid.directions)
    g = (Phi @ grid.nu - y) / n
    eta = np.abs(Phi.T @ g)
    # Candidate chambers: directions whose dual value is close to the maximum (the safe
    # screening margin, at least 5% of λ so that chambers adjacent to the atoms are kept).
    radius = max(np.sqrt(2.0 * max(grid.duality_gap, 0.0) / n), 0.05 * lam)
    near = np.flatnonzero(eta + np.linalg.norm(Phi, axis=0) * radius >= min(lam, eta.max()))
    # At most 100 starting chambers (the most active directions): column generation below
    # adds whatever else is needed, and small cone programs are fast.
    near = near[np.argsort(eta[near])[-100:]]
    patterns = np.unique(X @ grid.directions[near].T >= 0, axis=1).T
    # Chambers met by the grid, each with one grid direction inside it (a witness).
    grid_patterns, first = np.unique(X @ grid.directions.T >= 0, axis=1, return_index=True)
    grid_patterns, witnesses = grid_patterns.T, grid.directions[first]
    n_rounds, total_iters = 0, 0
    best = None
    thr = lam * (1 + 1e-7)
    # Local column generation: re-solve; price every chamber met by a grid direction and
    # every pattern one activation away from a chamber carrying mass by the sup of |η| over
    # its cone; add the (at most 50) most violating ones (sup > λ); stop when none
    # violates. Pricing is exact (NNLS cone projection) except where cheap bounds decide:
    # sup ≤ ‖a‖ (a = Xᵀ D g) and sup ≥ |aᵀs| for a witness s in the chamber.
    for _ in range(max_rounds):
        n_rounds += 1
        nu, dirs, status, iters, _, used = _solve_on_patterns(X, y, lam, patterns)
        total_iters += iters
        r = direction_features(X, dirs) @ nu - y
        primal = float(0.5 * np.mean(r * r) + lam * np.sum(np.abs(nu)))
        if best is None or primal < best[0]:
            best = (primal, nu, dirs, status)
        g = r / n
        flips = [np.repeat(D[None, :], n, axis=0) ^ np.eye(n, dtype=bool) for D in used]
        cand = np.concatenate([grid_patterns] + flips) if flips else grid_patterns
        wit = np.concatenate([witnesses, np.full((len(cand) - len(witnesses), X.shape[1]),
                                                 np.nan)])
        current = {p.tobytes() for p in patterns}
        fresh = np.asarray([D.any() and D.tobytes() not in current for D in cand], dtype=bool)
        cand, wit = cand[fresh], wit[fresh]
        a_all = (cand * g) @ X  # (C, d): η(u) = a·u on each cone
        upper = np.linalg.norm(a_all, axis=1)
        lower = np.abs(np.nan_to_num(np.sum(a_all * wit, axis=1), nan=0.0))
        scored = []
        seen = set()
        for D, a, ub, lb in zip(cand, a_all, upper, lower, strict=True):
            key = D.tobytes()
            if ub <= thr or key in seen:
                continue
            seen.add(key)
            if lb > thr:
                scored.append((lb, D))
                continue
            A = np.where(D, 1.0, -1.0)[:, None] * X
            v = max(_cone_sup(A, a), _cone_sup(A, -a))
            if v > thr:
                scored.append((v, D))
        if not scored:
            break
        scored.sort(key=lambda t: -t[0])
        added = np.asarray([D for _, D in scored[:50]])
        # Keep only the chambers that carry mass plus the new ones: the cone program
        # stays small (dropped chambers are priced again next round).
        patterns = np.unique(np.concatenate([used, added]), axis=0)[:max_patterns]
    primal, nu, dirs, status = best
    if primal > grid.value:  # numerical safety: never worse than the grid solution
        return OptimumResult(**{**grid.__dict__, "method": "refined",
                                "meta": {**grid.meta, "refinement": "rejected"}})
    r = direction_features(X, dirs) @ nu - y
    sup = dual_sup(X, r / n, patterns)
    c = 1.0 if sup <= lam else lam / sup
    return OptimumResult(
        value=primal,
        nu=nu,
        directions=dirs,
        duality_gap=grid.duality_gap,
        iterations=grid.iterations,
        method="refined",
        lower_bound=float("nan"),
        meta={**grid.meta, "grid_value": grid.value, "refine_patterns": int(len(patterns)),
              "refine_status": status, "refine_iterations": total_iters,
              "refine_rounds": n_rounds, "sampled_dual": dual_value(y, c * r / n)},
    )


# --------------------------------------------------------------------- reference value


def reference_value(
    dataset,
    lam: float,
    *,
    max_patterns: int = 400,
    n_dirs: int = 10_000,
    n_sphere_dirs: int = 2048,
    tol: float = 1e-9,
    seed: int = 0,
) -> ReferenceValue:
    """F* for ``dataset`` (any object with ``X`` (n, d) incl. bias and ``y`` (n,)).

    Picks the exact program (b) when the chamber-count bound (:func:`chamber_count_bound`)
    is at most ``max_patterns``; otherwise (a): the circle grid for d = 2, quasi-uniform
    sphere points refined by the exact program on the chambers they meet for d > 2
    (:func:`optimum_refined`; then ``value`` is an upper bound on F* and ``lower_bound``
    is NaN). ``reason`` says which and why. The same F* holds for ``pm`` and ``sphere``
    (their V gives the same λ‖ν‖_TV).
    """
    X, y = _check_data(dataset.X, dataset.y, lam, allow_zero_lam=True)
    bound = chamber_count_bound(X)
    if bound <= max_patterns:
        res = optimum_exact(X, y, lam, max_patterns=max_patterns)
        why = f"chamber count <= {bound} <= max_patterns={max_patterns}: exact convex program"
        return ReferenceValue(res.value, res.lower_bound, "exact", why, res)
    if lam <= 0:
        raise ValueError("lam = 0 needs the exact program; the arrangement is too large "
                         f"({bound} chambers > max_patterns={max_patterns})")
    if X.shape[1] == 2:
        res = optimum_circle(X, y, lam, n_dirs=n_dirs, tol=tol)
        why = f"{bound} chambers > max_patterns: circle grid of {n_dirs} directions"
        return ReferenceValue(res.value, res.lower_bound, "circle", why, res)
    S = sphere_directions(n_sphere_dirs, X.shape[1], seed)
    res = optimum_refined(X, y, lam, S)
    why = (f"{bound} chambers > max_patterns: {n_sphere_dirs} quasi-uniform directions on "
           f"S^{X.shape[1] - 1}, then the exact program on the chambers they meet "
           f"({res.meta.get('refine_patterns', 0)}); an upper bound on F*")
    return ReferenceValue(res.value, res.lower_bound, "refined", why, res)


