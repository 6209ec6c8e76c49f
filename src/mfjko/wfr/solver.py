r"""Production entropic WFR JKO on a direction grid (JAX, log domain).

One step (docs/MATH.md "WFR §4") maps masses q (2, N) of the ± components to
ν = argmin_ν min_γ Σ_± [εKL(γ_± | R_±) + ρKL(γ_±1 | ν_±) + ρ'KL(γ_±ᵀ1 | q_±)] + 2τG(ν),
by the generalized Sinkhorn iteration of :mod:`mfjko.wfr.dense`: a fixed point on the prox
dual g ∈ ℝⁿ (debiased, MATH.md "WFR §7": on log a), warm-started, Anderson-accelerated (a
mixed g only if u = 1 + (2τ/ρ)(λ + Φᵀg) > 0), run by the balanced solver's one loop
:func:`mfjko.jko.sinkhorn.sinkhorn_loop` (soft b-update, relative error; one ε stage).

Kernel: the direction grid has no product structure (the cone cost is a function of
the geodesic distance only), so K = exp(−C/ε) is a dense N×N matrix, applied to both
components in one matrix product with a max-shift ("kernel mode"); when a row sum
falls below 1e-280 (possible underflow), that application is redone exactly as a
chunked log-sum-exp. On S¹ the matrix is circulant, but an FFT product would lose all
entries below 1e-16 of the largest, so we keep the dense product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp
from scipy.special import logsumexp as _np_logsumexp

from mfjko.jko.dense import report_failure
from mfjko.jko.sinkhorn import (
    Evaluation,
    LoopState,
    MarginalUpdate,
    SinkhornControls,
    sinkhorn_loop,
)
from mfjko.jko.step_types import SinkhornOptions, StepDiagnostics
from mfjko.newton import DualPenalty, damped_newton
from mfjko.wfr import directions as _dirs
from mfjko.wfr.dense import check_wfr_data

Array = jax.Array

__all__ = [
    "WFRKernel",
    "wfr_kernel",
    "WFRSolverOptions",
    "WFRState",
    "WFRDiagnostics",
    "wfr_jko_step",
    "direction_speed",
    "drift_ratio",
    "UNDERFLOW",
    "DEBIAS_START_TOL",
]

#: kernel-mode row sums below this are recomputed by an exact log-sum-exp: terms lost to
#: underflow (< 1e-308 each) are then < N·1e-28 relative to the sum.
UNDERFLOW = 1e-280
_BLOCK = 256  # rows per block of the exact (fallback) log-sum-exp
#: the debiased step starts from the standard step solved to this relative marginal error
#: (configs/wfr.yaml at ε = 1.5δ², 50 steps: iterations per step 29.7 at 1e-1 but one step of
#: 1272 at 1, 34.2 at 1e-2, 43.4 at 1e-6)
DEBIAS_START_TOL = 1e-2


class WFRKernel(eqx.Module):
    """Gibbs kernel K = exp(−C/ε) of the cone cost on N directions, for one (ε, ρ).

    K: (N, N) (symmetric).  log_k: (N, N) −C/ε (−inf where C = +inf), for the exact path.
    log_omega: (N,) log cell weights ω of the entropy's reference measure.
    log_zeta: (N,) log Z, Z_l = Σ_k ω_k K_kl (normalizes the reference plan R).
    eps, rho: scalars (arrays, so changing them does not recompile).
    """

    K: Array
    log_k: Array
    log_omega: Array
    log_zeta: Array
    eps: Array
    rho: Array

    @property
    def size(self) -> int:
        """Number of directions N."""
        return self.K.shape[0]

    def lse(self, U: Array) -> tuple[Array, Array]:
        """Log-domain kernel application out[c, k] = log Σ_l K_kl exp(U[c, l]).

        Args:
          U: (B, N) log-vectors (−inf allowed).

        Returns:
          (out (B, N), whether the exact path was taken (bool array)).
        """
        m = jnp.max(U, axis=1, keepdims=True)
        m = jnp.where(jnp.isfinite(m), m, 0.0)
        E = jnp.exp(U - m)
        finite = jnp.where(jnp.isfinite(U), 1.0, 0.0)
        # K symmetric: E K = (K Eᵀ)ᵀ; XLA's CPU product is ~3× faster in the (N,N)@(N,B) form
        both = (self.K @ jnp.concatenate([E, finite], axis=0).T).T
        S, reach = both[: U.shape[0]], both[U.shape[0] :]
        # Rows with reach = 0 have no finite term within the kernel's numerical support:
        # their exact value is < log(N·1e-308) + max U, i.e. a negligible mass; −inf is kept.
        risky = jnp.any((reach > 0) & ~(S >= UNDERFLOW))
        fast = m + jnp.log(S)
        out = lax.cond(risky, lambda: self._exact_lse(U), lambda: fast)
        return out, risky

    def _exact_lse(self, U: Array) -> Array:
        N = self.size
        nb = -(-N // _BLOCK)
        pad = nb * _BLOCK - N
        logk = jnp.pad(self.log_k, ((0, pad), (0, 0)), constant_values=-jnp.inf)
        blocks = logk.reshape(nb, _BLOCK, N)
        out = lax.map(lambda B: logsumexp(B[None, :, :] + U[:, None, :], axis=2), blocks)
        return jnp.moveaxis(out, 0, 1).reshape(U.shape[0], nb * _BLOCK)[:, :N]


def wfr_kernel(directions=None, eps: float = 0.01, rho: float = 2.0, *, cost=None,
               omega=None) -> WFRKernel:
    """Build the :class:`WFRKernel` once (O(N²) time and memory).

    Args:
      directions: (N, d) unit directions (cone cost with marginal weight ρ,
        :func:`~mfjko.wfr.directions.cone_cost`), or None when ``cost`` is given.
      eps: entropic ε > 0.
      rho: marginal weight ρ > 0.
      cost: explicit symmetric (N, N) cost instead of ``directions``.
      omega: (N,) positive cell weights (None: uniform; only ratios matter).

    Returns:
      The :class:`WFRKernel`.
    """
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive and finite, got {eps}")
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be positive and finite, got {rho}")
    if (directions is None) == (cost is None):
        raise ValueError("give exactly one of directions and cost")
    C = _dirs.cone_cost(directions, rho) if cost is None else np.asarray(cost, np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
        raise ValueError(f"cost must be a square (N, N) matrix, got {C.shape}")
    if np.any(np.isnan(C)) or np.any(C == -np.inf):
        raise ValueError("cost contains NaN or -inf")
    if not np.array_equal(C, C.T):
        raise ValueError("cost must be symmetric (the kernel is applied as Kᵀ = K)")
    N = C.shape[0]
    om = np.ones(N) if omega is None else np.asarray(omega, np.float64)
    if om.shape != (N,) or not np.all(np.isfinite(om) & (om > 0)):
        raise ValueError(f"omega must be ({N},) positive and finite")
    log_k = -C / eps
    log_omega = np.log(om)
    log_zeta = _np_logsumexp(log_k + log_omega[:, None], axis=0)
    return WFRKernel(
        K=jnp.asarray(np.exp(log_k)),
        log_k=jnp.asarray(log_k),
        log_omega=jnp.asarray(log_omega),
        log_zeta=jnp.asarray(log_zeta),
        eps=jnp.asarray(float(eps), dtype=jnp.float64),
        rho=jnp.asarray(float(rho), dtype=jnp.float64),
    )


@dataclass(frozen=True)
class WFRSolverOptions(SinkhornOptions):
    """Settings of the unbalanced generalized Sinkhorn (hashable: static under jit).

    The :class:`~mfjko.jko.step_types.SinkhornOptions` of the WFR step (no field of its own;
    validated by the base), with these meanings:
    tol: stop when ‖γᵀ1 − q^θ(Rᵀa)^{1−θ}‖₁ ≤ tol·|q| (relative second-marginal error).
    max_iter: Sinkhorn iteration cap.  newton_tol: the prox's Newton stops at
    ‖∇H‖₂ ≤ newton_tol·max(1, ‖y‖₂).  newton_max_iter: Newton iteration cap per prox.
    anderson_depth: m ≥ 2 mixes the last m iterates of g; 0 or 1: plain iterations.
    on_failure: "raise" (ConvergenceError) or "warn" (warning + converged=False).
    debias: solve the debiased step J − (ε/2)H_ω(γ1) + (ε/2)H_ω(γᵀ1) (docs/MATH.md
    "WFR §7"): the direction blur D = ε/(4τ) removed (O(ε²) left), the mass unbiased;
    a damped fixed point on log a ∈ ℝ^{2N} with Anderson.
    debias_anderson_depth: Anderson depth of that fixed point (``anderson_depth`` applies
    to the standard step only).
    """


class WFRState(eqx.Module):
    """Warm start carried across steps.

    g: (n,) prox dual (it fixes a = u(g)^{−ρ/ε} independently of q); log_a, log_b
    (2, N): scalings of the last plan (inspection).
    """

    g: Array
    log_a: Array
    log_b: Array


class WFRDiagnostics(StepDiagnostics):
    """Per-step scalars of one WFR JKO step.

    The :class:`~mfjko.jko.step_types.StepDiagnostics` with exact_lse and the masses,
    declared in this order (the order of the metrics columns).

    sinkhorn_iterations; marginal_error (relative, at exit); newton_total, newton_max,
    newton_residual (largest final ‖∇H‖); exact_lse (kernel applications that took the
    exact path); objective G(ν); step_objective (the minimized value J); mass_plus,
    mass_minus (|ν₊|, |ν₋|); mass_change (|ν| − |q|)/|q|; converged (bool).
    """

    sinkhorn_iterations: Array
    marginal_error: Array
    newton_total: Array
    newton_max: Array
    newton_residual: Array
    exact_lse: Array
    objective: Array
    step_objective: Array
    mass_plus: Array
    mass_minus: Array
    mass_change: Array
    converged: Array


def _prox_newton(log_z, phi, y, lin, c, k_a, eps_over_2tau, g0, tol, max_iter):
    r"""Minimize H(g) = (n/2)‖g‖² + ⟨g, y⟩ + (ε/2τ) Σ_k z_k u_k^{−k_a} by damped Newton.

    Domain u = 1 + c(lin + Φᵀg) > 0 (c = 2τ/ρ, k_a = ρ/ε); :func:`mfjko.newton.damped_newton`
    with ∇H = n g + y − Φν, ν = z u^{−k_a−1}, ∇²H = nI + c(k_a + 1) Φ diag(ν/u) Φᵀ ⪰ nI.
    Returns (g, log u (M,), iterations, final ‖∇H‖).
    """

    def log_u_of(g):
        arg = c * (lin + g @ phi)
        # outside the domain (u ≤ 0) H = +∞: NaN logs are turned into a rejected trial
        return jnp.where(arg > -1.0, jnp.log1p(jnp.maximum(arg, -1.0 + 1e-300)), jnp.nan)

    def mass(lu):
        return jnp.exp(log_z - (k_a + 1.0) * lu)

    def value(lu):
        val = eps_over_2tau * jnp.sum(jnp.exp(log_z - k_a * lu))
        return jnp.where(jnp.all(jnp.isfinite(lu)), val, jnp.inf)

    psi = DualPenalty(
        value=value,
        mass=mass,
        hessian=lambda lu: (c * (k_a + 1.0)) * (phi * (mass(lu) * jnp.exp(-lu))) @ phi.T,
        line=lambda g, lu, step: lambda t: log_u_of(g - t * step),
    )
    return damped_newton(psi, phi, y, g0, log_u_of(g0), tol, max_iter)


def _objective(nu, phi, y, lin):
    r = phi @ nu.reshape(-1) - y
    return 0.5 * jnp.mean(r * r) + jnp.sum(lin * nu.reshape(-1))


class _Step(NamedTuple):
    """One WFR step's data and closed-form pieces (docs/MATH.md "WFR §4").

    theta = ρ'/(ρ' + ε) (b-update exponent); k_a = ρ/ε (a = u^{−k_a}); c = 2τ/ρ
    (u = 1 + c(λ + ψ + Φᵀg)); positive: q > 0; q (2, N); log_q; log_qz = log q/Z (the column factor
    of R); q_mass = |q|.
    """

    kernel: WFRKernel
    phi: Array
    y: Array
    lin: Array
    tau: Array
    rho_old: Array
    theta: Array
    k_a: Array
    c: Array
    positive: Array
    q: Array
    log_q: Array
    log_qz: Array
    q_mass: Array

    def log_u_of(self, g):
        """(log u (2, N), whether u > 0 everywhere) at the prox dual g."""
        arg = self.c * (self.lin + g @ self.phi)
        return (jnp.log1p(jnp.maximum(arg, -1.0 + 1e-300)).reshape(2, self.kernel.size),
                jnp.all(arg > -1.0))

    def log_rta_of(self, log_a, eps=None):
        """(log Rᵀa (2, N), whether the kernel took its exact path); ``eps`` unused (one ε)."""
        out, fb = self.kernel.lse(log_a + self.kernel.log_omega)
        return self.log_qz + out, fb

    def log_z_of(self, log_b, eps=None):
        """(log z = log Rb (2, N), whether the kernel took its exact path); ``eps`` unused."""
        lz, fb = self.kernel.lse(self.log_qz + log_b)
        return self.kernel.log_omega + lz, fb


def _step_data(kernel: WFRKernel, q, phi, y, lin, tau, rho_old) -> _Step:
    eps, rho = kernel.eps, kernel.rho
    positive = q > 0
    log_q = jnp.where(positive, jnp.log(jnp.where(positive, q, 1.0)), -jnp.inf)
    return _Step(kernel=kernel, phi=phi, y=y, lin=lin, tau=tau, rho_old=rho_old,
                 theta=rho_old / (rho_old + eps), k_a=rho / eps, c=2.0 * tau / rho,
                 positive=positive, q=q, log_q=log_q, log_qz=log_q - kernel.log_zeta,
                 q_mass=jnp.sum(q))


def _update(st: _Step, x0, out0, log_a, evaluate, log_b, target, weight, admissible,
            reuse: bool) -> MarginalUpdate:
    """A WFR step's update: the soft b-update ``log_b``, err = ‖γᵀ1 − target‖₁/|q|."""

    def error(col, log_rta, ev):
        err = jnp.sum(jnp.abs(col - target(log_rta))) / st.q_mass
        return jnp.where(jnp.isfinite(err) & jnp.all(jnp.isfinite(ev.g)), err, jnp.nan)

    return MarginalUpdate(x0=x0, out0=out0, log_a=log_a, evaluate=evaluate, log_b=log_b,
                          error=error, lse_b=st.log_z_of, lse_a=st.log_rta_of,
                          rescale=lambda x, e, e_next: x, weight=weight,
                          admissible=admissible, reuse=reuse)


