r"""(b) The exact convex reformulation of Pilanci & Ergen (2020).

A second-order cone program over the chambers of the arrangement, solved by Clarabel
through cvxpy.
"""

from __future__ import annotations

import warnings

import numpy as np

from mfjko.optimum.arrangements import activation_patterns
from mfjko.optimum.convex import (
    OptimumResult,
    _check_data,
    direction_features,
    dual_sup,
    dual_value,
)

# -------------------------------------------------------------------- exact (convex) F*


def _solve_on_patterns(X, y, lam, patterns, solver="CLARABEL", tol=1e-10):
    """The Pilanci–Ergen program over the given patterns (rows of a boolean (P, n) array).

    Any feasible point is a feasible measure, so over a *subset* of the chamber patterns
    the value is an upper bound on F*; over all of them it is F*. Returns
    (nu, directions, status, iterations, solver objective, patterns of the atoms).
    """
    import cvxpy as cp  # heavy, loaded on use (start-up cost)

    n, d = X.shape
    active = np.asarray(patterns, dtype=bool)
    active = active[active.any(axis=1)]
    if len(active) == 0:  # no neuron is ever active: ν = 0
        return (np.zeros(1), np.eye(d)[:1], "optimal", 0, float(0.5 * np.mean(y * y)),
                np.zeros((0, n), dtype=bool))
    P = len(active)
    Dm = active.T.astype(np.float64)  # (n, P)
    V = cp.Variable((P, d))
    W = cp.Variable((P, d))
    XV, XW = X @ V.T, X @ W.T
    pred = cp.sum(cp.multiply(Dm, XV - XW), axis=1)
    objective = cp.sum_squares(pred - y) / (2 * n) + lam * (
        cp.sum(cp.norm(V, 2, axis=1)) + cp.sum(cp.norm(W, 2, axis=1)))
    sgn = 2.0 * Dm - 1.0
    problem = cp.Problem(cp.Minimize(objective),
                         [cp.multiply(sgn, XV) >= 0, cp.multiply(sgn, XW) >= 0])
    opts = {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol} if solver == "CLARABEL" else {}
    with warnings.catch_warnings():
        # "optimal_inaccurate" is reported in meta and the gap is certified independently.
        warnings.simplefilter("ignore", UserWarning)
        problem.solve(solver=solver, **opts)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"convex solver {solver} failed: status {problem.status}")
    vecs = np.concatenate([np.asarray(V.value), np.asarray(W.value)])
    signs = np.concatenate([np.ones(P), -np.ones(P)])
    mass = np.linalg.norm(vecs, axis=1)
    # Interior-point solutions are never exactly sparse; atoms 1e-12 below the largest
    # change P by less than the solver tolerance.
    keep = mass > 1e-12 * max(1.0, mass.max(initial=0.0))
    if not keep.any():
        return (np.zeros(1), np.eye(d)[:1], problem.status, 0, float(problem.value),
                np.zeros((0, n), dtype=bool))
    dirs = vecs[keep] / mass[keep, None]
    nu = signs[keep] * mass[keep]
    used = np.concatenate([active, active])[keep]
    return (nu, dirs, problem.status, int(problem.solver_stats.num_iters or 0),
            float(problem.value), used)


def optimum_exact(
    X, y, lam: float, max_patterns: int = 1000, solver: str = "CLARABEL", tol: float = 1e-10,
) -> OptimumResult:
    """(b) F* by the exact convex program of Pilanci & Ergen (2020) (module doc).

    Solved by Clarabel through cvxpy with gap tolerances ``tol``, over all chamber patterns
    (:func:`activation_patterns`; ValueError beyond ``max_patterns``). lam = 0 is allowed
    (then F* is the squared distance/(2n) of y to the closed cone {Φν}).

    Returns ν as atoms (v_i/‖v_i‖, +‖v_i‖), (w_i/‖w_i‖, −‖w_i‖); ``value`` = P(ν) evaluated
    with σ (a feasible upper bound); ``lower_bound`` = D(c·r/n) with the exact dual sup
    over all chambers (lam > 0); ``duality_gap`` = their difference; meta holds the pattern
    count, solver status and the solver's own objective.
    """
    X, y = _check_data(X, y, lam, allow_zero_lam=True)
    n = X.shape[0]
    patterns = activation_patterns(X, max_patterns)
    nu, dirs, status, iters, solver_value, _ = _solve_on_patterns(X, y, lam, patterns, solver,
                                                                   tol)
    r = direction_features(X, dirs) @ nu - y
    primal = float(0.5 * np.mean(r * r) + lam * np.sum(np.abs(nu)))
    if lam > 0:
        sup = dual_sup(X, r / n, patterns)
        c = 1.0 if sup <= lam else lam / sup
        lower = dual_value(y, c * r / n)
    else:
        lower = float("nan")
    return OptimumResult(
        value=primal,
        nu=nu,
        directions=dirs,
        duality_gap=primal - lower if lam > 0 else float("nan"),
        iterations=iters,
        method="exact",
        lower_bound=lower,
        meta={"n_patterns": int(patterns.any(axis=1).sum()), "status": status,
              "solver": solver, "solver_value": solver_value, "tol": tol},
    )


