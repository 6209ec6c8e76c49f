r"""Peer particle methods: proximal-point (JKO-like) steps between particle measures.

m particles θ_1..θ_m, μ_θ = (1/m) Σ_i δ_{θ_i}, G(θ) = F(μ_θ). One step of length h
(mean-field time t advances by h, the axis of MATH.md) replaces θ_k by

- :func:`frobenius_prox`: argmin_θ G(θ) + (1/(2h)) (1/m) ‖θ − θ_k‖²_F — the implicit
  (backward Euler) step, run by :func:`mfjko.particles.implicit_steps` (damped Newton);
- :func:`w2_prox`: argmin_θ G(θ) + W₂²(μ_θ, μ_{θ_k})/(2h), W₂ exact (network simplex,
  POT ``ot.emd``, uniform weights);
- :func:`sliced_prox`: argmin_θ G(θ) + SW²(μ_θ, μ_{θ_k})/(2h), sliced W₂ with
  ``n_projections`` random directions, by a gradient method.

W₂ versus Frobenius. For uniform m-atom measures W₂²(μ_θ, μ_a) = min_σ (1/m) Σ_i
‖θ_i − a_{σ(i)}‖² over permutations σ (Birkhoff: ``ot.emd`` returns a permutation plan).
Since G is invariant under relabeling, min_θ [G(θ) + (1/(2hm)) Σ‖θ_i − a_{σ(i)}‖²] has
the same value for every σ (substitute φ = θ∘σ⁻¹), so the *global* W₂ prox over m-atom
measures equals the Frobenius prox and its optimal coupling to θ_k is the identity.
They can differ only when the inner (local) solver stops at a non-global stationary
point whose optimal coupling to θ_k is not the identity; :func:`w2_prox` therefore
alternates: solve the prox with the anchor permuted by the current assignment σ,
recompute σ by ``ot.emd`` between the solution and θ_k, until σ is stable; it records the
number of alternations and whether the final coupling is the identity.

Sliced. SW²(μ, ν) = D · (1/L) Σ_l W₂²(u_l#μ, u_l#ν) with u_l uniform on S^{D−1} (D = dim Θ),
each 1-D W₂² computed by sorting: (1/m) Σ_i (sort(θ·u_l)_i − sort(a·u_l)_i)². The factor
D (E[(uᵀz)²] = ‖z‖²/D) makes SW² ≈ W₂² for small displacements and many projections,
so that h is comparable with the other methods' time step; with finitely many
projections the step is a prox in the metric M = (D/L) Σ_l u_l u_lᵀ (for small h) rather
than the identity. Directions are redrawn every step from ``jax.random.fold_in(key, k)``
with k the global step index, so segmented runs are reproducible. ``sphere``: particles
are parametrized as θ(z) = (s/‖s‖, β) and the penalty (‖s‖ − 1)²/(2hm) pins ‖s‖ (as in
implicit_steps); the transport cost is chordal in the ambient space.

All functions return a :class:`mfjko.trajectory.Trajectory` on the mean-field axis
(records at t0 and after every ``record_every`` steps), with diagnostics per record
over the steps of the interval (inner-solver iteration counts, residuals, tolerance).
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import ot
from jax import lax

from mfjko import particles
from mfjko.objective import particle_objective
from mfjko.particles import (
    _check_inputs,
    _check_positive,
    _check_record_every,
    _record_loop,
    _step_count,
    _trajectory,
)
from mfjko.trajectory import Trajectory

__all__ = [
    "frobenius_prox",
    "w2_prox",
    "sliced_prox",
    "optimal_assignment",
    "sliced_w2_squared",
]


# ------------------------------------------------------------------------- Frobenius


def frobenius_prox(
    param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-10,
    max_iter: int = 50, t0: float = 0.0,
) -> Trajectory:
    """θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²_F/(2 m h): exactly
    :func:`mfjko.particles.implicit_steps` (same arguments; ``tol`` on the ∞-norm of the
    backward-Euler residual in velocity units), relabeled ``frobenius_prox``."""
    traj = particles.implicit_steps(param, theta0, X, y, lam, h, T, record_every=record_every,
                                    tol=tol, max_iter=max_iter, t0=t0)
    return Trajectory(method="frobenius_prox", param=traj.param, t=traj.t, support=traj.support,
                      weights=traj.weights, diagnostics=traj.diagnostics,
                      meta={**traj.meta, "distance": "frobenius"})


# ------------------------------------------------------------------------------- W2


def optimal_assignment(theta, anchor) -> np.ndarray:
    """σ with σ[i] = the anchor index coupled to θ_i by the optimal W₂ plan between the
    uniform measures on the rows of ``theta`` and ``anchor`` (both (m, D)); POT's
    network simplex (``ot.emd``) on the squared Euclidean cost."""
    theta = np.asarray(theta, dtype=np.float64)
    anchor = np.asarray(anchor, dtype=np.float64)
    m = theta.shape[0]
    C = ot.dist(theta, anchor, metric="sqeuclidean")
    w = np.full(m, 1.0 / m)
    plan = ot.emd(w, w, C)
    sigma = np.argmax(plan, axis=1)
    # A vertex of the Birkhoff polytope: every row carries all its mass 1/m on one column.
    if not (np.allclose(plan.max(axis=1), 1.0 / m) and len(np.unique(sigma)) == m):
        raise RuntimeError("ot.emd returned a non-permutation plan for uniform weights")
    return sigma


def w2_prox(
    param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-10,
    max_iter: int = 50, max_alternations: int = 10, t0: float = 0.0,
) -> Trajectory:
    """θ_{k+1} = argmin_θ G(θ) + W₂²(μ_θ, μ_{θ_k})/(2h) by alternation (module doc): the
    prox with the anchor permuted by σ is solved by the implicit step (damped Newton to
    ``tol``), then σ ← optimal assignment (``ot.emd``) of the solution to θ_k, until σ
    repeats (at most ``max_alternations``).

    diagnostics per record: ``alternations_max``, ``inner_iterations_total``,
    ``inner_residual`` (max), ``identity_coupling`` (1.0 if every step ended with the
    identity coupling to its anchor), ``converged`` (inner tol met and σ stable)."""
    param, theta, X, y, lam = _check_inputs(param, theta0, X, y, lam)
    h = _check_positive(h, "h")
    tol = _check_positive(tol, "tol")
    if int(max_alternations) < 1:
        raise ValueError(f"max_alternations must be >= 1, got {max_alternations}")
    K, r = _step_count(T, h), _check_record_every(record_every)

    def one_step(anchor):
        sigma = np.arange(anchor.shape[0])
        its, res, ok = 0.0, 0.0, True
        for alt in range(1, int(max_alternations) + 1):
            with warnings.catch_warnings():
                # A missed inner tolerance is recorded in diagnostics["converged"] and
                # reported once for the whole run below.
                warnings.simplefilter("ignore", RuntimeWarning)
                step = particles.implicit_steps(param, anchor[sigma], X, y, lam, h, h,
                                                tol=tol, max_iter=max_iter)
            new = np.asarray(step.support[-1])
            its += float(step.diagnostics["inner_iterations_total"][-1])
            res = max(res, float(step.diagnostics["inner_residual"][-1]))
            ok = ok and bool(step.diagnostics["converged"][-1])
            # new[i] was anchored at anchor[sigma[i]]; recompute the optimal coupling.
            new_sigma = optimal_assignment(new, anchor)
            if np.array_equal(new_sigma, sigma):
                return new, alt, its, res, ok, bool(np.array_equal(sigma, np.arange(len(sigma))))
            sigma = new_sigma
        return new, int(max_alternations), its, res, False, False

    def advance(th, done, n):
        th = np.asarray(th)
        alt_max, its_tot, res_max, ident, conv = 0, 0.0, 0.0, True, True
        for _ in range(n):
            th, alt, its, res, ok, idc = one_step(th)
            alt_max, its_tot, res_max = max(alt_max, alt), its_tot + its, max(res_max, res)
            ident, conv = ident and idc, conv and ok
        return jnp.asarray(th), dict(alternations_max=float(alt_max),
                                     inner_iterations_total=its_tot, inner_residual=res_max,
                                     identity_coupling=float(ident), converged=float(conv))

    names = ("alternations_max", "inner_iterations_total", "inner_residual",
             "identity_coupling", "converged")
    _, frames, steps, diags = _record_loop(advance, theta, K, r, names)
    diags["converged"][0] = 1.0
    if K > 0 and not diags["converged"][1:].all():
        warnings.warn(f"w2_prox: an inner solve missed tol = {tol:g} or the assignment did "
                      f"not settle in {max_alternations} alternations; see diagnostics",
                      RuntimeWarning, stacklevel=2)
    diags["identity_coupling"][0] = 1.0
    meta = dict(h=h, lam=lam, m=theta.shape[0], record_every=r, n_steps=K, t0=float(t0),
                tol=tol, max_iter=max_iter, max_alternations=int(max_alternations),
                distance="w2 (exact, ot.emd)")
    return _trajectory("w2_prox", param, t0 + steps * h, frames, X, y, lam, diags, meta)


# --------------------------------------------------------------------------- sliced


def sliced_w2_squared(theta, anchor, directions) -> jax.Array:
    """SW² = D · (1/L) Σ_l (1/m) Σ_i (sort(θ u_l)_i − sort(a u_l)_i)² for unit
    ``directions`` (L, D) and equal-size point sets θ, a (m, D). Differentiable
    (through the sort permutation)."""
    D = theta.shape[1]
    pt = jnp.sort(theta @ directions.T, axis=0)
    pa = jnp.sort(anchor @ directions.T, axis=0)
    return D * jnp.mean((pt - pa) ** 2)


def _embed(param, z):
    if param.on_sphere:
        s = z[..., :-1]
        n = jnp.sqrt(jnp.sum(s * s, axis=-1, keepdims=True))
        return jnp.concatenate([s / n, z[..., -1:]], axis=-1)
    return z


def _sliced_merit(param, z, anchor, dirs, X, y, lam, h):
    """J(z) = G(θ(z)) + SW²(μ_θ(z), μ_anchor)/(2h) (+ sphere norm penalty)."""
    theta = _embed(param, z)
    m = z.shape[0]
    val = particle_objective(param, theta, X, y, lam) + sliced_w2_squared(theta, anchor, dirs) / (
        2.0 * h)
    if param.on_sphere:
        val = val + jnp.sum((jnp.sqrt(jnp.sum(z[:, :-1] ** 2, axis=1)) - 1.0) ** 2) / (2.0 * h * m)
    return val


@partial(jax.jit, static_argnames=("param", "n_proj", "max_iter"))
def _sliced_step(param, anchor, X, y, lam, h, key, tol, n_proj, max_iter):
    """One sliced prox step by gradient descent with Barzilai–Borwein steps (safeguarded)
    from the explicit Euler predictor, until m·‖∇J‖_∞ ≤ tol (velocity units, as the
    implicit step's residual) or ``max_iter``. Returns (θ, iterations, residual)."""
    m, D = anchor.shape
    u = jax.random.normal(key, (n_proj, D))
    dirs = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    grad = jax.grad(_sliced_merit, argnums=1)
    z0 = param.project(anchor + h * particles.particle_velocity(param, anchor, X, y, lam))
    g0 = grad(param, z0, anchor, dirs, X, y, lam, h)
    # Initial step: the prox term's curvature is ≈ 1/(h m) per coordinate.
    step0 = h * m / (1.0 + h)

    def res_of(g):
        return m * jnp.max(jnp.abs(g))

    def cond(state):
        _, g, _, it = state
        return (res_of(g) > tol) & (it < max_iter)

    def body(state):
        z, g, step, it = state
        z_new = z - step * g
        g_new = grad(param, z_new, anchor, dirs, X, y, lam, h)
        s, yy = (z_new - z).ravel(), (g_new - g).ravel()
        sy = jnp.dot(s, yy)
        bb = jnp.where(sy > 0, jnp.dot(s, s) / jnp.where(sy > 0, sy, 1.0), step0)
        return z_new, g_new, jnp.clip(bb, 1e-3 * step0, 1e3 * step0), it + 1

    z, g, _, it = lax.while_loop(cond, body, (z0, g0, step0, 0))
    return _embed(param, z), it, res_of(g)


def sliced_prox(
    param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-8,
    n_projections: int = 64, seed: int = 0, key=None, max_iter: int = 20_000,
    t0: float = 0.0,
) -> Trajectory:
    """θ_{k+1} = argmin_θ G(θ) + SW²(μ_θ, μ_{θ_k})/(2h) (module doc for SW²'s scaling).

    Minimized by Barzilai–Borwein gradient descent to m·‖∇J‖_∞ ≤ ``tol`` (velocity units).
    ``n_projections`` directions per step from ``key`` (default PRNGKey(seed)) folded with
    the global step index round(t0/h) + k. diagnostics per record: ``inner_iterations_max``,
    ``inner_iterations_total``, ``inner_residual`` (max), ``converged``."""
    param, theta, X, y, lam = _check_inputs(param, theta0, X, y, lam)
    h = _check_positive(h, "h")
    tol = _check_positive(tol, "tol")
    if int(n_projections) < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    K, r = _step_count(T, h), _check_record_every(record_every)
    key = jax.random.PRNGKey(int(seed)) if key is None else key
    k_start = int(round(t0 / h))
    hh, ll, tt = jnp.float64(h), jnp.float64(lam), jnp.float64(tol)

    def advance(th, done, n):
        its_max, its_tot, res_max = 0, 0, 0.0
        for k in range(n):
            kk = jax.random.fold_in(key, k_start + done + k)
            th, it, res = _sliced_step(param, th, X, y, ll, hh, kk, tt, int(n_projections),
                                       int(max_iter))
            its_max, its_tot = max(its_max, int(it)), its_tot + int(it)
            res_max = max(res_max, float(res))
        return th, dict(inner_iterations_max=float(its_max), inner_iterations_total=float(its_tot),
                        inner_residual=res_max, converged=float(res_max <= tol))

    names = ("inner_iterations_max", "inner_iterations_total", "inner_residual", "converged")
    _, frames, steps, diags = _record_loop(advance, theta, K, r, names)
    diags["converged"][0] = 1.0
    if K > 0 and not diags["converged"][1:].all():
        warnings.warn(f"sliced_prox: the inner gradient method missed tol = {tol:g} (worst "
                      f"residual {diags['inner_residual'].max():.3g}); see diagnostics",
                      RuntimeWarning, stacklevel=2)
    meta = dict(h=h, lam=lam, m=theta.shape[0], record_every=r, n_steps=K, t0=float(t0),
                tol=tol, n_projections=int(n_projections), seed=int(seed),
                distance="sliced w2 (D-normalized)")
    return _trajectory("sliced_prox", param, t0 + steps * h, frames, X, y, lam, diags, meta)