def _standard_update(st: _Step, g0, controls: SinkhornControls) -> MarginalUpdate:
    """The entropic step of MATH.md "WFR §4": the fixed point on g, a = u(g)^{−ρ/ε}."""
    eps = st.kernel.eps

    def log_a_of(g, e=None):
        return -st.k_a * st.log_u_of(g)[0]

    def evaluate(x, g, log_z, e):
        del g, e  # Newton starts from the iterate itself
        g_out, lu_flat, nit, nres = _prox_newton(
            log_z.reshape(-1), st.phi, st.y, st.lin, st.c, st.k_a, eps / (2.0 * st.tau), x,
            controls.newton_tol, controls.newton_max_iter,
        )
        log_u = lu_flat.reshape(2, st.kernel.size)
        return Evaluation(g_out, -st.k_a * log_u, g_out, nit, nres, log_u)

    def target(log_rta):
        return jnp.where(st.positive,
                         jnp.exp(st.theta * st.log_q + (1.0 - st.theta) * log_rta), 0.0)

    return _update(
        st, g0, (g0, log_a_of(g0), st.log_u_of(g0)[0]), log_a_of, evaluate,
        log_b=lambda log_rta: jnp.where(st.positive, st.theta * (st.log_q - log_rta), 0.0),
        target=target, weight=None, admissible=lambda g: st.log_u_of(g)[1], reuse=True,
    )


