r"""KL-proximal operator of the grid objective F, by damped Newton on its n-dim dual.

prox^{KL}_{σF}(z) = argmin_{p ≥ 0} σF(p) + KL(p | z) = z ⊙ exp(−σ(λv/2 + Φᵀg)), where
g ∈ ℝⁿ minimizes the strictly convex H(g) = (n/2)‖g‖² + ⟨g, y⟩ + (1/σ) Σ_k p_k(g)
(docs/MATH.md, "The KL-prox of F"). Solved by :func:`mfjko.newton.damped_newton` (Armijo
backtracking, globally convergent, quadratic near the root), all in log space; a trial
point whose H overflows is rejected. Cost per Newton iteration: O(n²N) plus O(nN) per
line-search trial.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mfjko.newton import DualPenalty, damped_newton

Array = jax.Array

__all__ = ["kl_prox_newton"]


def kl_prox_newton(log_z, phi, y, shift, sigma, g0, tol, max_iter):
    r"""prox^{KL}_{σF}(z) in log space.

    Args:
      log_z: (N,) log z (may contain −inf where z = 0).
      phi: (n, N) features Φ.
      y: (n,) targets.
      shift: (N,) λv/2.
      sigma: σ = 2τ/ε > 0.
      g0: (n,) initial dual (warm start).
      tol: stop when ‖∇H(g)‖₂ ≤ tol · max(1, ‖y‖₂).
      max_iter: Newton iteration cap.

    Returns:
      (log_p (N,), g (n,), iterations, final ‖∇H‖₂).
    """

    def line(g, log_p, step):
        dlog_p = sigma * (step @ phi)  # log p(g − t·step) = log p(g) + t·σΦᵀstep
        return lambda t: log_p + t * dlog_p

    psi = DualPenalty(
        value=lambda log_p: jnp.sum(jnp.exp(log_p)) / sigma,
        mass=jnp.exp,
        hessian=lambda log_p: sigma * (phi * jnp.exp(log_p)) @ phi.T,
        line=line,
    )
    log_p0 = log_z - sigma * (shift + g0 @ phi)
    g, log_p, it, gnorm = damped_newton(psi, phi, y, g0, log_p0, tol, max_iter)
    return log_p, g, it, gnorm
