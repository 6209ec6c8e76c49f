r"""(a) F* restricted to a finite direction set: a Lasso.

Solved by FISTA with adaptive restart, gap-safe screening and an exact interior-point
finish (Clarabel); ``optimum_circle`` adds the chamber-boundary (kink) directions for
second-order accuracy in d = 2.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mfjko.geometry.sphere import circle_directions
from mfjko.objective import fit_loss
from mfjko.optimum.arrangements import activation_patterns
from mfjko.optimum.convex import (
    OptimumResult,
    _certificate,
    _check_data,
    _check_directions,
    direction_features,
)

# ----------------------------------------------------------------------- FISTA (Lasso)


@partial(jax.jit, static_argnames=("max_iter",))
def _fista(Phi, y, lam, L, nu0, tol, max_iter: int):
    """FISTA with gradient-based adaptive restart (O'Donoghue & Candès 2015) on the Lasso.

    P(ν) = (1/(2n))‖Φν − y‖² + λ‖ν‖₁, step 1/L with L = ‖Φ‖₂²/n. Stops when the certified
    grid duality gap P(ν_k) − D(c·r_k/n) drops below ``tol`` or after ``max_iter``.
    """
    n = y.shape[0]
    soft = lambda v, a: jnp.sign(v) * jnp.maximum(jnp.abs(v) - a, 0.0)

    def gap_of(x, Phix):
        r = Phix - y
        primal = fit_loss(Phix, y) + lam * jnp.sum(jnp.abs(x))
        g = r / n
        sup = jnp.max(jnp.abs(Phi.T @ g))
        c = jnp.minimum(1.0, lam / jnp.maximum(sup, 1e-300))
        dual = -c * (g @ y) - 0.5 * n * c * c * (g @ g)
        return primal - dual

    def cond(state):
        k, _, _, _, _, _, gap = state
        return (k < max_iter) & (gap > tol)

    def body(state):
        k, x, Phix, z, Phiz, t, _ = state
        grad = Phi.T @ (Phiz - y) / n
        x_new = soft(z - grad / L, lam / L)
        Phix_new = Phi @ x_new
        restart = jnp.dot(z - x_new, x_new - x) > 0
        t_new = jnp.where(restart, 1.0, 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)))
        beta = jnp.where(restart, 0.0, (t - 1.0) / t_new)
        z_new = x_new + beta * (x_new - x)
        Phiz_new = Phix_new + beta * (Phix_new - Phix)
        return k + 1, x_new, Phix_new, z_new, Phiz_new, t_new, gap_of(x_new, Phix_new)

    Phix0 = Phi @ nu0
    state = (0, nu0, Phix0, nu0, Phix0, jnp.asarray(1.0), gap_of(nu0, Phix0))
    k, x, *_, gap = jax.lax.while_loop(cond, body, state)
    return x, k, gap


def _restricted_lasso(Phi, y, lam, cols, tol):
    """Exact Lasso on the columns ``cols`` by Clarabel (split ν = a − b, a, b ≥ 0)."""
    import cvxpy as cp  # heavy, loaded on use (start-up cost)

    A = Phi[:, cols]
    a = cp.Variable(len(cols), nonneg=True)
    b = cp.Variable(len(cols), nonneg=True)
    obj = cp.sum_squares(A @ (a - b) - y) / (2 * len(y)) + lam * cp.sum(a + b)
    prob = cp.Problem(cp.Minimize(obj))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # accuracy is certified afterwards
        prob.solve(solver="CLARABEL", tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        return None
    nu = np.zeros(Phi.shape[1])
    nu[cols] = np.asarray(a.value) - np.asarray(b.value)
    # Interior-point iterates are never exactly sparse: drop atoms far below the scale
    # of the solution (their effect on P is below the solver tolerance).
    nu[np.abs(nu) < 1e-12 * max(1.0, np.max(np.abs(nu)))] = 0.0
    return nu


def _screen_and_solve(X, y, lam, S, Phi, nu, gap, tol):
    """Stage 2 of :func:`optimum_directions`: gap-safe screening, then the exact Lasso.

    Returns the better of ``nu`` and the exact solution on the surviving columns, its
    certified grid gap, and the number of surviving columns.
    """
    n = len(y)
    r = Phi @ nu - y
    g = r / n
    sup = np.max(np.abs(Phi.T @ g))
    g = g * min(1.0, lam / sup)
    radius = np.sqrt(2.0 * gap / n)
    keep = np.abs(Phi.T @ g) + np.linalg.norm(Phi, axis=0) * radius >= lam
    cols = np.flatnonzero(keep)
    exact = _restricted_lasso(Phi, y, lam, cols, min(tol, 1e-10)) if cols.size else None
    if exact is not None:
        p, dgrid, _ = _certificate(X, y, lam, exact, S)
        if p - dgrid < gap:
            nu, gap = exact, p - dgrid
    return nu, gap, int(cols.size)


def optimum_directions(
    X,
    y,
    lam: float,
    directions,
    tol: float = 1e-9,
    max_iter: int = 3000,
    patterns: np.ndarray | None = None,
    finish: bool = True,
) -> OptimumResult:
    """Minimize P(ν) over ν supported on ``directions`` (K, d) unit vectors.

    The target is a certified grid duality gap below ``tol`` (absolute, in units of F).

    Stage 1: FISTA with adaptive restart until the gap is below ``tol`` or ``max_iter``
    iterations (on fine grids neighbouring columns are nearly collinear, so FISTA's local
    linear rate is poor). Stage 2, if needed: gap-safe screening — the dual D is
    n-strongly concave, so ‖g − g*‖ ≤ √(2·gap/n) and every column with
    |φ_kᵀg| + ‖φ_k‖√(2·gap/n) < λ carries no mass at the optimum — then the Lasso on the
    surviving columns is solved exactly by Clarabel and certified again on the full grid.
    With ``patterns`` (all chamber patterns of X) the result also carries a certified
    lower bound on the continuous F*. ``finish=False`` skips stage 2 (then the result may
    miss ``tol``; meta["converged"] says so).
    """
    X, y = _check_data(X, y, lam)
    S = _check_directions(directions, X.shape[1])
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    n = len(y)
    Phi = direction_features(X, S)
    # L = ‖Φ‖₂²/n from the small n×n Gram matrix (an SVD of Φ would be K×K).
    L = float(np.linalg.eigvalsh(Phi @ Phi.T)[-1]) / n
    nu_j, k, gap_j = _fista(jnp.asarray(Phi), jnp.asarray(y), lam, L, jnp.zeros(S.shape[0]),
                            tol, max_iter)
    nu, iters, gap = np.asarray(nu_j), int(k), float(gap_j)
    screened = S.shape[0]
    if gap > tol and finish:
        nu, gap, screened = _screen_and_solve(X, y, lam, S, Phi, nu, gap, tol)
    primal, grid_dual, cont_dual = _certificate(X, y, lam, nu, S, patterns)
    return OptimumResult(
        value=primal,
        nu=nu,
        directions=S,
        duality_gap=primal - grid_dual,
        iterations=iters,
        method="directions",
        lower_bound=cont_dual,
        meta={"tol": tol, "converged": bool(primal - grid_dual <= tol),
              "n_dirs": int(S.shape[0]), "support": int(np.count_nonzero(nu)),
              "screened_columns": screened},
    )


def kink_directions(X) -> np.ndarray:
    """The 2n' unit directions s ⊥ x_j (d = 2), shape (2n', 2) for the n' non-zero rows.

    These are the chamber boundaries, where a neuron's kink sits exactly at a data point.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"kink_directions needs X of shape (n, 2), got {X.shape}")
    Xn = X[np.linalg.norm(X, axis=1) > 0]
    perp = np.stack([-Xn[:, 1], Xn[:, 0]], axis=1) / np.linalg.norm(Xn, axis=1)[:, None]
    return np.concatenate([perp, -perp])


