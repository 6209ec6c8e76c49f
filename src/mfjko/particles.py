r"""Particle dynamics of the mean-field objective (MATH.md, "Mean-field objective").

m particles θ_1..θ_m ∈ Θ define μ_m = (1/m) Σ_i δ_{θ_i} and G(θ) = F(μ_m). Every
method here runs on the MEAN-FIELD time axis t: the Wasserstein-gradient-flow
velocity of particle i is v_i = −∇F'(μ_m)(θ_i) = −m ∇_{θ_i} G (projected on the
tangent space of Θ for ``sphere``), and

- :func:`gradient_descent`: explicit Euler θ ← θ + h v(θ), i.e. GD on G with
  lr = m·h; one step advances t by h (``sphere``: retract with ``param.project``);
- :func:`implicit_steps`: backward Euler / proximal point
  θ_{k+1} = argmin G(θ) + ‖θ − θ_k‖²/(2 m h), one step advances t by h;
- :func:`gradient_flow`: the ODE dθ/dt = v(θ), solved by an adaptive Runge–Kutta
  method (diffrax Tsit5 + PID controller) to tight tolerances — the reference;
- :func:`langevin`: mean-field Langevin θ ← θ + h v(θ) + √(2 D h) ξ, ξ ~ N(0, I);
- :func:`classic_gd`: the seed's unscaled GD on L(W, α) (classic time t = k·lr).

All return a :class:`mfjko.trajectory.Trajectory` with ``support`` (T, m, D),
``weights`` (m,) = 1/m, recorded times ``t`` (mean-field time, except for
``classic_gd``) and ``diagnostics`` (arrays with first axis T; always ``objective``,
F(μ_m) at each record).

Time grid and resumability. A run starts at ``t0`` (default 0) and lasts ``T``; with
step h it makes K = T/h steps (T must be a multiple of h up to rounding, else
ValueError) and records the state at t0 and after every ``record_every`` steps, plus
at t0 + T if K is not a multiple of ``record_every``. Every method advances one
recording interval per call of one cached jitted function, so running a horizon in
one call or in consecutive calls (each starting from the last state, with
``t0`` = the previous end and T = one interval) executes identical computations and
gives bit-identical states. Langevin's noise at global step k (counted from t = 0,
k = round(t0/h) + local step) is drawn from ``jax.random.fold_in(key, k)``, so resumed
runs draw the same noise. ``gradient_flow`` restarts its adaptive solver at every
recording time, and integrates each segment over its own duration (the ODE is
autonomous), so segmentation does not change the result either.
"""

from __future__ import annotations

import math
import numbers
import warnings
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mfjko import parametrizations as _params
from mfjko.objective import classic_loss, objective, residual, velocity
from mfjko.parametrizations import Parametrization
from mfjko.trajectory import Trajectory

Array = jax.Array

__all__ = [
    "gradient_descent",
    "implicit_steps",
    "gradient_flow",
    "langevin",
    "classic_gd",
    "particle_velocity",
]


# ---------------------------------------------------------------------------------------
# Validation and the shared recording loop
# ---------------------------------------------------------------------------------------


def _as_data(X, y) -> tuple[Array, Array]:
    X = jnp.asarray(X, dtype=jnp.float64)
    y = jnp.asarray(y, dtype=jnp.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    if not (bool(jnp.isfinite(X).all()) and bool(jnp.isfinite(y).all())):
        raise ValueError("X or y contain NaN or inf")
    return X, y


def _check_inputs(param, theta0, X, y, lam):
    param = _params.get(param)
    X, y = _as_data(X, y)
    theta = jnp.asarray(theta0, dtype=jnp.float64)
    D = param.dim(X.shape[1])
    if theta.ndim != 2 or theta.shape[1] != D or theta.shape[0] == 0:
        raise ValueError(
            f"theta0 must have shape (m, {D}) for {param.name!r} on d = {X.shape[1]} data, "
            f"got {theta.shape}"
        )
    if not bool(jnp.isfinite(theta).all()):
        raise ValueError("theta0 contains NaN or inf")
    if param.on_sphere:
        norms = jnp.linalg.norm(theta[:, :-1], axis=1)
        if float(jnp.max(jnp.abs(norms - 1.0))) > 1e-8:
            raise ValueError(
                f"theta0 for {param.name!r}: the direction part must be unit vectors "
                "(apply param.project first)"
            )
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (weight decay) must be finite and >= 0, got {lam}")
    return param, theta, X, y, lam


def _check_positive(value, name) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def _step_count(T, h) -> int:
    """K = T/h, an integer up to rounding (relative 1e-9), else ValueError."""
    T = float(T)
    if not math.isfinite(T) or T < 0:
        raise ValueError(f"T (duration in mean-field time) must be finite and >= 0, got {T}")
    K = int(round(T / h))
    if abs(K * h - T) > 1e-9 * max(T, h):
        raise ValueError(f"T = {T} is not a multiple of the step h = {h} (T/h = {T / h})")
    return K


def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | float) or (
        int(value) != value or value < minimum
    ):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_record_every(record_every) -> int:
    return _check_int(record_every, "record_every")


