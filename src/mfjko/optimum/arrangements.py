r"""Activation patterns of the data's hyperplane arrangement {u : x_jᵀu = 0}.

Exact for d = 2 (sorted angles), by incremental LP splitting (HiGHS) for d > 2, with a
count bound.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog

# ------------------------------------------------------------------ activation patterns


def _distinct_hyperplanes(X: np.ndarray) -> np.ndarray:
    """Indices of rows defining distinct hyperplanes x_jᵀu = 0.

    Zero rows are dropped, and so are rows parallel to an earlier one (of either sign).
    """
    keep: list[int] = []
    units: list[np.ndarray] = []
    for j, x in enumerate(X):
        nx = np.linalg.norm(x)
        if nx == 0:
            continue
        u = x / nx
        if any(abs(abs(u @ v) - 1.0) < 1e-12 for v in units):
            continue
        keep.append(j)
        units.append(u)
    return np.asarray(keep, dtype=int)


def chamber_count_bound(X) -> int:
    """Upper bound 2 Σ_{k<r} C(N−1, k) on the number of chambers of X's arrangement.

    The central arrangement of the N distinct hyperplanes x_jᵀu = 0 in ℝ^d, r = rank X;
    the bound is attained in general position.
    """
    X = np.asarray(X, dtype=np.float64)
    N = len(_distinct_hyperplanes(X))
    r = int(np.linalg.matrix_rank(X)) if N else 0
    if N == 0:
        return 1
    return 2 * sum(math.comb(N - 1, k) for k in range(r))


def _patterns_2d(X: np.ndarray) -> np.ndarray:
    """All chamber patterns for d = 2, from the sorted boundary angles φ_j ± π/2."""
    nz = np.linalg.norm(X, axis=1) > 0
    ang = np.arctan2(X[nz, 1], X[nz, 0])
    bounds = np.sort(np.mod(np.concatenate([ang + np.pi / 2, ang - np.pi / 2]), 2 * np.pi))
    nxt = np.concatenate([bounds[1:], bounds[:1] + 2 * np.pi])
    width = nxt - bounds
    mids = (bounds + nxt)[width > 1e-12] / 2
    U = np.stack([np.cos(mids), np.sin(mids)], axis=1)
    return np.unique(X @ U.T > 0, axis=1).T


def _patterns_lp(X: np.ndarray, max_patterns: int) -> np.ndarray:
    """All chamber patterns for general d by incremental LP splitting (see module doc)."""
    n, d = X.shape
    rows = _distinct_hyperplanes(X)
    if rows.size == 0:
        return np.zeros((1, n), dtype=bool)
    bound = 1e6
    # A cell is (signs over processed rows, interior point with margin >= 1 on them).
    u0 = np.zeros(d)
    first = X[rows[0]]
    u0 = first / (first @ first)
    cells: list[tuple[np.ndarray, np.ndarray]] = [
        (np.array([1.0]), u0), (np.array([-1.0]), -u0)]
    done = [rows[0]]
    for j in rows[1:]:
        x = X[j]
        new_cells = []
        A_done = X[done]
        for signs, u in cells:
            for s in (1.0, -1.0):
                if s * (x @ u) >= 1.0:
                    new_cells.append((np.append(signs, s), u))
                    continue
                # Feasibility LP: signs_i x_iᵀu ≥ 1 (processed), s xᵀu ≥ 1, |u| ≤ bound.
                A_ub = -np.vstack([signs[:, None] * A_done, s * x[None, :]])
                res = linprog(np.zeros(d), A_ub=A_ub, b_ub=-np.ones(len(signs) + 1),
                              bounds=[(-bound, bound)] * d, method="highs")
                if res.status == 0:
                    new_cells.append((np.append(signs, s), res.x))
            if len(new_cells) > max_patterns + 1:
                raise ValueError(
                    f"the data's hyperplane arrangement has more than {max_patterns} "
                    f"activation patterns (max_patterns); use optimum_directions instead")
        cells = new_cells
        done.append(j)
    U = np.stack([u for _, u in cells], axis=1)
    return np.unique(X @ U > 0, axis=1).T


def activation_patterns(X, max_patterns: int = 100_000) -> np.ndarray:
    """Boolean (P, n) array of the distinct activation patterns 1[Xu > 0] of the chambers.

    The chambers are those of the data's hyperplane arrangement (the all-zero pattern is
    included if it occurs).

    d = 2: exact, by sorting the boundary angles. d > 2: incremental LP splitting
    (guarantee in the module doc). ValueError when more than ``max_patterns``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    if X.shape[1] == 2:
        P = _patterns_2d(X)
    else:
        P = _patterns_lp(X, max_patterns)
    if len(P) > max_patterns:
        raise ValueError(
            f"the data's hyperplane arrangement has {len(P)} activation patterns, more than "
            f"max_patterns={max_patterns}; use optimum_directions instead")
    return P


