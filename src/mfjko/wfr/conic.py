r"""Conic particle gradient descent: the WFR particle flow of balanced ReLU neurons.

A particle is θ_i = (s_i, β_i) in the ``sphere`` layout: direction s_i ∈ S^{d−1}, sign
ε_i = sign β_i and mass r_i = |β_i|; m particles define ν_± = (1/m) Σ_{ε_i=±} r_i δ_{s_i}.
With G'_i = ε_i (1/n) Σ_j (f(x_j) − y_j) σ(s_iᵀx_j) + λ (first variation of the lifted G),
the WFR gradient flow on mean-field time is (docs/MATH.md "WFR §1")

    ds_i/dt = −∇_S G'_i,    dr_i/dt = −2 r_i G'_i,

which is exactly GD's flow on balanced neurons (w, α) = (√r s, ε√r) under the projection
s = w/‖w‖, r = |α|‖w‖ (β = α‖w‖, ``Sphere.from_classic``). :func:`conic_steps` is its
explicit Euler scheme (step h of mean-field time, retraction of s; the time loop is
:func:`mfjko.particles.conic_gradient_descent`); :func:`conic_flow` its tight ODE solve.
"""

from __future__ import annotations

import math
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mfjko.parametrizations import get as get_param
from mfjko.parametrizations import relu
from mfjko.trajectory import Trajectory

Array = jax.Array

__all__ = [
    "balanced_to_conic",
    "conic_steps",
    "conic_to_balanced",
    "conic_velocity",
    "conic_objective",
    "check_conic_inputs",
    "conic_flow",
]


def balanced_to_conic(W, alpha) -> Array:
    """θ_i = (s_i, β_i) = (w_i/‖w_i‖, α_i‖w_i‖), shape (m, d + 1).

    The projection of classic neurons on directions and signed masses r = |α|‖w‖
    (``Sphere.from_classic``; exact for any neuron; the conic flow describes GD only for
    balanced ones, ‖w‖ = |α|). w = 0 maps to s = e_1, β = 0.
    """
    W = jnp.asarray(W, jnp.float64)
    alpha = jnp.asarray(alpha, jnp.float64)
    if W.ndim != 2 or alpha.shape != (W.shape[0],):
        raise ValueError(f"need W (m, d) and alpha (m,), got {W.shape}, {alpha.shape}")
    return get_param("sphere").from_classic(W, alpha)


def conic_to_balanced(theta) -> tuple[Array, Array]:
    """The balanced neurons (w, α) = (√|β| s, sign(β)√|β|) of particles θ (m, d + 1)."""
    theta = jnp.asarray(theta, jnp.float64)
    s, beta = theta[:, :-1], theta[:, -1]
    rho = jnp.sqrt(jnp.abs(beta))
    return rho[:, None] * s, jnp.sign(beta) * rho


def _residual(theta, X, y):
    s, beta = theta[:, :-1], theta[:, -1]
    return relu(X @ s.T) @ beta / theta.shape[0] - y  # f = (1/m) Σ β_i σ(s_iᵀx)


def _g_prime(s, sign, res, X, lam):
    """G'(s, ε) = ε (1/n) Σ_j res_j σ(sᵀx_j) + λ for one direction s (d,)."""
    return sign * jnp.mean(res * relu(X @ s)) + lam


@jax.jit
def conic_velocity(theta, X, y, lam) -> Array:
    """(ds_i/dt, dβ_i/dt) = (−∇_S G'_i, −2 β_i G'_i), shape (m, d + 1) (uniform weights 1/m).

    ∇_S is the tangential gradient (σ'(0) = 0); β = 0 stays 0 (sign 0 freezes s).
    """
    s, beta = theta[:, :-1], theta[:, -1]
    sign = jnp.sign(beta)
    res = _residual(theta, X, y)
    gp = jax.vmap(_g_prime, in_axes=(0, 0, None, None, None))(s, sign, res, X, lam)
    grad = jax.vmap(jax.grad(_g_prime), in_axes=(0, 0, None, None, None))(s, sign, res, X, lam)
    tang = grad - jnp.sum(grad * s, axis=1, keepdims=True) * s
    return jnp.concatenate([-tang, (-2.0 * beta * gp)[:, None]], axis=1)


@jax.jit
def conic_objective(theta, X, y, lam) -> Array:
    """G(ν) = (1/(2n))‖f − y‖² + λ(1/m)Σ|β_i| (= F of the ``sphere`` measure, V = 2|β|)."""
    res = _residual(theta, X, y)
    return 0.5 * jnp.mean(res * res) + lam * jnp.mean(jnp.abs(theta[:, -1]))