def _debiased_update(st: _Step, g0, controls: SinkhornControls, start=None,
                     damping: float = 0.5) -> MarginalUpdate:
    """The debiased step (MATH.md "WFR §7"): the damped fixed point on x = log a ∈ ℝ^{2N}.

    a = (z/ω) u^{−2ρ/ε}, p = a z = prox of the dual with z²/ω and exponent 2ρ/ε;
    log b = θ_q log q + θ_ω log ω − (θ_q + θ_ω) log Rᵀa, θ_q = ρ'/(ρ' + 3ε/2),
    θ_ω = (ε/2)/(ρ' + 3ε/2); Anderson in the q^{1/2}-weighted norm. Start: a = (p/ω)^{1/2}
    u^{−ρ/ε} (the solution's form when Rb ≈ (pω)^{1/2} u^{ρ/ε}) with (log p, log u) = ``start``,
    the standard step's solution; without it, p = q (floored) and u = u(g₀).
    """
    kernel, N = st.kernel, st.kernel.size
    eps, log_om = kernel.eps, kernel.log_omega
    den = st.rho_old + 1.5 * eps
    th_q, th_w = st.rho_old / den, 0.5 * eps / den
    k2 = 2.0 * st.k_a

    def evaluate(x, g, log_z, e):
        z_pos = jnp.isfinite(log_z)
        log_z2 = jnp.where(z_pos, 2.0 * log_z - log_om, -jnp.inf)
        g_out, lu_flat, nit, nres = _prox_newton(
            log_z2.reshape(-1), st.phi, st.y, st.lin, st.c, k2, eps / (4.0 * st.tau), g,
            controls.newton_tol, controls.newton_max_iter,
        )
        log_u = lu_flat.reshape(2, N)
        # where z = 0 the row of γ vanishes whatever a is: a = 1 there keeps x finite
        log_a = jnp.where(z_pos, jnp.where(z_pos, log_z, 0.0) - log_om - k2 * log_u, 0.0)
        image = (1.0 - damping) * x + damping * log_a.reshape(-1)
        return Evaluation(g_out, log_a, image, nit, nres, log_u)

    def target(log_rta):
        return jnp.where(st.positive, jnp.exp(th_q * st.log_q + th_w * log_om
                                              + (1.0 - th_q - th_w) * log_rta), 0.0)

    log_p, log_u0 = (st.log_q, st.log_u_of(g0)[0]) if start is None else start
    tiny = jnp.log(jnp.finfo(st.log_q.dtype).tiny)
    x0 = -st.k_a * log_u0 + 0.5 * (jnp.maximum(log_p, tiny) - log_om)
    return _update(
        st, x0.reshape(-1), (g0, x0, st.log_u_of(g0)[0]), lambda x, e: x.reshape(2, N),
        evaluate, log_b=lambda log_rta: jnp.where(
            st.positive, th_q * st.log_q + th_w * log_om - (th_q + th_w) * log_rta, 0.0),
        target=target, weight=jnp.sqrt(st.q / st.q_mass).reshape(-1), admissible=None,
        reuse=False,
    )