def _record_loop(advance, theta, n_steps: int, record_every: int, diag_names=()):
    """Run ``advance(theta, done, n) -> (theta, diag)`` interval by interval.

    Returns (frames (T, m, D) NumPy, steps done at each record (T,), diagnostics
    {name: (T,)}). Frame 0 is the input state with zero diagnostics.
    """
    frames = [np.asarray(theta)]
    steps = [0]
    diags = {k: [0.0] for k in diag_names}
    done = 0
    while done < n_steps:
        n = min(record_every, n_steps - done)
        theta, diag = advance(theta, done, n)
        done += n
        frames.append(np.asarray(theta))
        steps.append(done)
        for k in diag_names:
            diags[k].append(np.asarray(diag[k]))
    return theta, np.stack(frames), np.asarray(steps), {k: np.asarray(v) for k, v in diags.items()}


@partial(jax.jit, static_argnames=("param",))
def _particle_objective(param, theta, X, y, lam):
    m = theta.shape[0]
    return objective(param, theta, jnp.full((m,), 1.0 / m), X, y, lam)


def _trajectory(method, param, t, frames, X, y, lam, diagnostics, meta) -> Trajectory:
    m = frames.shape[1]
    # One frame per call: a fixed shape, so the number of records never recompiles.
    ll = jnp.float64(lam)
    obj = np.array([float(_particle_objective(param, jnp.asarray(f), X, y, ll)) for f in frames])
    return Trajectory(
        method=method,
        param=param.name,
        t=np.asarray(t, dtype=np.float64),
        support=np.asarray(frames, dtype=np.float64),
        weights=np.full(m, 1.0 / m),
        diagnostics={"objective": obj, **diagnostics},
        meta=meta,
    )


def particle_velocity(param: Parametrization, thetas: Array, X: Array, y: Array, lam) -> Array:
    """v_i = −∇F'(μ_m)(θ_i) (tangent on the sphere) for uniform μ_m, shape (m, D).

    Equals −m ∇_{θ_i} G: the velocity of every particle method on mean-field time.
    """
    m = thetas.shape[0]
    return velocity(param, thetas, jnp.full((m,), 1.0 / m), X, y, lam)


# ---------------------------------------------------------------------------------------
# Explicit GD
# ---------------------------------------------------------------------------------------


def _gd_step(param, theta, X, y, lam, h):
    return param.project(theta + h * particle_velocity(param, theta, X, y, lam))


# The step count n is a traced argument (fori_loop lowers to a while loop): one compiled
# program serves every interval length, so runs of any length never recompile.
@partial(jax.jit, static_argnames=("param",))
def _gd_advance(param, theta, X, y, lam, h, n):
    return lax.fori_loop(0, n, lambda i, th: _gd_step(param, th, X, y, lam, h), theta)


