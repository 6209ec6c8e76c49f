r"""Implicit steps (proximal point / backward Euler) on the particles, by a jitted Newton.

θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²/(2mh): one step advances t by h. The inner problem
is solved by Newton (exact Hessian, block-diagonal + rank-n structure, predictor = the
explicit Euler step) until the ∞-norm of (θ − θ_k)/h − v(θ) (velocity units; sphere: its
tangent part) is ≤ tol. ReLU kinks, where the backward Euler equation has no solution,
are treated in the Clarke sense (see :func:`_implicit_solve`); steps that miss tol are
flagged in the diagnostics and warned about by the driver's caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from pydantic import BaseModel, ConfigDict, Field

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_int,
    check_positive,
)
from mfjko.methods.gd import particle_velocity
from mfjko.objective import residual

__all__ = ["ImplicitSteps", "ImplicitConfig", "METHOD"]

# ---------------------------------------------------------------------------------------
# Implicit steps (proximal point / backward Euler), solved by a jitted Newton method
# ---------------------------------------------------------------------------------------
#
# Unknown z (m, D). For Euclidean Θ, θ = z. For the sphere, z = (z_s, β) with
# θ = (z_s/‖z_s‖, β); the merit gets a term (‖z_s‖ − 1)²/(2h), which vanishes with its
# gradient on the sphere and removes the radial null direction of the Hessian.
# Scaled merit (m times the proximal objective, so gradients are in velocity units):
#   Ψ(z) = m G(θ(z)) + Σ_i ‖θ_i − θ_i^k‖²/(2h) [+ sphere term]
#   ∇_{z_i} Ψ = ∇ψ_i(z_i; r),  ψ_i(z; r) = (1/n) Σ_j r_j m(θ(z); x_j) + (λ/2) V(θ(z))
#                                          + ‖θ(z) − θ_i^k‖²/(2h),   r = f_μ(X) − y,
#   ∇²Ψ = blockdiag(∇²ψ_i) + (1/(n m)) Jᵀ J,   J[j, (i, :)] = ∇_{z_i} m(θ(z_i); x_j).
# The Newton system is solved by the Woodbury identity (an n×n system) when n < m·D,
# densely otherwise. At a Euclidean solution ∇Ψ = (θ − θ^k)/h − v(θ): the backward
# Euler residual; on the sphere it is its tangent part.


def _embed(param, z):
    if param.on_sphere:
        s = z[:-1]
        return jnp.concatenate([s / jnp.sqrt(jnp.sum(s * s)), z[-1:]])
    return z


def _local_merit(param, z, theta_prev, r, X, lam, h):
    th = _embed(param, z)
    val = (
        jnp.dot(param.output(th, X), r) / X.shape[0]
        + 0.5 * lam * param.potential(th)
        + jnp.sum((th - theta_prev) ** 2) / (2.0 * h)
    )
    if param.on_sphere:
        val = val + (jnp.sqrt(jnp.sum(z[:-1] ** 2)) - 1.0) ** 2 / (2.0 * h)
    return val


def _merit_grad(param, z, theta_prev, X, y, lam, h):
    thetas = jax.vmap(lambda zi: _embed(param, zi))(z)
    m = z.shape[0]
    r = residual(param, thetas, jnp.full((m,), 1.0 / m), X, y)
    return _local_grads(param, z, theta_prev, r, X, lam, h), r


def _newton_direction(param, z, theta_prev, r, g, X, lam, h, free):
    """Newton direction (m, D) of the free particles and the per-particle Hessian blocks B.

    Frozen particles are excluded from the coupled system (Δ_i = 0); B has shape (m, D, D).
    """
    m, D = z.shape
    n = X.shape[0]
    hess = jax.hessian(_local_merit, argnums=1)
    B = jax.vmap(hess, in_axes=(None, 0, 0, None, None, None, None))(
        param, z, theta_prev, r, X, lam, h
    )  # (m, D, D)
    eye_D = jnp.eye(D)
    Bf = jnp.where(free[:, None, None], B, eye_D)
    gf = jnp.where(free[:, None], g, 0.0)
    # J3[i, j, :] = ∇_{z_i} m(θ(z_i); x_j)
    J3 = jax.vmap(jax.jacfwd(lambda zi: param.output(_embed(param, zi), X)))(z)  # (m, n, D)
    J3 = jnp.where(free[:, None, None], J3, 0.0)
    if n < m * D:
        Bi_g = jnp.linalg.solve(Bf, gf[..., None])[..., 0]  # (m, D)
        Bi_Jt = jnp.linalg.solve(Bf, jnp.swapaxes(J3, 1, 2))  # (m, D, n)
        cap = n * m * jnp.eye(n) + jnp.einsum("ijd,idk->jk", J3, Bi_Jt)
        JBg = jnp.einsum("ijd,id->j", J3, Bi_g)
        return Bi_g - jnp.einsum("idk,k->id", Bi_Jt, jnp.linalg.solve(cap, JBg)), B
    J = jnp.transpose(J3, (1, 0, 2)).reshape(n, m * D)
    eye_m = jnp.eye(m)
    H = (Bf[:, :, None, :] * eye_m[:, None, :, None]).reshape(m * D, m * D) + J.T @ J / (n * m)
    return jnp.linalg.solve(H, gf.reshape(-1)).reshape(m, D), B


def _local_grads(param, z, theta_prev, r, X, lam, h):
    """∇ψ_i(z_i; r) for every particle, with the residual r frozen, shape (m, D)."""
    g = jax.grad(_local_merit, argnums=1)
    return jax.vmap(g, in_axes=(None, 0, 0, None, None, None, None))(
        param, z, theta_prev, r, X, lam, h
    )


def _implicit_solve(param, theta_prev, X, y, lam, h, tol, max_iter):
    """One backward Euler step from theta_prev.

    Returns (θ, iterations, residual ∞-norm, fraction of particles with residual ≤ tol).
    Newton's method on ∇Ψ = 0 with a kink treatment. A particle whose Newton step
    crosses a ReLU kink (detected as a jump: its gradient at the trial point, r frozen,
    departs from the quadratic model g − BΔ by more than ‖g‖/2) is moved to the kink
    by bisection along the step (45 halvings) and then moves only along the kink
    (Newton restricted to the tangent space of the kink, whose normal is the direction
    of the gradient jump — a ReLU kink wᵀx_j = 0 is a hyperplane of Θ). Its residual is
    the Clarke one: the smallest ∞-norm of (1 − t) g_near + t g_far, t ∈ [0, 1], with
    g_far sampled just across the kink. If that minimum is at t = 0 or 1 and still
    above tol, the particle is released from the kink (for t ≥ 1, onto the far side).
    """
    m, D = theta_prev.shape
    # Predictor: the explicit Euler step, O(h²) from the solution.
    z0 = param.project(theta_prev + h * particle_velocity(param, theta_prev, X, y, lam))
    g0, r0 = _merit_grad(param, z0, theta_prev, X, y, lam, h)
    res0 = jnp.max(jnp.abs(g0), axis=1)
    frozen0 = jnp.zeros(m, bool)
    normal0 = jnp.zeros((m, D))
    scale = 1.0 + jnp.max(jnp.abs(theta_prev))
    eta = 1e-13 * scale  # sampling offset across a kink (error O(η/h) ≪ tol)

    def cond(state):
        res, it = state[3], state[6]
        return (jnp.max(res) > tol) & (it < max_iter)

    def body(state):
        z, g, r, res, frozen, normal, it = state
        free = ~frozen
        delta, B = _newton_direction(param, z, theta_prev, r, g, X, lam, h, free)
        # Tangent Newton for particles on a kink: (P B P + n nᵀ) Δ = P g, so n·Δ = 0.
        P = jnp.eye(D)[None] - normal[:, :, None] * normal[:, None, :]
        Bt = P @ B @ P + normal[:, :, None] * normal[:, None, :]
        delta_t = jnp.linalg.solve(Bt, jnp.einsum("ide,ie->id", P, g)[..., None])[..., 0]
        delta = jnp.where(frozen[:, None], delta_t, delta)

        # Kink crossing test for the free particles (model error vs jump).
        BD = jnp.einsum("ide,ie->id", B, delta)
        gnorm = jnp.linalg.norm(g, axis=1)

        def discrepancy(s):
            g_loc = _local_grads(param, z - s[:, None] * delta, theta_prev, r, X, lam, h)
            return jnp.linalg.norm(g_loc - (g - s[:, None] * BD), axis=1)

        ones = jnp.ones(m)
        crosses = free & (res > tol) & (discrepancy(ones) > 0.5 * gnorm)

        def bisect(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            jumped = discrepancy(mid) > 0.25 * gnorm
            return jnp.where(jumped, lo, mid), jnp.where(jumped, mid, hi)

        lo, hi = lax.fori_loop(0, 45, bisect, (jnp.zeros(m), ones))
        step = jnp.where(crosses, lo, 1.0)
        z_new = z - step[:, None] * delta
        # Normal of a newly met kink: from the near side towards the far side.
        g_near = _local_grads(param, z - lo[:, None] * delta, theta_prev, r, X, lam, h)
        g_far = _local_grads(param, z - hi[:, None] * delta, theta_prev, r, X, lam, h)
        # remove the smooth part of the change (exact for piecewise-quadratic merits),
        # so that the normal is the kink's to rounding, not O(bisection width / h)
        jump = g_far - g_near + (hi - lo)[:, None] * BD
        n_new = jump / jnp.maximum(jnp.linalg.norm(jump, axis=1, keepdims=True), 1e-300)
        n_new = n_new * jnp.sign(jnp.sum(-delta * n_new, axis=1, keepdims=True) + 1e-300)
        normal = jnp.where(crosses[:, None], n_new, normal)
        frozen = frozen | crosses

        g_new, r_new = _merit_grad(param, z_new, theta_prev, X, y, lam, h)
        # Clarke residual of particles on a kink.
        g_across = _local_grads(param, z_new + eta * normal, theta_prev, r_new, X, lam, h)
        J = g_across - g_new - eta * jnp.einsum("ide,ie->id", B, normal)
        t = -jnp.sum(g_new * J, axis=1) / jnp.maximum(jnp.sum(J * J, axis=1), 1e-300)
        t_c = jnp.clip(t, 0.0, 1.0)
        clarke = jnp.max(jnp.abs(g_new + t_c[:, None] * J), axis=1)
        plain = jnp.max(jnp.abs(g_new), axis=1)
        res_new = jnp.where(frozen, jnp.minimum(clarke, plain), plain)
        # Release only once the particle is stationary ALONG the kink (otherwise t is
        # not yet meaningful and the particle would cross straight back).
        g_tan = g_new - jnp.sum(g_new * normal, axis=1, keepdims=True) * normal
        g_nrm = jnp.abs(jnp.sum(g_new * normal, axis=1))
        settled = jnp.max(jnp.abs(g_tan), axis=1) <= jnp.maximum(tol, 1e-3 * g_nrm)
        release = frozen & settled & (res_new > tol) & ((t <= 0.0) | (t >= 1.0))
        # t ≥ 1: the far side is where the solution lies; step just across the kink so
        # the next Newton step is taken from there (and does not cross back).
        to_far = release & (t >= 1.0)
        z_new = jnp.where(to_far[:, None], z_new + 2.0 * eta * normal, z_new)
        g_new, r_new = _merit_grad(param, z_new, theta_prev, X, y, lam, h)
        res_new = jnp.where(to_far, jnp.max(jnp.abs(g_new), axis=1), res_new)
        frozen = frozen & ~release
        normal = jnp.where(release[:, None], 0.0, normal)
        return z_new, g_new, r_new, res_new, frozen, normal, it + 1

    state0 = (z0, g0, r0, res0, frozen0, normal0, jnp.zeros((), jnp.int32))
    z, _, _, res, _, _, it = lax.while_loop(cond, body, state0)
    theta = jax.vmap(lambda zi: _embed(param, zi))(z)
    return theta, it, jnp.max(res), jnp.mean(res <= tol)


@partial(jax.jit, static_argnames=("param",))
def _implicit_advance(param, theta, X, y, lam, h, tol, n, max_iter):
    def body(i, state):
        th, it_max, it_sum, res_max, frac_min = state
        th_new, it, res, frac = _implicit_solve(param, th, X, y, lam, h, tol, max_iter)
        return (th_new, jnp.maximum(it_max, it), it_sum + it, jnp.maximum(res_max, res),
                jnp.minimum(frac_min, frac))

    zero = jnp.zeros((), jnp.int32)
    one = jnp.ones((), theta.dtype)
    theta, it_max, it_sum, res, frac = lax.fori_loop(
        0, n, body, (theta, zero, zero, jnp.zeros((), theta.dtype), one)
    )
    return theta, it_max, it_sum, res, res <= tol, frac



_DIAGNOSTICS = {"inner_iterations_max": 0.0, "inner_iterations_total": 0.0,
                "inner_residual": 0.0, "converged": 1.0, "particles_converged": 1.0}


@dataclass(frozen=True)
class ImplicitSteps(Stepper):
    """Backward Euler (proximal point) steps of length h.

    Attributes:
      h: time step (mean-field time).
      tol: tolerance on the ∞-norm of the backward Euler residual (velocity units).
      max_iter: Newton iteration cap per step.

    Interval diagnostics: ``inner_iterations_max``, ``inner_iterations_total``,
    ``inner_residual`` (max final residual), ``converged`` (1.0 if every step met tol),
    ``particles_converged`` (smallest fraction of particles meeting tol). An interval
    with a step that misses tol warns (RuntimeWarning).
    """

    name = "implicit"
    diagnostics = _DIAGNOSTICS
    h: float = 0.01
    tol: float = 1e-10
    max_iter: int = 50

    def __post_init__(self):
        check_positive(self.h, "h")
        check_positive(self.tol, "tol")
        check_int(self.max_iter, "max_iter")

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` backward Euler steps of h; warns if a step misses ``tol``."""
        p = state.problem
        theta, it_max, it_sum, res, ok, frac = _implicit_advance(
            p.param, state.theta, p.X, p.y, p.lam, jnp.float64(self.h), jnp.float64(self.tol),
            jnp.int32(n_steps), jnp.int32(self.max_iter))
        diag = dict(inner_iterations_max=float(it_max), inner_iterations_total=float(it_sum),
                    inner_residual=float(res), converged=float(bool(ok)),
                    particles_converged=float(frac))
        if not ok:
            warn_unconverged(self.name, self.tol, state.k, n_steps, self.h, diag)
        return ParticleState(p, theta, state.k + n_steps), Diagnostics(diag)


def warn_unconverged(name, tol, k, n_steps, h, diag) -> None:
    """One RuntimeWarning for an interval whose inner solves missed ``tol``."""
    import warnings

    warnings.warn(
        f"{name}: the inner solve missed tol = {tol:g} in the interval ending at "
        f"t = {(k + n_steps) * h:g} (worst residual {diag['inner_residual']:.3g}); see "
        "diagnostics['converged'] and ['inner_residual']", RuntimeWarning, stacklevel=3)


class ImplicitConfig(BaseModel):
    """``methods.implicit``: backward Euler steps of length h, Newton to ``tol``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    tol: float = Field(1e-10, gt=0, allow_inf_nan=False)

    def step_size(self) -> float:
        """The time step h (mean-field time), to check it divides ``record_every``."""
        return self.h


def _build(mc: ImplicitConfig, setup) -> ImplicitSteps:
    return ImplicitSteps(h=mc.h, tol=mc.tol)


METHOD = MethodInfo("implicit", ImplicitSteps, ImplicitConfig, _build, color="tab:blue",
                    linestyle=":", summary="implicit (proximal-point) particle steps")
