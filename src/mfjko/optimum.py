r"""The global optimum F* of the mean-field objective, and the orthogonal-input limit.

Reduction to a convex problem on the sphere (``neuron`` parametrization)
-----------------------------------------------------------------------
F(μ) = (1/(2n)) Σ_j (f_μ(x_j) − y_j)² + (λ/2) ∫ (‖w‖² + α²) dμ(w, α),  μ a probability
measure on ℝ^d × ℝ (d counts the bias column). A neuron (w, α) outputs
α σ(wᵀx) = β σ(sᵀx) with s = w/‖w‖ and β = ‖w‖·α (positive 1-homogeneity of σ), and
‖w‖² + α² ≥ 2‖w‖|α| = 2|β| with equality iff the neuron is balanced (‖w‖ = |α|).
Pushing μ forward to the signed measure ν = ∫ β δ_s dμ on S^{d−1} therefore gives
f_μ = Φν and (λ/2)∫V dμ ≥ (λ/2)·2‖ν‖_TV = λ‖ν‖_TV, with Φν(x) = ∫ σ(sᵀx) dν(s). Conversely
every finite signed measure ν = Σ_k β_k δ_{s_k} is reached with equality by a *probability*
measure: put weight p_k = |β_k|/‖β‖₁ on the balanced neuron (r s_k, sign(β_k) r) with
r² = ‖β‖₁ (so p_k r² = |β_k|); the zero neuron costs nothing, so any total variation
is reachable (see :func:`neuron_measure`). Hence

    F* = inf_μ F(μ) = min_ν P(ν),   P(ν) = (1/(2n)) ‖Φν − y‖² + λ ‖ν‖_TV,

a convex problem over signed measures on the sphere (the constant is λ, not λ/2).

Its Fenchel dual, with g ∈ ℝ^n playing the role of the scaled residual (Φν − y)/n:

    D(g) = −gᵀy − (n/2)‖g‖²,   subject to  sup_{s ∈ S^{d−1}} |Σ_j g_j σ(sᵀx_j)| ≤ λ,

and P(ν) ≥ D(g) for every ν and every feasible g. Every solver here returns a *certified*
duality gap: it takes g = c·(Φν − y)/n with the largest c ≤ 1 making g feasible.

Two solvers
-----------
(a) :func:`optimum_directions` / :func:`optimum_circle`: restrict ν to a finite direction
    set (a fine circle grid for d = 2, quasi-uniform sphere points otherwise). This is a
    Lasso, solved by FISTA with gradient-based adaptive restart (soft thresholding is the
    prox of λ‖·‖₁). On fine grids neighbouring columns are nearly collinear and FISTA
    alone stalls (measured: certified gap 1.3e-5 after 2·10⁵ iterations with 10⁴
    directions), so it is followed by gap-safe screening and an exact interior-point
    solve (Clarabel) of the Lasso on the surviving columns. The returned ``duality_gap``
    certifies the *discretized* problem; its value is an upper bound on F* (any ν on the
    grid is a feasible measure) whose error is the grid's approximation error: of first
    order in the spacing when an optimal atom sits on a chamber wall (a kink at a data
    point, common), of second order once those wall directions are in the grid
    (``optimum_circle(include_kinks=True)``, the default; rates measured in
    tests/test_optimum.py). When the activation patterns can be enumerated
    (always for d = 2), ``lower_bound`` is additionally a certified lower bound on the
    *continuous* F* (exact dual sup over the whole sphere, see :func:`dual_sup`).
(b) :func:`optimum_exact`: the exact convex reformulation of Pilanci & Ergen (2020). The
    data's hyperplane arrangement {u : x_jᵀu = 0} cuts ℝ^d into chambers; on the closure
    K_i = {u : (2D_i − I)Xu ≥ 0} of chamber i, σ(Xu) = D_i X u with D_i = diag(1[Xu ≥ 0]).
    Grouping the atoms of ν by chamber and sign (v_i = Σ β_k s_k over positive atoms
    in K_i, w_i likewise for negative ones; ‖v_i‖ ≤ Σ β_k by the triangle inequality,
    with equality for a single atom v_i/‖v_i‖) gives

        F* = min Σ_i λ(‖v_i‖ + ‖w_i‖) + (1/(2n)) ‖Σ_i D_i X (v_i − w_i) − y‖²
             s.t. (2D_i − I) X v_i ≥ 0, (2D_i − I) X w_i ≥ 0,

    a second-order cone program, solved with Clarabel through cvxpy. Chambers are
    enumerated exactly for d = 2 (sorted angles) and, for d > 2, by the incremental
    method: each row's hyperplane splits each current cell iff an LP (HiGHS) finds a point
    with margin 1 on both sides; the count grows like 2 Σ_{k<d} C(n−1, k), hence
    ``max_patterns``. Guarantee for d > 2: every chamber whose cone contains a point u
    with |x_jᵀu| ≥ 1 for all j and ‖u‖_∞ ≤ 1e6 is found (HiGHS feasibility tolerance).
(c) :func:`optimum_refined`, for d > 2 with too many chambers: (a) on quasi-uniform
    sphere points, then (b) restricted to the chambers met by near-active directions,
    grown by local column generation (chambers priced by their exact cone sup of |η|).
    A feasible value (upper bound on F*), exact when the optimal chambers are found; no
    certificate over the whole sphere.

:func:`reference_value` picks (b) when the chamber count is small, otherwise (a) for
d = 2 and (c) for d > 2, and says which.

Orthogonal inputs (Boursier, Pillaud-Vivien & Flammarion 2022)
--------------------------------------------------------------
For pairwise orthogonal x_k and λ = 0, small balanced initialization, the gradient flow
of the classic network converges to h*(x) = σ(β₊ᵀx) − σ(β₋ᵀx) with
β± = Σ_{±y_k > 0} |y_k| x_k/‖x_k‖² (:func:`orthogonal_limit_predictor`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linprog, nnls
from scipy.stats import norm as _normal
from scipy.stats import qmc

__all__ = [
    "OptimumResult",
    "ReferenceValue",
    "circle_directions",
    "sphere_directions",
    "direction_features",
    "primal_value",
    "dual_value",
    "dual_sup",
    "activation_patterns",
    "chamber_count_bound",
    "optimum_directions",
    "optimum_circle",
    "kink_directions",
    "optimum_exact",
    "optimum_refined",
    "reference_value",
    "neuron_measure",
    "orthogonal_limit_vectors",
    "orthogonal_limit_predictor",
]


@dataclass(frozen=True)
class OptimumResult:
    """A (near-)minimizer ν = Σ_k nu[k] δ_{directions[k]} of P(ν) = F*'s convex form.

    value: P(ν) of the returned measure — an upper bound on F* (exact feasible value).
    lower_bound: a certified lower bound on the *continuous* F* (dual value with an exact
        sup over the whole sphere), or NaN when the activation patterns were not enumerated.
    duality_gap: certified gap of the problem the method solves (the direction-restricted
        Lasso for (a); the continuous problem for (b)).
    iterations: solver iterations (FISTA iterations for (a), interior-point for (b)).
    method: "circle" / "directions" / "exact".
    """

    value: float
    nu: np.ndarray
    directions: np.ndarray
    duality_gap: float
    iterations: int
    method: str
    lower_bound: float = float("nan")
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceValue:
    """F* for a data set, with the solver that produced it and why."""

    value: float
    lower_bound: float
    method: str
    reason: str
    result: OptimumResult


# ----------------------------------------------------------------------------- inputs


def _check_data(X, y, lam, *, allow_zero_lam: bool = False) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite (no NaN or inf)")
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0 or (lam == 0 and not allow_zero_lam):
        need = "lam >= 0" if allow_zero_lam else "lam > 0 (the dual certificate needs it)"
        raise ValueError(f"weight decay must satisfy {need}, got lam={lam}")
    return X, y


def _check_directions(directions, d: int) -> np.ndarray:
    S = np.asarray(directions, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] != d or S.shape[0] == 0:
        raise ValueError(f"directions must be a non-empty (K, {d}) array, got {S.shape}")
    norms = np.linalg.norm(S, axis=1)
    if not np.all(np.abs(norms - 1.0) < 1e-10):
        raise ValueError("directions must be unit vectors (rows of norm 1)")
    return S


# ------------------------------------------------------------------------ direction sets


def circle_directions(n_dirs: int, offset: float = 0.0) -> np.ndarray:
    """Uniform grid on S¹: s_k = (cos φ_k, sin φ_k), φ_k = (2π k + offset)/n_dirs; (n_dirs, 2).

    ``offset`` ∈ [0, 2π) rotates the grid by a fraction offset/(2π) of one spacing."""
    if n_dirs < 3:
        raise ValueError(f"n_dirs must be >= 3, got {n_dirs}")
    phi = (2.0 * np.pi * np.arange(n_dirs) + offset) / n_dirs
    return np.stack([np.cos(phi), np.sin(phi)], axis=1)


def sphere_directions(n_dirs: int, d: int, seed: int = 0) -> np.ndarray:
    """Quasi-uniform points on S^{d−1}, shape (n_dirs, d).

    d = 2: the uniform circle grid; d = 3: the Fibonacci sphere; d > 3: a scrambled Sobol
    sequence mapped to Gaussians by the inverse normal CDF and normalized (uniform in
    distribution with low discrepancy; not a packing)."""
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    if n_dirs < 1:
        raise ValueError(f"n_dirs must be >= 1, got {n_dirs}")
    if d == 2:
        return circle_directions(max(n_dirs, 3))
    if d == 3:
        k = np.arange(n_dirs) + 0.5
        z = 1.0 - 2.0 * k / n_dirs
        phi = np.pi * (1.0 + 5.0**0.5) * k
        r = np.sqrt(1.0 - z * z)
        return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Sobol' balance wants powers of 2
        u = qmc.Sobol(d, scramble=True, seed=seed).random(n_dirs)
    g = _normal.ppf(np.clip(u, 1e-12, 1 - 1e-12))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def direction_features(X, directions) -> np.ndarray:
    """Φ[j, k] = σ(s_kᵀ x_j), shape (n, K)."""
    return np.maximum(np.asarray(X) @ np.asarray(directions).T, 0.0)


# ---------------------------------------------------------------- primal, dual, certificate


def primal_value(X, y, lam, nu, directions) -> float:
    """P(ν) = (1/(2n))‖Φν − y‖² + λ‖ν‖₁ for ν = Σ_k nu[k] δ_{directions[k]}."""
    r = direction_features(X, directions) @ np.asarray(nu) - np.asarray(y)
    return float(0.5 * np.mean(r * r) + lam * np.sum(np.abs(nu)))


def dual_value(y, g) -> float:
    """D(g) = −gᵀy − (n/2)‖g‖² (a lower bound on F* when g is dual-feasible)."""
    g = np.asarray(g)
    return float(-g @ np.asarray(y) - 0.5 * len(g) * (g @ g))


def _cone_sup(A: np.ndarray, a: np.ndarray) -> float:
    """sup_{u : Au ≥ 0, ‖u‖ ≤ 1} aᵀu = ‖Π_K(a)‖ for the polyhedral cone K = {Au ≥ 0}.

    Moreau: a = Π_K(a) + Π_{K°}(a) with K° = {−Aᵀη : η ≥ 0}, and Π_{K°}(a) = −Aᵀη* with
    η* = argmin_{η ≥ 0} ‖a + Aᵀη‖ (a non-negative least-squares problem)."""
    eta, resid = nnls(A.T, -a)
    return float(resid)


def dual_sup(X, g, patterns: np.ndarray) -> float:
    """sup_{s ∈ S^{d−1}} |Σ_j g_j σ(sᵀx_j)|, exactly, given all chamber patterns.

    The closed chambers K_i = {(2D_i − I)Xu ≥ 0} cover ℝ^d and on K_i the function is the
    linear form (Xᵀ D_i g)ᵀu, whose sup over K_i ∩ ball is a cone projection (NNLS)."""
    X = np.asarray(X, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    best = 0.0
    for D in np.asarray(patterns, dtype=bool):
        A = np.where(D, 1.0, -1.0)[:, None] * X
        a = X.T @ (D * g)
        best = max(best, _cone_sup(A, a), _cone_sup(A, -a))
    return best


def _certificate(X, y, lam, nu, directions, patterns=None) -> tuple[float, float, float]:
    """(primal value, grid dual value, continuous dual value or NaN) for ν on directions."""
    Phi = direction_features(X, directions)
    n = len(y)
    r = Phi @ nu - y
    primal = float(0.5 * np.mean(r * r) + lam * np.sum(np.abs(nu)))
    g = r / n
    grid_sup = float(np.max(np.abs(Phi.T @ g)))
    c = 1.0 if grid_sup <= lam else lam / grid_sup
    grid_dual = dual_value(y, c * g)
    cont_dual = float("nan")
    if patterns is not None:
        sup = dual_sup(X, g, patterns)
        c = 1.0 if sup <= lam else lam / sup
        cont_dual = dual_value(y, c * g)
    return primal, grid_dual, cont_dual


# ----------------------------------------------------------------------- FISTA (Lasso)


@partial(jax.jit, static_argnames=("max_iter",))
def _fista(Phi, y, lam, L, nu0, tol, max_iter: int):
    """FISTA with gradient-based adaptive restart (O'Donoghue & Candès 2015) on
    P(ν) = (1/(2n))‖Φν − y‖² + λ‖ν‖₁, step 1/L with L = ‖Φ‖₂²/n. Stops when the certified
    grid duality gap P(ν_k) − D(c·r_k/n) drops below ``tol`` or after ``max_iter``."""
    n = y.shape[0]
    soft = lambda v, a: jnp.sign(v) * jnp.maximum(jnp.abs(v) - a, 0.0)

    def gap_of(x, Phix):
        r = Phix - y
        primal = 0.5 * jnp.mean(r * r) + lam * jnp.sum(jnp.abs(x))
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
    import cvxpy as cp

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
    """Minimize P(ν) over ν supported on ``directions`` (K, d) unit vectors, to a certified
    grid duality gap below ``tol`` (absolute, in units of F).

    Stage 1: FISTA with adaptive restart until the gap is below ``tol`` or ``max_iter``
    iterations (on fine grids neighbouring columns are nearly collinear, so FISTA's local
    linear rate is poor). Stage 2, if needed: gap-safe screening — the dual D is
    n-strongly concave, so ‖g − g*‖ ≤ √(2·gap/n) and every column with
    |φ_kᵀg| + ‖φ_k‖√(2·gap/n) < λ carries no mass at the optimum — then the Lasso on the
    surviving columns is solved exactly by Clarabel and certified again on the full grid.
    With ``patterns`` (all chamber patterns of X) the result also carries a certified
    lower bound on the continuous F*. ``finish=False`` skips stage 2 (then the result may
    miss ``tol``; meta["converged"] says so)."""
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
        r = Phi @ nu - y
        g = r / n
        sup = np.max(np.abs(Phi.T @ g))
        g = g * min(1.0, lam / sup)
        radius = np.sqrt(2.0 * gap / n)
        keep = np.abs(Phi.T @ g) + np.linalg.norm(Phi, axis=0) * radius >= lam
        cols = np.flatnonzero(keep)
        screened = int(cols.size)
        exact = _restricted_lasso(Phi, y, lam, cols, min(tol, 1e-10)) if cols.size else None
        if exact is not None:
            p, dgrid, _ = _certificate(X, y, lam, exact, S)
            if p - dgrid < gap:
                nu, gap = exact, p - dgrid
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
    """The 2n' unit directions s ⊥ x_j (d = 2): the chamber boundaries, where a neuron's
    kink sits exactly at a data point. Shape (2n', 2) for the n' non-zero rows."""
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
    """(a) for d = 2 (1-D inputs with a bias column): ν on the uniform circle grid of
    ``n_dirs`` directions (rotated by ``offset``/(2π) of a spacing), plus, with
    ``include_kinks``, the 2n chamber-boundary directions (:func:`kink_directions`).

    Why the kinks: optimal atoms often sit exactly on a chamber boundary (a ReLU kink at a
    data point; the dual certificate η(s) = Σ_j g_j σ(sᵀx_j) then has a corner at its
    maximum), and a grid missing that direction pays an error of first order in the
    spacing; with them, the remaining atoms lie inside chambers where η is smooth and the
    error is of second order (measured in tests/test_optimum.py). ``lower_bound`` is a
    certified lower bound on the continuous F* (exact dual sup over the circle)."""
    X, y = _check_data(X, y, lam)
    if X.shape[1] != 2:
        raise ValueError(f"optimum_circle needs d = 2 (1-D data + bias), got d = {X.shape[1]}")
    S = circle_directions(n_dirs, offset)
    if include_kinks:
        S = np.concatenate([S, kink_directions(X)])
    res = optimum_directions(X, y, lam, S, tol, max_iter, patterns=activation_patterns(X))
    return OptimumResult(**{**res.__dict__, "method": "circle"})


# ------------------------------------------------------------------ activation patterns


def _distinct_hyperplanes(X: np.ndarray) -> np.ndarray:
    """Indices of rows defining distinct hyperplanes x_jᵀu = 0 (zero rows dropped;
    rows parallel to an earlier one, of either sign, dropped)."""
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
    """Upper bound 2 Σ_{k<r} C(N−1, k) on the number of chambers of the central
    arrangement of the N distinct hyperplanes x_jᵀu = 0 in ℝ^d, r = rank X
    (attained in general position)."""
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
    """Boolean (P, n) array of the distinct activation patterns 1[Xu > 0] of the chambers
    of the data's hyperplane arrangement (the all-zero pattern included if it occurs).

    d = 2: exact, by sorting the boundary angles. d > 2: incremental LP splitting
    (guarantee in the module doc). ValueError when more than ``max_patterns``."""
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


# -------------------------------------------------------------------- exact (convex) F*


def _solve_on_patterns(X, y, lam, patterns, solver="CLARABEL", tol=1e-10):
    """The Pilanci–Ergen program over the given patterns (rows of a boolean (P, n) array).

    Any feasible point is a feasible measure, so over a *subset* of the chamber patterns
    the value is an upper bound on F*; over all of them it is F*. Returns
    (nu, directions, status, iterations, solver objective, patterns of the atoms)."""
    import cvxpy as cp

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
    """(b) F* by the exact convex program of Pilanci & Ergen (2020) (module doc), solved by
    Clarabel through cvxpy with gap tolerances ``tol``, over all chamber patterns
    (:func:`activation_patterns`; ValueError beyond ``max_patterns``). lam = 0 is allowed
    (then F* is the squared distance/(2n) of y to the closed cone {Φν}).

    Returns ν as atoms (v_i/‖v_i‖, +‖v_i‖), (w_i/‖w_i‖, −‖w_i‖); ``value`` = P(ν) evaluated
    with σ (a feasible upper bound); ``lower_bound`` = D(c·r/n) with the exact dual sup
    over all chambers (lam > 0); ``duality_gap`` = their difference; meta holds the pattern
    count, solver status and the solver's own objective."""
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


def optimum_refined(
    X, y, lam: float, directions, tol: float = 1e-6, max_iter: int = 3000,
    max_patterns: int = 2000, max_rounds: int = 12,
) -> OptimumResult:
    """(a) followed by the exact program restricted to the chambers met by the grid's
    near-active directions — for d > 2, where the chambers are too many to enumerate.

    The grid Lasso (:func:`optimum_directions`) finds the columns that survive gap-safe
    screening (|φ_kᵀg| within the safe margin of λ); their patterns 1[X s_k ≥ 0] name the
    chambers where optimal atoms can lie up to the grid's resolution. The Pilanci–Ergen
    program over those chambers lets atoms move continuously inside them, removing the
    grid's discretization error (so the grid solve needs only a moderate ``tol``).
    ``value`` is a feasible value (an upper bound on F*, never above the grid's); it
    equals F* when the optimal chambers are among those met (always
    observed in tests, not guaranteed). ``lower_bound`` is NaN (no certificate over the
    whole sphere); meta["sampled_dual"] is the dual value with the sup taken over the met
    chambers only (a lower bound *if* they contain the maximizers)."""
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
    (their V gives the same λ‖ν‖_TV)."""
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


def neuron_measure(result: OptimumResult) -> tuple[np.ndarray, np.ndarray]:
    """A probability measure on `neuron` particles with F(μ) = P(ν) (module doc):
    weights p_k = |β_k|/‖β‖₁ on balanced neurons (r s_k, sign(β_k) r), r² = ‖β‖₁.
    Returns (thetas (K, d+1), weights (K,)) over the atoms with β_k ≠ 0."""
    keep = np.flatnonzero(result.nu)
    beta = result.nu[keep]
    total = float(np.sum(np.abs(beta)))
    if total == 0:
        d = result.directions.shape[1]
        return np.zeros((1, d + 1)), np.ones(1)
    r = math.sqrt(total)
    thetas = np.concatenate([r * result.directions[keep], (np.sign(beta) * r)[:, None]], axis=1)
    return thetas, np.abs(beta) / total


# ---------------------------------------------------------------------- orthogonal data


def orthogonal_limit_vectors(X, y, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """β± = Σ_{±y_k > 0} |y_k| x_k/‖x_k‖² for pairwise orthogonal rows x_k (ValueError
    otherwise, or for a zero row)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"need X (n, d) and y (n,), got {X.shape}, {y.shape}")
    sq = np.sum(X * X, axis=1)
    if np.any(sq == 0):
        raise ValueError("orthogonal data must have no zero row")
    G = X @ X.T
    off = G - np.diag(np.diag(G))
    if np.max(np.abs(off)) > rtol * np.max(sq):
        raise ValueError(f"rows of X are not pairwise orthogonal (max |x_kᵀx_l| = "
                         f"{np.max(np.abs(off)):.3g})")
    coef = np.abs(y) / sq
    beta_plus = ((y > 0) * coef) @ X
    beta_minus = ((y < 0) * coef) @ X
    return beta_plus, beta_minus


def orthogonal_limit_predictor(X, y, X_eval) -> np.ndarray:
    """h*(x) = σ(β₊ᵀx) − σ(β₋ᵀx) at the rows of ``X_eval`` (m_eval, d), shape (m_eval,):
    the small-initialization limit of the gradient flow on orthogonal data with λ = 0
    (Boursier, Pillaud-Vivien & Flammarion 2022)."""
    bp, bm = orthogonal_limit_vectors(X, y)
    Xe = np.asarray(X_eval, dtype=np.float64)
    return np.maximum(Xe @ bp, 0.0) - np.maximum(Xe @ bm, 0.0)