def _sinkhorn(st: _Step, g0, controls: SinkhornControls, depth: int,
              debias_depth: int = 0) -> LoopState:
    """The WFR generalized Sinkhorn loop for the step (debias_depth > 0: the debiased one).

    The debiased fixed point on log a starts from the standard step solved to the relative
    marginal error :data:`DEBIAS_START_TOL` (Anderson depth ``depth``): from g₀ and q alone,
    log a must travel O((ρ/ε)·c Φᵀg) (±670 on configs/wfr.yaml's first step) along a mode
    the damped map moves by O(1) per iteration (docs/MATH.md "WFR §7"). The iteration
    counts of both loops are added.
    """
    # warm start: any g with u(g) > 0 is admissible (u does not depend on q)
    g0 = jnp.where(st.log_u_of(g0)[1], g0, jnp.zeros_like(g0))
    if not debias_depth:
        return _loop(st, _standard_update(st, g0, controls), controls, depth)
    pre_tol = jnp.maximum(controls.tol, DEBIAS_START_TOL)
    pre = controls._replace(tol=pre_tol, stage_tol=pre_tol)
    s = _loop(st, _standard_update(st, g0, pre), pre, depth)
    ok = jnp.isfinite(s.err) & jnp.all(jnp.isfinite(s.g))
    g1 = jnp.where(ok, s.g, g0)
    start = (jnp.where(ok, s.log_z + s.log_a, st.log_q), st.log_u_of(g1)[0])
    d = _loop(st, _debiased_update(st, g1, controls, start), controls, debias_depth)
    return d._replace(it=d.it + s.it, newton_total=d.newton_total + s.newton_total,
                      exact=d.exact + s.exact, newton_max=jnp.maximum(d.newton_max, s.newton_max),
                      newton_res=jnp.maximum(d.newton_res, s.newton_res))