def optimum_circle(
    X, y, lam: float, n_dirs: int = 10_000, tol: float = 1e-9, offset: float = 0.0,
    include_kinks: bool = True, max_iter: int = 3000,
) -> OptimumResult:
    """(a) for d = 2 (1-D inputs with a bias column): ν on a uniform circle grid (+ kinks).

    The grid has ``n_dirs`` directions (rotated by ``offset``/(2π) of a spacing); with
    ``include_kinks`` it also has the 2n chamber-boundary directions
    (:func:`kink_directions`).

    Why the kinks: optimal atoms often sit exactly on a chamber boundary (a ReLU kink at a
    data point; the dual certificate η(s) = Σ_j g_j σ(sᵀx_j) then has a corner at its
    maximum), and a grid missing that direction pays an error of first order in the
    spacing; with them, the remaining atoms lie inside chambers where η is smooth and the
    error is of second order (measured in tests/test_optimum.py). ``lower_bound`` is a
    certified lower bound on the continuous F* (exact dual sup over the circle).
    """
    X, y = _check_data(X, y, lam)
    if X.shape[1] != 2:
        raise ValueError(f"optimum_circle needs d = 2 (1-D data + bias), got d = {X.shape[1]}")
    S = circle_directions(n_dirs, offset)
    if include_kinks:
        S = np.concatenate([S, kink_directions(X)])
    res = optimum_directions(X, y, lam, S, tol, max_iter, patterns=activation_patterns(X))
    return OptimumResult(**{**res.__dict__, "method": "circle"})