def check_conic_inputs(theta0, X, y, lam):
    """(θ, X, y, λ) as float64 arrays and a float, checked (ValueError naming the fix).

    θ (m, d + 1) with unit directions, X (n, d), y (n,), all finite; λ finite ≥ 0.
    """
    theta = jnp.asarray(theta0, jnp.float64)
    X = jnp.asarray(X, jnp.float64)
    y = jnp.asarray(y, jnp.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise ValueError(f"need X (n, d) and y (n,), got {X.shape}, {y.shape}")
    if theta.ndim != 2 or theta.shape[1] != X.shape[1] + 1 or theta.shape[0] == 0:
        raise ValueError(f"theta0 must have shape (m, {X.shape[1] + 1}), got {theta.shape}")
    for name, a in (("theta0", theta), ("X", X), ("y", y)):
        if not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError(f"{name} contains NaN or inf")
    if float(jnp.max(jnp.abs(jnp.linalg.norm(theta[:, :-1], axis=1) - 1.0))) > 1e-8:
        raise ValueError("theta0: directions must be unit vectors (use balanced_to_conic)")
    lam = float(lam)
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    return theta, X, y, lam


def _euler_step(carry, X, y, lam, h):
    theta, min_factor = carry
    v = conic_velocity(theta, X, y, lam)
    s = theta[:, :-1] + h * v[:, :-1]
    s = s / jnp.linalg.norm(s, axis=1, keepdims=True)
    beta = theta[:, -1]
    # β ← β(1 − 2hG'): the factor must stay positive, else h is too large
    factor = jnp.where(beta != 0, 1.0 + h * v[:, -1] / jnp.where(beta != 0, beta, 1.0), 1.0)
    new = jnp.concatenate([s, (beta * factor)[:, None]], axis=1)
    return new, jnp.minimum(min_factor, jnp.min(factor))


@jax.jit
def _advance(theta, X, y, lam, h, n):
    return lax.fori_loop(0, n, lambda i, c: _euler_step(c, X, y, lam, h),
                         (theta, jnp.asarray(jnp.inf)))


def conic_steps(theta, X, y, lam, h, n: int) -> tuple[Array, float]:
    """Make n explicit conic steps s ← (s − h∇_S G')/‖·‖, β ← β(1 − 2hG').

    One compiled program serves every n; no input checks (the ``conic`` stepper's callers
    check: :func:`check_conic_inputs`).

    Args:
      theta: (m, d + 1) particles (s, β).
      X: (n_data, d) data with bias column.
      y: (n_data,) targets.
      lam: λ.
      h: step of mean-field time.
      n: number of steps.

    Returns:
      (θ after n steps, the smallest mass factor 1 − 2hG' met; ≤ 0 means h is too large).
    """
    theta, min_factor = _advance(theta, X, y, jnp.float64(lam), jnp.float64(h), jnp.int32(n))
    return theta, float(min_factor)


@partial(jax.jit, static_argnames=("max_steps",))
def _flow_solve(theta, X, y, lam, ts, rtol, atol, max_steps):
    term = diffrax.ODETerm(lambda t, th, args: conic_velocity(th, X, y, lam))
    sol = diffrax.diffeqsolve(
        term, diffrax.Tsit5(), t0=ts[0], t1=ts[-1], dt0=None, y0=theta,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    return sol.ys, sol.result == diffrax.RESULTS.successful, sol.stats["num_steps"]


def conic_flow(theta0, X, y, lam, T, n_records: int = 11, rtol: float = 1e-10,
               atol: float = 1e-10, t0: float = 0.0, max_steps: int = 200_000) -> Trajectory:
    """The conic flow ds/dt = −∇_S G', dβ/dt = −2βG' on [t0, t0 + T] (Tsit5, PID control).

    Records at ``n_records`` equispaced times; directions are re-normalized at the
    records (removes the solver's O(tol) drift off the sphere). RuntimeError if the
    solver fails (e.g. more than ``max_steps`` steps, as when chattering on a kink).

    Returns:
      Trajectory(method="conic_flow", param="sphere", support (n_records, m, d + 1),
      diagnostics["objective"] = G, meta["solver_steps"]).
    """
    theta, X, y, lam = check_conic_inputs(theta0, X, y, lam)
    if int(n_records) != n_records or n_records < 2:
        raise ValueError(f"n_records must be an integer >= 2, got {n_records}")
    T = float(T)
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"T must be finite and > 0, got {T}")
    ts = t0 + np.linspace(0.0, T, int(n_records))
    ys, ok, nsteps = _flow_solve(theta, X, y, jnp.float64(lam), jnp.asarray(ts),
                                 jnp.float64(rtol), jnp.float64(atol), int(max_steps))
    if not bool(ok):
        raise RuntimeError(f"conic_flow: the ODE solver failed after {int(nsteps)} steps "
                           "(raise max_steps or loosen rtol/atol)")
    ys = np.array(ys)  # writable copy
    ys[:, :, :-1] /= np.linalg.norm(ys[:, :, :-1], axis=2, keepdims=True)
    obj = np.array([float(conic_objective(jnp.asarray(f), X, y, lam)) for f in ys])
    m = ys.shape[1]
    return Trajectory(
        method="conic_flow", param="sphere", t=ts, support=ys, weights=np.full(m, 1.0 / m),
        diagnostics={"objective": obj},
        meta={"lam": lam, "rtol": rtol, "atol": atol, "solver_steps": int(nsteps)},
    )