def gradient_descent(
    param, theta0, X, y, lam, h, T, record_every: int = 1, t0: float = 0.0
) -> Trajectory:
    """Explicit GD on G with lr = m·h: θ_{k+1} = θ_k + h v(θ_k) (sphere: then retract).

    Args:
      param: a Parametrization or its name; theta0: (m, D) particles; X (n, d), y (n,);
      lam: weight decay λ ≥ 0; h: step in mean-field time; T: duration (multiple of h);
      record_every: steps between records; t0: start time (resuming a run).
    Returns a Trajectory with t = t0 + (steps done)·h.
    """
    param, theta, X, y, lam = _check_inputs(param, theta0, X, y, lam)
    h = _check_positive(h, "h")
    K, r = _step_count(T, h), _check_record_every(record_every)
    hh, ll = jnp.float64(h), jnp.float64(lam)

    def advance(th, done, n):
        return _gd_advance(param, th, X, y, ll, hh, jnp.int32(n)), {}

    _, frames, steps, diags = _record_loop(advance, theta, K, r)
    meta = dict(h=h, lam=lam, m=theta.shape[0], record_every=r, n_steps=K, t0=float(t0),
                lr=theta.shape[0] * h)
    return _trajectory("gd", param, t0 + steps * h, frames, X, y, lam, diags, meta)


# ---------------------------------------------------------------------------------------
# Mean-field Langevin
# ---------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("param",))
def _langevin_advance(param, theta, X, y, lam, h, diffusion, key, k_start, n):
    scale = jnp.sqrt(2.0 * diffusion * h)

    def body(i, th):
        xi = jax.random.normal(jax.random.fold_in(key, k_start + i), th.shape, th.dtype)
        drift = h * particle_velocity(param, th, X, y, lam)
        return param.project(th + drift + scale * param.tangent(th, xi))

    return lax.fori_loop(0, n, body, theta)