def _loop(st: _Step, update: MarginalUpdate, controls: SinkhornControls,
          depth: int) -> LoopState:
    """:func:`~mfjko.jko.sinkhorn.sinkhorn_loop` for a WFR update (one ε stage)."""
    return sinkhorn_loop(update, st.kernel.eps, controls, depth)


def _entropy(x, log_omega):
    """H_ω(x) = Σ x(log(x/ω) − 1) (0 log 0 = 0), x (2, N)."""
    log_x = jnp.log(jnp.where(x > 0, x, 1.0))
    return jnp.sum(jnp.where(x > 0, x * (log_x - log_omega - 1.0), 0.0))


def _step_result(st: _Step, q, s: LoopState, tol, debias: bool = False):
    """ν, the warm start and the diagnostics (G, the step objective J, masses) of the plan.

    With ``debias`` J includes −(ε/2)H_ω(γ1) + (ε/2)H_ω(γᵀ1) (MATH.md "WFR §7").
    """
    kernel = st.kernel
    eps, rho = kernel.eps, kernel.rho
    q_mass = st.q_mass
    log_u, log_z, log_b, col = s.aux, s.log_z, s.log_b, s.col
    log_a = s.log_a if debias else -st.k_a * log_u  # (the standard path's exact ops)
    p = jnp.exp(log_z + log_a)  # first marginal of the plan
    nu = p * jnp.exp(-log_u)
    G = _objective(nu, st.phi, st.y, st.lin)
    # J = ε KL(γ|R) + ρ KL(p|ν) + ρ' KL(γᵀ1|q) + 2τG, with Σγ log(γ/R) = ⟨p, log a⟩ + ⟨col, log b⟩
    kl_gamma = jnp.sum(p * log_a) + jnp.sum(jnp.where(col > 0, col * log_b, 0.0)) - jnp.sum(p)
    kl_gamma = kl_gamma + q_mass
    kl_new = jnp.sum(p * log_u - p + nu)
    kl_old = jnp.sum(jnp.where(col > 0, col * (jnp.log(jnp.where(col > 0, col, 1.0))
                                               - st.log_q), 0.0) - col + q)
    J = eps * kl_gamma + rho * kl_new + st.rho_old * kl_old + 2.0 * st.tau * G
    if debias:
        J = J + 0.5 * eps * (_entropy(col, kernel.log_omega) - _entropy(p, kernel.log_omega))
    finite = jnp.all(jnp.isfinite(nu)) & jnp.isfinite(J) & jnp.all(jnp.isfinite(s.g))
    converged = finite & (s.err <= tol)
    diag = WFRDiagnostics(
        sinkhorn_iterations=s.it, marginal_error=s.err, newton_total=s.newton_total,
        newton_max=s.newton_max, newton_residual=s.newton_res, exact_lse=s.exact,
        objective=G, step_objective=J, mass_plus=jnp.sum(nu[0]), mass_minus=jnp.sum(nu[1]),
        mass_change=(jnp.sum(nu) - q_mass) / q_mass, converged=converged,
    )
    return nu, WFRState(g=s.g, log_a=log_a, log_b=log_b), diag


