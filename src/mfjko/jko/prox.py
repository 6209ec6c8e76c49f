r"""KL-proximal operator of the grid objective F, by damped Newton on its n-dim dual.

prox^{KL}_{σF}(z) = argmin_{p ≥ 0} σF(p) + KL(p | z) = z ⊙ exp(−σ(λv/2 + Φᵀg)), where
g ∈ ℝⁿ minimizes the strictly convex H(g) = (n/2)‖g‖² + ⟨g, y⟩ + (1/σ) Σ_k p_k(g)
(docs/MATH.md, "The KL-prox of F"). Newton with Armijo backtracking on H (globally
convergent, quadratic near the root), all in log space; a trial point whose H overflows is
rejected. Cost per Newton iteration: O(n²N) plus O(nN) per line-search trial.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_solve

Array = jax.Array

__all__ = ["kl_prox_newton"]

_ARMIJO = 1e-4
_MAX_HALVINGS = 60


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
    n = phi.shape[0]
    scaled_tol = tol * jnp.maximum(1.0, jnp.linalg.norm(y))
    eye = jnp.eye(n, dtype=log_z.dtype)

    def H(g, log_p):
        return 0.5 * n * jnp.dot(g, g) + jnp.dot(g, y) + jnp.sum(jnp.exp(log_p)) / sigma

    def grad_of(g, log_p):
        return n * g + y - phi @ jnp.exp(log_p)

    log_p0 = log_z - sigma * (shift + g0 @ phi)
    grad0 = grad_of(g0, log_p0)

    def cond(c):
        _, _, grad, it, stalled = c
        return (it < max_iter) & (jnp.linalg.norm(grad) > scaled_tol) & ~stalled

    def body(c):
        g, log_p, grad, it, _ = c
        p = jnp.exp(log_p)
        hess = n * eye + sigma * (phi * p) @ phi.T
        # SPD (⪰ nI): Cholesky, cheaper to run and to compile than a pivoted LU
        step = cho_solve((jnp.linalg.cholesky(hess), True), grad)
        dlog_p = sigma * (step @ phi)  # log p(g − t·step) = log p(g) + t·σΦᵀstep
        h0 = H(g, log_p)
        slope = jnp.dot(grad, step)
        # Near the root t·slope ~ ‖∇H‖² drops below the rounding of H; the slack lets the
        # (then quadratically convergent) full Newton step through.
        slack = 1e-13 * (jnp.abs(h0) + 1.0)

        def ls_cond(ls):
            t, k, ok = ls
            return ~ok & (k < _MAX_HALVINGS)

        def ls_body(ls):
            t, k, _ = ls
            t = jnp.where(k == 0, t, 0.5 * t)
            h1 = H(g - t * step, log_p + t * dlog_p)
            ok = jnp.isfinite(h1) & (h1 <= h0 - _ARMIJO * t * slope + slack)
            return t, k + 1, ok

        t, _, ok = lax.while_loop(ls_cond, ls_body, (jnp.asarray(1.0, g.dtype), 0, False))
        g_new = jnp.where(ok, g - t * step, g)
        log_p_new = jnp.where(ok, log_p + t * dlog_p, log_p)
        grad_new = grad_of(g_new, log_p_new)
        return g_new, log_p_new, grad_new, it + 1, ~ok

    g, log_p, grad, it, _ = lax.while_loop(cond, body, (g0, log_p0, grad0, 0, False))
    return log_p, g, it, jnp.linalg.norm(grad)
