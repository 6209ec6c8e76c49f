r"""Dense NumPy reference for one entropic WFR (unbalanced) JKO step on a direction grid.

Solves (docs/MATH.md "WFR §4"), for masses q = (q₊, q₋) (2, N):

    min_{γ₊, γ₋ ≥ 0, ν ≥ 0} Σ_± [ε KL(γ_± | R_±) + ρ KL(γ_±1 | ν_±) + ρ' KL(γ_±ᵀ1 | q_±)] + 2τ G(ν),
    R_±,kl = ω_k K_kl q_±,l / Z_l,  K = exp(−C/ε),  Z_l = Σ_k ω_k K_kl,
    G(ν) = (1/(2n))‖Φ(ν₊ − ν₋) − y‖² + Σ_± ⟨λ + ψ_±, ν_±⟩,

by generalized Sinkhorn on γ = diag(a) R diag(b) in log space:
b = (q / Rᵀa)^θ with θ = ρ'/(ρ' + ε) (ρ' = ρ by default), then (a, ν) from the prox of
the first-marginal term, a = u^{−ρ/ε}, ν = a ⊙ Rb / u, u = 1 + (2τ/ρ)(λ + ψ + Φᵀg), where g ∈ ℝⁿ
minimizes H(g) = (n/2)‖g‖² + ⟨g, y⟩ + (ε/(2τ)) Σ a ⊙ Rb (damped Newton, domain u > 0).
Plain loops, explicit N×N matrices, no acceleration: the yardstick for the JAX solver.
``debias=True``: the debiased step J − (ε/2)H_ω(γ1) + (ε/2)H_ω(γᵀ1) (docs/MATH.md "WFR §7"),
a damped fixed point on log a with a = (z/ω)u^{−2ρ/ε}.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from mfjko.jko.dense import ConvergenceError

__all__ = ["ConvergenceError", "DenseWFRResult", "check_wfr_data", "wfr_jko_step_dense"]


class DenseWFRResult(NamedTuple):
    """Full output of :func:`wfr_jko_step_dense` (``full=True``)."""

    nu: np.ndarray  # (2, N) new masses ν (the JKO iterate)
    p: np.ndarray  # (2, N) first marginal of the plan, p = ν ⊙ u
    col: np.ndarray  # (2, N) second marginal of the plan
    g: np.ndarray  # (n,) dual of the prox: g = (Φν − y)/n at convergence
    iterations: int
    marginal_error: float


def check_wfr_data(q, phi, y, lam, tau, eps, rho, potential=None, omega=None, rho_old=None):
    """Shapes, finiteness and signs of one WFR step's data (NumPy or JAX arrays).

    q (2, N) nonnegative with positive total mass; phi (n, N); y (n,); λ ≥ 0; τ, ε, ρ > 0;
    ρ' (``rho_old``, if given) > 0;
    optional potential ψ (2, N) with 1 + (2τ/ρ)(λ + ψ) > 0 (else the step creates mass
    from nothing, see docs/MATH.md "WFR §4"); optional cell weights ω (N,) > 0.
    Raises ValueError naming the offending input.
    """
    N = q.shape[1] if q.ndim == 2 else -1
    if q.ndim != 2 or q.shape[0] != 2 or N == 0:
        raise ValueError(f"q must have shape (2, N) (masses of the ± components), got {q.shape}")
    if phi.ndim != 2 or phi.shape[1] != N:
        raise ValueError(f"phi must be (n, N) with N = {N}, got {phi.shape}")
    if y.shape != (phi.shape[0],):
        raise ValueError(f"y must be (n,) = ({phi.shape[0]},), got {y.shape}")
    for name, arr in (("q", q), ("phi", phi), ("y", y)):
        if not bool(np.all(np.isfinite(np.asarray(arr)))):
            raise ValueError(f"{name} contains NaN or inf")
    if bool(np.any(np.asarray(q) < 0)):
        raise ValueError("q has negative entries; masses must be nonnegative")
    if not float(np.sum(np.asarray(q))) > 0:
        raise ValueError("q has no mass")
    for name, val in (("tau", tau), ("eps", eps), ("rho", rho)):
        if not (math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be positive and finite, got {val}")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be nonnegative and finite, got {lam}")
    if rho_old is not None and not (math.isfinite(rho_old) and rho_old > 0):
        raise ValueError(f"rho_old must be positive and finite (e.g. rho − eps), got {rho_old}")
    lin = lam
    if potential is not None:
        if potential.shape != (2, N):
            raise ValueError(f"potential must have shape (2, {N}), got {potential.shape}")
        if not bool(np.all(np.isfinite(np.asarray(potential)))):
            raise ValueError("potential contains NaN or inf")
        lin = lam + np.asarray(potential)
    if not bool(np.all(1.0 + (2.0 * tau / rho) * np.asarray(lin) > 0)):
        raise ValueError(
            "1 + (2τ/ρ)(λ + ψ) must be positive: with this potential and τ the step would "
            "create mass from nothing (reduce tau)"
        )
    if omega is not None:
        if omega.shape != (N,):
            raise ValueError(f"omega must have shape ({N},), got {omega.shape}")
        if not bool(np.all(np.isfinite(np.asarray(omega)) & (np.asarray(omega) > 0))):
            raise ValueError("omega (cell weights) must be positive and finite")


def _prox_newton(log_z, phi, y, lin, c, k_a, eps_over_2tau, g0, tol=1e-13, max_iter=200):
    """Minimize H(g) = (n/2)|g|² + ⟨g,y⟩ + (ε/2τ) Σ z u^{−k_a}, u = 1 + c(lin + Φᵀg).

    Damped Newton with Armijo backtracking; a trial with some u ≤ 0 is rejected.
    Returns g, log u (2N,).
    """
    n = phi.shape[0]
    g = np.array(g0, dtype=np.float64)

    def log_u_of(g):
        arg = c * (lin + phi.T @ g)
        return np.log1p(arg) if np.all(arg > -1.0) else None

    def H(g):
        lu = log_u_of(g)
        if lu is None:
            return np.inf
        return 0.5 * n * g @ g + g @ y + eps_over_2tau * np.exp(logsumexp(log_z - k_a * lu))

    scale = max(1.0, np.linalg.norm(y))
    for _ in range(max_iter):
        lu = log_u_of(g)
        nu = np.exp(log_z - (k_a + 1.0) * lu)
        grad = n * g + y - phi @ nu
        if np.linalg.norm(grad) <= tol * scale:
            return g, lu
        hess = n * np.eye(n) + c * (k_a + 1.0) * (phi * (nu / np.exp(lu))) @ phi.T
        step = np.linalg.solve(hess, grad)
        h0, slope, t = H(g), grad @ step, 1.0
        slack = 1e-13 * (abs(h0) + 1.0)  # lets the full step through at rounding level
        while t > 1e-20:
            h1 = H(g - t * step)
            if np.isfinite(h1) and h1 <= h0 - 1e-4 * t * slope + slack:
                break
            t *= 0.5
        if t <= 1e-20:
            break
        g = g - t * step
    lu = log_u_of(g)
    grad = n * g + y - phi @ np.exp(log_z - (k_a + 1.0) * lu)
    if np.linalg.norm(grad) <= 1e3 * tol * scale:
        return g, lu  # stalled at rounding level
    raise ConvergenceError(f"WFR prox Newton: |grad H| = {np.linalg.norm(grad):.3e} > tol")


def _as_dense_data(cost, q, phi, y, potential, omega):
    """The step's arrays as float64 NumPy; q (2N,) reshaped to (2, N)."""
    cost = np.asarray(cost, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 1 and q.shape[0] % 2 == 0:
        q = q.reshape(2, -1)
    phi, y = np.asarray(phi, np.float64), np.asarray(y, np.float64)
    psi = None if potential is None else np.asarray(potential, np.float64)
    om = None if omega is None else np.asarray(omega, np.float64)
    return cost, q, phi, y, psi, om


def _check_cost(cost, N: int) -> None:
    if cost.shape != (N, N):
        raise ValueError(f"cost must be (N, N) = ({N}, {N}), got {cost.shape}")
    if np.any(np.isnan(cost)) or np.any(cost == -np.inf):
        raise ValueError("cost contains NaN or -inf")


def _log_reference_plan(cost, log_q, omega, eps):
    """The log reference plan (2, N, N): log R_±[k, l] = log ω_k + log K_kl + log q_±,l − log Z_l.

    K = exp(−C/ε), Z_l = Σ_k ω_k K_kl; −inf where q = 0.
    """
    N = cost.shape[0]
    log_omega = np.zeros(N) if omega is None else np.log(omega)
    log_k = -cost / eps
    log_zeta = logsumexp(log_k + log_omega[:, None], axis=0)  # Z_l = Σ_k ω_k K_kl
    return log_omega[None, :, None] + log_k[None] + (log_q - log_zeta[None])[:, None, :]


def _dense_sinkhorn(log_R, q, log_q, phi_signed, y, lin, theta, k_a, c, eps_over_2tau, tol,
                    max_iter) -> DenseWFRResult:
    """The plain generalized Sinkhorn loop of :func:`wfr_jko_step_dense` (module docstring).

    Raises ConvergenceError if ``tol`` is not reached within ``max_iter`` iterations.
    """
    N = q.shape[1]
    positive = q > 0

    def log_rt(log_a):  # log (Rᵀa), (2, N)
        return logsumexp(log_R + log_a[:, :, None], axis=1)

    g = np.zeros(phi_signed.shape[0])
    log_u = np.log1p(c * (lin + phi_signed.T @ g)).reshape(2, N)
    err = np.inf
    for it in range(1, max_iter + 1):
        log_a = -k_a * log_u
        with np.errstate(invalid="ignore"):
            log_b = np.where(positive, theta * (log_q - log_rt(log_a)), 0.0)
        log_z = logsumexp(log_R + log_b[:, None, :], axis=2)  # log (Rb), (2, N)
        g, lu = _prox_newton(log_z.reshape(-1), phi_signed, y, lin, c, k_a, eps_over_2tau, g)
        log_u = lu.reshape(2, N)
        log_a = -k_a * log_u
        log_rta = log_rt(log_a)
        col = np.exp(log_b + log_rta)  # γᵀ1 of the plan diag(a) R diag(b)
        with np.errstate(invalid="ignore"):
            target = np.where(positive, np.exp(theta * log_q + (1 - theta) * log_rta), 0.0)
        err = np.abs(col - target).sum() / q.sum()
        if err <= tol:
            p = np.exp(log_z + log_a)
            nu = np.exp(log_z + log_a - log_u)
            return DenseWFRResult(nu, p, col, g, it, float(err))
    raise ConvergenceError(
        f"wfr_jko_step_dense: marginal error {err:.3e} > tol {tol:.1e} after {max_iter} "
        "iterations"
    )


def _b_exponents(eps, rho_old, source):
    """(θ_q, θ_ω) of the debiased b-update log b = θ_q log q + θ_ω log ω − (θ_q + θ_ω) log Rᵀa.

    source: with the +(ε/2)H_ω(γᵀ1) term (docs/MATH.md "WFR §7"), else the target-only
    variant (θ_ω = 0, the standard θ).
    """
    den = rho_old + eps + (0.5 * eps if source else 0.0)
    return rho_old / den, (0.5 * eps / den if source else 0.0)


def _dense_debiased(log_R, q, log_q, log_omega, phi_signed, y, lin, rho_old, eps, k_a, c, tol,
                    max_iter, source=True) -> DenseWFRResult:
    """The damped fixed point on log a of the debiased step (docs/MATH.md "WFR §7").

    One map: log b from Rᵀa, z = Rb, g = argmin H(·; z²/ω) with exponent 2ρ/ε,
    log a ← ½(log a + log z − log ω − (2ρ/ε) log u). Plain (no Anderson), from
    log a = ½ log(q/ω). Raises ConvergenceError past ``max_iter``.
    """
    N = q.shape[1]
    positive = q > 0
    th_q, th_w = _b_exponents(eps, rho_old, source)
    k2 = 2.0 * k_a

    def log_rt(log_a):  # log (Rᵀa), (2, N)
        return logsumexp(log_R + log_a[:, :, None], axis=1)

    g = np.zeros(phi_signed.shape[0])
    log_a = 0.5 * (np.maximum(log_q, -700.0) - log_omega)
    err = np.inf
    for it in range(1, max_iter + 1):
        with np.errstate(invalid="ignore"):
            log_b = np.where(positive, th_q * log_q + th_w * log_omega
                             - (th_q + th_w) * log_rt(log_a), 0.0)
        log_z = logsumexp(log_R + log_b[:, None, :], axis=2)
        g, lu = _prox_newton((2 * log_z - log_omega).reshape(-1), phi_signed, y, lin, c, k2,
                             1.0 / (c * k2), g)
        log_u = lu.reshape(2, N)
        log_t = log_z - log_omega - k2 * log_u  # T(log a)
        log_rta = log_rt(log_t)
        col = np.exp(log_b + log_rta)
        with np.errstate(invalid="ignore"):
            target = np.where(positive, np.exp(th_q * log_q + th_w * log_omega
                                               + (1 - th_q - th_w) * log_rta), 0.0)
        err = np.abs(col - target).sum() / q.sum()
        if err <= tol:
            p = np.exp(log_z + log_t)
            return DenseWFRResult(p * np.exp(-log_u), p, col, g, it, float(err))
        log_a = 0.5 * (log_a + log_t)
    raise ConvergenceError(
        f"wfr_jko_step_dense (debias): marginal error {err:.3e} > tol {tol:.1e} after "
        f"{max_iter} iterations"
    )


def wfr_jko_step_dense(
    cost, q, phi, y, lam: float, tau: float, eps: float, rho: float = 2.0, *,
    potential=None, omega=None, rho_old: float | None = None, tol: float = 1e-11,
    max_iter: int = 100_000, full: bool = False, debias: bool = False,
    debias_source: bool = True,
):
    r"""One entropic WFR JKO step ν = argmin (module docstring), dense and plain.

    Args:
      cost: (N, N) cost C between directions (e.g. :func:`~mfjko.wfr.directions.cone_cost`;
        +inf = no transport). The same C serves both sign components; there is no
        transport between them.
      q: (2, N) or (2N,) previous masses (q₊, q₋) ≥ 0.
      phi: (n, N) direction features Φ_S[j, k] = σ(s_kᵀx_j); the − component enters
        with −Φ_S.
      y: (n,) targets.
      lam: λ ≥ 0 (weight decay per unit mass).
      tau: JKO step (mean-field time).
      eps: entropic ε (units of C, i.e. angle²).
      rho: marginal weight ρ of the KL terms (ρ = 2: the flow of GD on balanced neurons).
      rho_old: weight ρ' of the old marginal's KL (default ρ; ρ − ε: MATH.md "WFR §5").
      potential: optional (2, N) linear potential ψ added to G (tests: linear G).
      omega: optional (N,) cell weights ω (None: uniform; only ratios matter).
      tol: stop when ‖γᵀ1 − q^θ(Rᵀa)^{1−θ}‖₁ ≤ tol·|q|.
      max_iter: iteration cap.
      full: also return the plan's marginals and the dual (:class:`DenseWFRResult`).
      debias: the debiased step J − (ε/2)H_ω(γ1) + (ε/2)H_ω(γᵀ1) (MATH.md "WFR §7").
      debias_source: False drops +(ε/2)H_ω(γᵀ1) (O(ε) mass leak; tests only).

    Returns:
      ν (2, N), or a :class:`DenseWFRResult`. Raises ConvergenceError if ``tol`` is not
      reached within ``max_iter`` iterations, ValueError on bad input.
    """
    cost, q, phi, y, psi, om = _as_dense_data(cost, q, phi, y, potential, omega)
    lam, tau, eps, rho = float(lam), float(tau), float(eps), float(rho)
    rho_old = rho if rho_old is None else float(rho_old)
    check_wfr_data(q, phi, y, lam, tau, eps, rho, psi, om, rho_old)
    _check_cost(cost, q.shape[1])
    k_a, c = rho / eps, 2.0 * tau / rho  # a = u^{-ρ/ε}, u = 1 + c(lin + Φᵀg)
    lin = (lam + (np.zeros(q.shape) if psi is None else psi)).reshape(-1)
    phi_signed = np.concatenate([phi, -phi], axis=1)  # (n, 2N)
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    log_R = _log_reference_plan(cost, log_q, om, eps)
    if debias:
        res = _dense_debiased(log_R, q, log_q, np.log(np.ones(q.shape[1]) if om is None else om),
                              phi_signed, y, lin, rho_old, eps, k_a, c, tol, max_iter,
                              debias_source)
    else:
        res = _dense_sinkhorn(log_R, q, log_q, phi_signed, y, lin, rho_old / (rho_old + eps),
                              k_a, c, eps / (2 * tau), tol, max_iter)
    return res if full else res.nu