@eqx.filter_jit
def _solve(kernel: WFRKernel, q, phi, y, lin, tau, rho_old, g0, controls, depth: int,
           debias_depth: int = 0):
    st = _step_data(kernel, q, phi, y, lin, tau, rho_old)
    return _step_result(st, q, _sinkhorn(st, g0, controls, depth, debias_depth),
                        controls.tol, debias_depth > 0)


def _controls(options: WFRSolverOptions, eps) -> SinkhornControls:
    """The traced controls of a WFR step: one ε stage (ε-scaling is balanced-only)."""
    # explicit dtypes: weakly-typed arrays would compile a second program
    f, i = jnp.float64, jnp.int32
    tol = jnp.asarray(options.tol, dtype=f)
    return SinkhornControls(
        tol=tol, max_iter=jnp.asarray(options.max_iter, dtype=i),
        newton_tol=jnp.asarray(options.newton_tol, dtype=f),
        newton_max_iter=jnp.asarray(options.newton_max_iter, dtype=i),
        eps_start=jnp.asarray(eps, dtype=f), eps_factor=jnp.asarray(1.0, dtype=f),
        stage_tol=tol)


def _depths(options: WFRSolverOptions) -> tuple[int, int]:
    """The static Anderson depths (standard step, debiased fixed point ≥ 1 or 0: standard)."""
    return (options.anderson_depth,
            max(int(options.debias_anderson_depth), 1) if options.debias else 0)