def langevin(
    param,
    theta0,
    X,
    y,
    lam,
    h,
    T,
    diffusion,
    key,
    record_every: int = 1,
    t0: float = 0.0,
) -> Trajectory:
    """Mean-field Langevin (Euler–Maruyama): θ ← θ + h v(θ) + √(2 D h) ξ_k.

    Discretizes dθ = v dt + √(2D) dB on mean-field time, whose law solves
    ∂_t μ = div(μ ∇F'(μ)) + D Δμ. ``diffusion`` = D ≥ 0; D = 0 is exactly
    :func:`gradient_descent`. ξ_k = normal(fold_in(key, k)) with k the global step
    index counted from t = 0 (k = round(t0/h) + local step). ``sphere``: the noise is
    projected on the tangent space, then the step is retracted. ``key`` may be a JAX
    PRNG key or an int seed.
    """
    param, theta, X, y, lam = _check_inputs(param, theta0, X, y, lam)
    h = _check_positive(h, "h")
    diffusion = float(diffusion)
    if not math.isfinite(diffusion) or diffusion < 0:
        raise ValueError(f"diffusion D must be finite and >= 0, got {diffusion}")
    K, r = _step_count(T, h), _check_record_every(record_every)
    if isinstance(key, numbers.Integral):
        key = jax.random.PRNGKey(int(key))
    k0 = int(round(float(t0) / h))
    if abs(k0 * h - float(t0)) > 1e-9 * max(abs(float(t0)), h):
        raise ValueError(f"t0 = {t0} is not a multiple of h = {h}: cannot index the noise")
    hh, ll, DD = jnp.float64(h), jnp.float64(lam), jnp.float64(diffusion)

    def advance(th, done, n):
        k = jnp.int32(k0 + done)
        return _langevin_advance(param, th, X, y, ll, hh, DD, key, k, jnp.int32(n)), {}

    _, frames, steps, diags = _record_loop(advance, theta, K, r)
    meta = dict(h=h, lam=lam, m=theta.shape[0], record_every=r, n_steps=K, t0=float(t0),
                diffusion=diffusion)
    return _trajectory("langevin", param, t0 + steps * h, frames, X, y, lam, diags, meta)


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
    """Newton direction of the free particles (frozen ones excluded from the coupled
    system: Δ_i = 0) and the per-particle Hessian blocks B (m, D, D)."""
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
    """One backward Euler step from theta_prev; returns (θ, iterations, residual ∞-norm,
    fraction of particles with residual ≤ tol).

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


def implicit_steps(
    param,
    theta0,
    X,
    y,
    lam,
    h,
    T,
    record_every: int = 1,
    tol: float = 1e-10,
    max_iter: int = 50,
    t0: float = 0.0,
) -> Trajectory:
    """Proximal point steps θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²/(2 m h) (backward Euler).

    Each step advances mean-field time by h. The inner problem is solved by a jitted
    Newton method (exact Hessian, block-diagonal + rank-n structure, predictor
    = explicit Euler step, kink handling below) until the ∞-norm of the scaled gradient
    (θ − θ_k)/h − v(θ) (sphere: its tangent part; velocity units) is ≤ ``tol``, or
    ``max_iter`` Newton iterations. For ``sphere`` the proximal term uses the chordal
    distance in the ambient space and the minimization is over the sphere.

    diagnostics (per record, over the steps of the interval): ``inner_iterations_max``,
    ``inner_iterations_total``, ``inner_residual`` (max final residual), ``converged``
    (1.0 if every step met ``tol``), ``particles_converged`` (smallest fraction, over the
    interval's steps, of particles whose own residual met ``tol``). A step that misses
    ``tol`` triggers a warning.

    ReLU kinks: σ is not differentiable at 0 and the proximal minimizer of a particle
    often sits exactly on a kink (wᵀx_j = 0 pushed from both sides, or β = 0 for
    'sphere'), where the backward Euler equation has no solution. Such particles are
    moved onto the kink and solved there in the Clarke sense (see ``_implicit_solve``);
    their residual is the distance of 0 to the segment of one-sided gradients. Cases
    this does not resolve (several kinks at once on one particle, e.g. the point
    ‖u‖ = 0 of 'pm' where all data kinks and the norm's kink meet) end at ``max_iter``,
    are flagged and warned about, and ``particles_converged`` < 1 says for how many
    particles. Measured (regression_1d, m = 1000, λ = 0.01, h = 0.01, t ∈ [0, 1]): the
    share of steps meeting tol = 1e-10 is 99 % (neuron), 98 % (sphere), 80 % (pm).
    """
    param, theta, X, y, lam = _check_inputs(param, theta0, X, y, lam)
    h = _check_positive(h, "h")
    tol = _check_positive(tol, "tol")
    max_iter = _check_int(max_iter, "max_iter")
    K, r = _step_count(T, h), _check_record_every(record_every)
    hh, ll, tt = jnp.float64(h), jnp.float64(lam), jnp.float64(tol)

    def advance(th, done, n):
        th, it_max, it_sum, res, ok, frac = _implicit_advance(
            param, th, X, y, ll, hh, tt, jnp.int32(n), jnp.int32(max_iter)
        )
        return th, dict(
            inner_iterations_max=float(it_max),
            inner_iterations_total=float(it_sum),
            inner_residual=float(res),
            converged=float(bool(ok)),
            particles_converged=float(frac),
        )

    names = ("inner_iterations_max", "inner_iterations_total", "inner_residual", "converged",
             "particles_converged")
    _, frames, steps, diags = _record_loop(advance, theta, K, r, names)
    diags["converged"][0] = 1.0
    diags["particles_converged"][0] = 1.0
    if K > 0 and not diags["converged"][1:].all():
        bad = np.flatnonzero(diags["converged"][1:] == 0.0)
        warnings.warn(
            f"implicit_steps: the inner Newton solve missed tol = {tol:g} in "
            f"{len(bad)} recording interval(s) (first ending at t = {t0 + steps[bad[0] + 1] * h:g};"
            f" worst residual {diags['inner_residual'].max():.3g}); see "
            "diagnostics['converged'] and ['inner_residual']",
            RuntimeWarning,
            stacklevel=2,
        )
    meta = dict(h=h, lam=lam, m=theta.shape[0], record_every=r, n_steps=K, t0=float(t0),
                tol=tol, max_iter=max_iter)
    return _trajectory("implicit", param, t0 + steps * h, frames, X, y, lam, diags, meta)


# ---------------------------------------------------------------------------------------
# Gradient flow (adaptive ODE solve)
# ---------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("param", "rtol", "atol", "max_steps"))
def _flow_segment(param, theta, X, y, lam, duration, rtol, atol, max_steps):
    term = diffrax.ODETerm(lambda t, th, args: particle_velocity(param, th, X, y, lam))
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        t0=0.0,
        t1=duration,
        dt0=None,
        y0=theta,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )
    # The exact flow stays on the sphere; remove the solver's O(tol) radial drift.
    theta1 = param.project(sol.ys[0])
    ok = sol.result == diffrax.RESULTS.successful
    return theta1, sol.stats["num_steps"], sol.stats["num_accepted_steps"], \
        sol.stats["num_rejected_steps"], ok


def gradient_flow(
    param,
    theta0,
    X,
    y,
    lam,
    T,
    record_times=None,
    n_records: int | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    t0: float = 0.0,
    max_steps: int = 100_000,
) -> Trajectory:
    """The particle gradient flow dθ_i/dt = −∇F'(μ_m)(θ_i) on [t0, t0 + T].

    Solved by diffrax's Tsit5 (5th order) with a PID step-size controller to
    (``rtol``, ``atol``), restarting the solver at every recording time. Records:
    either ``n_records`` ≥ 2 equispaced times t0 + k·T/(n_records − 1) (default 11), or
    ``record_times`` (absolute, strictly increasing, within [t0, t0 + T]; t0 and t0 + T
    are added when missing). ``sphere``: the state is re-projected on the sphere at each
    record time (removes the solver's O(tol) drift).

    diagnostics (per record, for the segment ending there): ``solver_steps``,
    ``accepted_steps``, ``rejected_steps``. A segment that fails (e.g. more than
    ``max_steps`` steps) raises RuntimeError.

    Sliding on kinks: v is discontinuous across the ReLU kinks wᵀx_j = 0 (and the kinks
    of V at β = 0 / ‖u‖ = 0 for 'sphere' / 'pm'). Where the field points into a kink
    from both sides, the true (Filippov) flow slides along it, but the ODE with
    σ'(0) = 0 chatters across it, and the adaptive solver pays ~1/tol steps to
    resolve the chattering. Measured (regression_1d, neuron, m = 1000, λ = 0.01,
    t ∈ [0, 1], 4 segments): rtol = atol = 1e-6: ~45 steps per segment; 1e-8: 400 to
    2000; 1e-10: more than 100 000 steps on [0.5, 0.75] (fails). For many particles and
    long horizons use tolerances ~1e-8, or implicit_steps (whose proximal steps slide
    correctly) with a small h, as the reference.
    """
    param, theta, X, y, lam = _check_inputs(param, theta0, X, y, lam)
    T = float(T)
    if not math.isfinite(T) or T < 0:
        raise ValueError(f"T (duration in mean-field time) must be finite and >= 0, got {T}")
    t0 = float(t0)
    if record_times is not None and n_records is not None:
        raise ValueError("give either record_times or n_records, not both")
    if record_times is None:
        n_records = 11 if n_records is None else n_records
        if isinstance(n_records, bool) or int(n_records) != n_records or n_records < 2:
            raise ValueError(f"n_records must be an integer >= 2, got {n_records!r}")
        n_records = int(n_records)
        # Equal durations computed once (not as differences of rounded times), so one
        # call and n_records − 1 calls of duration T/(n_records − 1) integrate alike.
        durations = [T / (n_records - 1)] * (n_records - 1) if T > 0 else []
        times = t0 + np.concatenate([[0.0], np.cumsum(durations)])
    else:
        rt = np.asarray(record_times, dtype=np.float64).ravel()
        if not np.isfinite(rt).all():
            raise ValueError("record_times contain NaN or inf")
        if rt.size and (np.any(np.diff(rt) <= 0)):
            raise ValueError("record_times must be strictly increasing")
        if rt.size and (rt[0] < t0 or rt[-1] > t0 + T * (1 + 1e-12) + 1e-15):
            raise ValueError(f"record_times must lie in [t0, t0 + T] = [{t0}, {t0 + T}]")
        times = rt
        if times.size == 0 or times[0] > t0:
            times = np.concatenate([[t0], times])
        if times[-1] < t0 + T:
            times = np.concatenate([times, [t0 + T]])
        durations = list(np.diff(times))
    rtol, atol = _check_positive(rtol, "rtol"), _check_positive(atol, "atol")
    max_steps = _check_int(max_steps, "max_steps")
    ll = jnp.float64(lam)
    frames = [np.asarray(theta)]
    stats = {"solver_steps": [0], "accepted_steps": [0], "rejected_steps": [0]}
    for k, dur in enumerate(durations):
        theta, ns, na, nr, ok = _flow_segment(
            param, theta, X, y, ll, jnp.float64(dur), rtol, atol, max_steps
        )
        if not bool(ok):
            raise RuntimeError(
                f"gradient_flow: the ODE solver failed on [{times[k]:g}, {times[k + 1]:g}] "
                f"(max_steps = {max_steps}, rtol = {rtol:g}, atol = {atol:g}). Usually a "
                "particle has reached a non-smooth point where the flow slides (e.g. ‖u‖ = 0 "
                "for 'pm', β = 0 for 'sphere', or a ReLU kink w·x_j = 0 pushed from both "
                "sides); use implicit_steps with a small h as the reference there, or raise "
                "max_steps / loosen the tolerances"
            )
        frames.append(np.asarray(theta))
        stats["solver_steps"].append(int(ns))
        stats["accepted_steps"].append(int(na))
        stats["rejected_steps"].append(int(nr))
    diags = {k: np.asarray(v, dtype=np.float64) for k, v in stats.items()}
    meta = dict(lam=lam, m=theta.shape[0], rtol=rtol, atol=atol, t0=t0, solver="Tsit5")
    return _trajectory("flow", param, times, np.stack(frames), X, y, lam, diags, meta)


# ---------------------------------------------------------------------------------------
# The seed's classic GD on L(W, α)
# ---------------------------------------------------------------------------------------


_classic_loss_jit = jax.jit(classic_loss)


@jax.jit
def _classic_advance(W, alpha, X, y, lam, lr, n):
    grad = jax.grad(classic_loss, argnums=(0, 1))

    def body(i, state):
        W, a = state
        gW, ga = grad(W, a, X, y, lam)
        return W - lr * gW, a - lr * ga

    return lax.fori_loop(0, n, body, (W, alpha))


def classic_gd(
    W, alpha, X, y, lam, lr, steps: int, record_every: int = 1, t0: float = 0.0
) -> Trajectory:
    """The seed's full-batch GD on L(W, α) = Σ_j (h(x_j) − y_j)² + λ Σ_i (‖w_i‖² + α_i²).

    (W, α) ← (W, α) − lr ∇L. This is the UNSCALED classic network, kept for reference:
    its time axis is the classic one, t = t0 + k·lr (NOT mean-field time), and the
    recorded support are the classic neurons as ``neuron`` particles (w_i, α_i), whose
    uniform measure predicts h(x)/m (objective.py). diagnostics: ``classic_loss``
    L(W, α) at each record (``objective`` is F of that uniform measure).
    """
    X, y = _as_data(X, y)
    W = jnp.asarray(W, dtype=jnp.float64)
    alpha = jnp.asarray(alpha, dtype=jnp.float64)
    if W.ndim != 2 or W.shape[1] != X.shape[1] or alpha.shape != (W.shape[0],) or W.size == 0:
        raise ValueError(
            f"need W (m, {X.shape[1]}) and alpha (m,), got {W.shape} and {alpha.shape}"
        )
    if not (bool(jnp.isfinite(W).all()) and bool(jnp.isfinite(alpha).all())):
        raise ValueError("W or alpha contain NaN or inf")
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    lr = _check_positive(lr, "lr")
    steps = _check_int(steps, "steps", minimum=0)
    r = _check_record_every(record_every)
    param = _params.get("neuron")
    ll, lrr = jnp.float64(lam), jnp.float64(lr)
    d = X.shape[1]

    def advance(theta, done, n):
        W1, a1 = _classic_advance(theta[:, :d], theta[:, d], X, y, ll, lrr, jnp.int32(n))
        return jnp.concatenate([W1, a1[:, None]], axis=1), {}

    theta = jnp.concatenate([W, alpha[:, None]], axis=1)
    _, frames, done, _ = _record_loop(advance, theta, int(steps), r)
    loss = np.array([float(_classic_loss_jit(f[:, :d], f[:, d], X, y, ll)) for f in frames])
    meta = dict(lr=lr, lam=lam, m=W.shape[0], record_every=r, n_steps=int(steps),
                t0=float(t0), time_axis="classic: t = k·lr")
    return _trajectory("classic_gd", param, t0 + done * lr, frames, X, y, lam,
                       {"classic_loss": loss}, meta)
