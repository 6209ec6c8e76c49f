r"""Dense reference for one entropic JKO step (NumPy, log domain, no tricks).

p = argmin_{p ∈ simplex} W_ε(p, q) + 2τF(p) (or its debiased variant, ``debias=True``:
− (ε/2)H(p) added) by Peyré's (2015) generalized Sinkhorn on
π = diag(a) K diag(b), K = exp(−C/ε), with the KL-prox of F solved by Newton on its
n-dimensional dual (docs/MATH.md, "Solving one entropic JKO step"). Deliberately plain (no
warm start, no acceleration, no jit): the reference the production solver of
:mod:`mfjko.jko.solver` is tested against.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from mfjko.errors import ConvergenceError  # re-exported: its historical home

__all__ = ["ConvergenceError", "report_failure", "entropic_jko_step", "kl_prox_dual_newton"]


def report_failure(message: str, on_failure: str) -> None:
    """Report a solver's missed tolerance as ``on_failure`` asks.

    Args:
      message: what was missed, with the figures.
      on_failure: "raise" (:class:`ConvergenceError`) or "warn" (a RuntimeWarning
        pointing at the solver's caller).
    """
    if on_failure == "raise":
        raise ConvergenceError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_step_data(q, phi, y, v, lam, tau, eps) -> None:
    """Check shapes, finiteness and signs of one JKO step's data; ValueError names the input.

    Works on NumPy (this reference) and JAX arrays (the production solver, which must not
    copy them to the host).

    Args:
      q: (N,) previous weights, nonnegative with positive mass.
      phi: (n, N) features Φ.
      y: (n,) targets.
      v: (N,) weight-decay potential V(θ_k).
      lam: weight decay λ ≥ 0.
      tau: JKO step τ > 0 (mean-field time).
      eps: entropic ε > 0 (units of the cost, θ-distance²).
    """
    xp = np if isinstance(q, np.ndarray) else jnp
    N = q.shape[0] if q.ndim == 1 else -1
    if q.ndim != 1 or N == 0:
        raise ValueError(f"q must be a nonempty vector (N,), got shape {q.shape}")
    if phi.ndim != 2 or phi.shape[1] != N:
        raise ValueError(f"phi must be (n, N) with N = {N}, got {phi.shape}")
    if y.shape != (phi.shape[0],):
        raise ValueError(f"y must be (n,) = ({phi.shape[0]},), got {y.shape}")
    if v.shape != (N,):
        raise ValueError(f"v must be (N,) = ({N},), got {v.shape}")
    for name, arr in (("q", q), ("phi", phi), ("y", y), ("v", v)):
        if not bool(xp.all(xp.isfinite(arr))):
            raise ValueError(f"{name} contains NaN or inf")
    if bool(xp.any(q < 0)):
        raise ValueError("q has negative entries; weights must be nonnegative")
    if not float(xp.sum(q)) > 0:
        raise ValueError("q has no mass")
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive time step, got {tau}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive, got {eps}")
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be nonnegative, got {lam}")


def _check_inputs(cost, q, phi, y, v, lam, tau, eps):
    cost = np.asarray(cost, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    check_step_data(q, phi, y, v, lam, tau, eps)
    N = q.shape[0]
    if cost.shape != (N, N):
        raise ValueError(f"cost must be (N, N) = ({N}, {N}), got {cost.shape}")
    # +inf costs are allowed (no transport between those points, e.g. signed components)
    if np.any(np.isnan(cost)) or np.any(cost == -np.inf):
        raise ValueError("cost contains NaN or -inf")
    return cost, q, phi, y, v


def kl_prox_dual_newton(log_z, phi, y, v, lam, sigma, g0=None, tol=1e-13, max_iter=100):
    r"""prox^{KL}_{σF}(z) in log space by damped Newton on the dual H (module docstring).

    Returns (log p (N,), g (n,)). Armijo backtracking on H makes it globally convergent
    (H is strictly convex with Hessian ⪰ n I).
    """
    n = phi.shape[0]
    g = np.zeros(n) if g0 is None else np.array(g0, dtype=np.float64)
    shift = 0.5 * lam * v

    def log_p_of(g):
        return log_z - sigma * (shift + phi.T @ g)

    def H(g):
        lp = log_p_of(g)
        return 0.5 * n * g @ g + g @ y + np.exp(logsumexp(lp)) / sigma

    for _ in range(max_iter):
        lp = log_p_of(g)
        p = np.exp(lp)
        grad = n * g + y - phi @ p
        if np.linalg.norm(grad) <= tol * max(1.0, np.linalg.norm(y)):
            return lp, g
        hess = n * np.eye(n) + sigma * (phi * p) @ phi.T
        step = np.linalg.solve(hess, grad)
        h0, slope, t = H(g), grad @ step, 1.0
        # Near the optimum the decrease t·slope ~ |∇H|² falls below the rounding of H;
        # the slack 1e-13|H| lets the (then quadratically convergent) full step through.
        slack = 1e-13 * (abs(h0) + 1.0)
        while t > 1e-20:
            h1 = H(g - t * step)
            if np.isfinite(h1) and h1 <= h0 - 1e-4 * t * slope + slack:
                break
            t *= 0.5
        g = g - t * step
        if t <= 1e-20 or abs(t * slope) <= 1e-300:
            break
    lp = log_p_of(g)
    grad = n * g + y - phi @ np.exp(lp)
    if np.linalg.norm(grad) <= 1e3 * tol * max(1.0, np.linalg.norm(y)):
        return lp, g  # stalled at rounding level
    raise ConvergenceError(f"KL-prox Newton: |grad H| = {np.linalg.norm(grad):.3e} > tol")


def entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, tol=1e-10, max_iter=200_000,
                      debias=False):
    r"""One entropic JKO step p = argmin_p W_ε(p, q) + 2τF(p) (dense reference).

    Parameters
    ----------
    cost : (N, N) ground cost C_kl (symmetric or not; K = exp(−C/ε); +inf = no transport).
    q : (N,) previous grid weights (nonnegative; usually a probability vector, and p
        gets the same mass, since πᵀ1 = q fixes Σp = Σq).
    phi : (n, N) features Φ[j, k] = m(θ_k; x_j).
    y : (n,) targets.  v : (N,) weight-decay potential V(θ_k).
    lam : weight decay λ ≥ 0.  tau : JKO step of mean-field time.  eps : entropic ε.
    tol : stop when the second-marginal error ‖b ⊙ Kᵀa − q‖₁ ≤ tol.
    debias : solve the debiased step p = argmin_p W_ε(p, q) − (ε/2)H(p) + 2τF(p)
        (H(p) = Σ p log p; docs/MATH.md "Debiased entropic JKO"): the p-update becomes
        p = prox^{KL}_{σ'F}((Kb)²), σ' = 4τ/ε, and log a = log p − log Kb depends on b,
        so the a-update is damped (log a ← ½(log a + log a_new), as symmetric Sinkhorn;
        the undamped map oscillates, with eigenvalues near −1).

    Returns:
    -------
    p : (N,) new weights (the prox output a ⊙ Kb, rescaled to the mass of q; the mass
    error before rescaling is ≤ tol). Raises :class:`ConvergenceError` (a RuntimeError) with the
    achieved marginal error if tol is not reached within ``max_iter`` iterations.
    """
    cost, q, phi, y, v = _check_inputs(cost, q, phi, y, v, lam, tau, eps)
    sigma = (4.0 if debias else 2.0) * tau / eps
    log_k = -cost / eps
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    n = phi.shape[0]
    g = np.zeros(n)
    log_a = np.zeros_like(q) if debias else -sigma * (0.5 * lam * v + phi.T @ g)
    err = np.inf
    for _ in range(max_iter):
        log_b = log_q - logsumexp(log_k + log_a[:, None], axis=0)
        log_z = logsumexp(log_k + log_b[None, :], axis=1)
        if debias:
            log_p, g = kl_prox_dual_newton(2.0 * log_z, phi, y, v, lam, sigma, g0=g)
        else:
            log_p, g = kl_prox_dual_newton(log_z, phi, y, v, lam, sigma, g0=g)
        log_a_new = log_p - log_z
        # second marginal of π = diag(a) K diag(b) after the a-update
        col = np.exp(log_b + logsumexp(log_k + log_a_new[:, None], axis=0))
        err = np.abs(col - q).sum()
        if err <= tol:
            p = np.exp(log_p)
            return p * (q.sum() / p.sum())
        log_a = 0.5 * (log_a + log_a_new) if debias else log_a_new
    raise ConvergenceError(
        f"entropic_jko_step: marginal error {err:.3e} > tol {tol:.1e} after {max_iter} "
        "Sinkhorn iterations"
    )