def as_masses(q, N: int) -> Array:
    """The masses q as (2, N) float64 for a kernel with N directions ((2N,) is reshaped).

    Raises:
      ValueError: any other shape.
    """
    q = jnp.asarray(q, jnp.float64)
    if q.shape == (2 * N,):
        q = q.reshape(2, N)
    if q.shape != (2, N):
        raise ValueError(f"q must have shape (2, N) = (2, {N}) of the kernel, got {q.shape}")
    return q


def wfr_jko_step(
    kernel: WFRKernel,
    q,
    phi,
    y,
    lam: float,
    tau: float,
    state: WFRState | None = None,
    options: WFRSolverOptions | None = None,
    potential=None,
    rho_old: float | None = None,
) -> tuple[Array, WFRState, WFRDiagnostics]:
    r"""One entropic WFR JKO step on the direction grid of ``kernel``.

    Args:
      kernel: :func:`wfr_kernel` (directions, ε, ρ, cell weights).
      q: (2, N) or (2N,) masses (q₊, q₋) ≥ 0 at the previous time.
      phi: (n, N) direction features Φ_S[j, k] = σ(s_kᵀx_j) (the − component uses −Φ_S).
      y: (n,) targets.
      lam: λ ≥ 0.
      tau: step of mean-field time.
      state: warm start (previous step's :class:`WFRState`), None for g = 0.
      options: :class:`WFRSolverOptions`.
      potential: optional (2, N) linear potential ψ added to G (G gets + ⟨ψ, ν⟩).
      rho_old: weight ρ' of the old-marginal KL term (default: the kernel's ρ; ρ − ε
        removes the O(ε) entropic bias of the reaction rate, docs/MATH.md "WFR §5").

    Returns:
      (ν (2, N), new state, :class:`WFRDiagnostics`). ν is the JKO iterate (its mass is
      free). On a missed tolerance or a non-finite value: ConvergenceError
      (on_failure="raise") or a RuntimeWarning with converged=False ("warn").
    """
    options = WFRSolverOptions() if options is None else options
    N = kernel.size
    q = as_masses(q, N)
    phi_s = jnp.asarray(phi, jnp.float64)
    y = jnp.asarray(y, jnp.float64)
    psi = None if potential is None else jnp.asarray(potential, jnp.float64)
    lam, tau = float(lam), float(tau)
    rho_old = float(kernel.rho) if rho_old is None else float(rho_old)
    check_wfr_data(q, phi_s, y, lam, tau, float(kernel.eps), float(kernel.rho), psi,
                   rho_old=rho_old)
    phi_signed = jnp.concatenate([phi_s, -phi_s], axis=1)
    lin = jnp.full((2 * N,), lam, dtype=jnp.float64) if psi is None else (lam + psi).reshape(-1)
    n = phi_s.shape[0]
    g0 = jnp.zeros(n, jnp.float64) if state is None else jnp.asarray(state.g, jnp.float64)
    if g0.shape != (n,):
        raise ValueError(f"state.g has shape {g0.shape}, expected ({n},)")
    f64 = lambda x: jnp.asarray(x, dtype=jnp.float64)
    nu, new_state, diag = _solve(kernel, q, phi_signed, y, f64(lin), f64(tau), f64(rho_old), g0,
                                 _controls(options, kernel.eps), *_depths(options))
    if not bool(diag.converged):
        d = diag.as_dict()
        msg = (
            f"WFR JKO step did not converge: marginal error {d['marginal_error']:.3e} "
            f"(tol {options.tol:.1e}) after {d['sinkhorn_iterations']} iterations, Newton "
            f"residual {d['newton_residual']:.3e}, finite ν: {bool(jnp.all(jnp.isfinite(nu)))}"
        )
        report_failure(msg, options.on_failure)
    return nu, new_state, diag


def _sphere_gradient(S, X, r):
    """∇_S R(s_k) for R(s) = (1/n) Σ_j r_j σ(sᵀx_j), shape (N, d).

    The Euclidean gradient (1/n) Σ_j r_j 1[sᵀx_j > 0] x_j minus its radial part R(s)s
    (sᵀ∇R = R since σ′(0) = 0).
    """
    grad = ((X @ S.T > 0) * r[:, None]).T @ X / X.shape[0]
    return grad - jnp.sum(grad * S, axis=1, keepdims=True) * S


@jax.jit
def direction_speed(S, q, X, y) -> Array:
    r"""RMS angular speed of the WFR flow's transport under masses q.

    (Σ_± Σ_k q_±,k ‖∇_S G′_±(s_k)‖² / Σq)^{1/2}, with ∇_S G′_± = ±∇_S R and
    R(s) = (1/n) Σ_j (f_q(x_j) − y_j) σ(sᵀx_j): the speed ‖ṡ‖ (radians per unit of
    mean-field time) at which GD's balanced neurons of direction s_k turn.

    Args:
      S: (N, d) unit directions.
      q: (2, N) masses (q₊, q₋).
      X: (n, d) data with bias column.
      y: (n,) targets.

    Returns:
      A scalar (radians per unit time).
    """
    r = jnp.maximum(X @ S.T, 0.0) @ (q[0] - q[1]) - y
    g2 = jnp.sum(_sphere_gradient(S, X, r) ** 2, axis=1)
    return jnp.sqrt(jnp.sum((q[0] + q[1]) * g2) / jnp.sum(q))


@eqx.filter_jit
def drift_ratio(kernel: WFRKernel, S, q, log_a, X, y, tau) -> Array:
    r"""Pinning figure of one WFR JKO step: how far its plan moves mass, against GD.

    ρ = (Σ q ‖B − s‖² / Σq)^{1/2} / (τ · :func:`direction_speed`), where
    B_±,l = Σ_k a_±,k ω_k K_kl s_k / Σ_k a_±,k ω_k K_kl is the barycentre (in ℝ^d) of where
    the plan γ_± = diag(a_±) R_± diag(b_±) sends the mass of s_l (b and q cancel). ρ ≈ 1:
    mass turns as GD's balanced neurons would; ρ ≈ 0: the direction grid pins it.

    Args:
      kernel: the step's :class:`WFRKernel`.
      S: (N, d) its directions.
      q: (2, N) masses at the start of the step.
      log_a: (2, N) log a of the step's plan (:attr:`WFRState.log_a`).
      X: (n, d) data with bias column.
      y: (n,) targets.
      tau: the step τ.

    Returns:
      A scalar (NaN when the speed is 0).
    """
    d = S.shape[1]
    log_w = log_a + kernel.log_omega  # (2, N)
    shifted = jnp.log(S + 2.0)  # every coordinate in [1, 3]: its log exists
    rows = jnp.concatenate([log_w] + [log_w + shifted[:, j] for j in range(d)], axis=0)
    out, _ = kernel.lse(rows)
    bary = jnp.exp(out[2:].reshape(d, 2, -1) - out[None, :2]) - 2.0  # (d, 2, N)
    disp2 = jnp.sum((bary - S.T[:, None, :]) ** 2, axis=0)
    drift2 = jnp.sum(jnp.where(q > 0, q * disp2, 0.0)) / jnp.sum(q)
    return jnp.sqrt(drift2) / (tau * direction_speed(S, q, X, y))
