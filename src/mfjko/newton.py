r"""Damped Newton on the n-dimensional dual of a KL-prox, with Armijo backtracking.

Both KL-proxes, the balanced one (:mod:`mfjko.jko.prox`) and the WFR one
(:mod:`mfjko.wfr.solver`), minimize a strictly convex H(g) = (n/2)‖g‖² + ⟨g, y⟩ + ψ(g)
with ψ(g) a separable function of Φᵀg, read through a state s(g) of the N points (log p,
resp. log u); only ψ differs (a :class:`DualPenalty`). Newton's Hessian is ⪰ nI (Cholesky);
the step is halved until H decreases by the Armijo fraction (a trial point where H is not
finite is rejected), so the iteration converges globally and quadratically near the root.
Pure and jittable; a leaf module (JAX only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_solve

Array = jax.Array

__all__ = ["DualPenalty", "damped_newton"]

_ARMIJO = 1e-4
_MAX_HALVINGS = 60


class DualPenalty(NamedTuple):
    """The ψ part of H(g) = (n/2)‖g‖² + ⟨g, y⟩ + ψ(g), through the state s = s(g).

    value: ``s -> ψ`` (+inf outside ψ's domain).
    mass: ``s -> ν`` (N,) with ∇ψ = −Φν, so that ∇H = ng + y − Φν.
    hessian: ``s -> ∇²ψ`` (n, n).
    line: ``(g, s, step) -> (t -> s(g − t·step))``, the state along a Newton step.
    """

    value: Callable
    mass: Callable
    hessian: Callable
    line: Callable


def damped_newton(psi: DualPenalty, phi, y, g0, s0, tol, max_iter):
    r"""Minimize H(g) = (n/2)‖g‖² + ⟨g, y⟩ + ψ(g) from g0 by damped Newton.

    Args:
      psi: the :class:`DualPenalty` ψ.
      phi: (n, N) features Φ.
      y: (n,) targets.
      g0: (n,) start (ψ finite there).
      s0: the state s(g0).
      tol: stop when ‖∇H(g)‖₂ ≤ tol · max(1, ‖y‖₂) (or when the line search fails).
      max_iter: Newton iteration cap.

    Returns:
      (g (n,), s(g), iterations, final ‖∇H‖₂).
    """
    n = phi.shape[0]
    scaled_tol = tol * jnp.maximum(1.0, jnp.linalg.norm(y))
    eye = jnp.eye(n, dtype=s0.dtype)

    def H(g, s):
        return 0.5 * n * jnp.dot(g, g) + jnp.dot(g, y) + psi.value(s)

    def grad_of(g, s):
        return n * g + y - phi @ psi.mass(s)

    def cond(c):
        _, _, grad, it, stalled = c
        return (it < max_iter) & (jnp.linalg.norm(grad) > scaled_tol) & ~stalled

    def body(c):
        g, s, grad, it, _ = c
        # SPD (⪰ nI): Cholesky, cheaper to run and to compile than a pivoted LU
        step = cho_solve((jnp.linalg.cholesky(n * eye + psi.hessian(s)), True), grad)
        along = psi.line(g, s, step)
        h0 = H(g, s)
        slope = jnp.dot(grad, step)
        # Near the root t·slope ~ ‖∇H‖² drops below the rounding of H; the slack lets the
        # (then quadratically convergent) full Newton step through.
        slack = 1e-13 * (jnp.abs(h0) + 1.0)

        def ls_cond(ls):
            _, k, ok, _ = ls
            return ~ok & (k < _MAX_HALVINGS)

        def ls_body(ls):
            t, k, _, _ = ls
            t = jnp.where(k == 0, t, 0.5 * t)
            s_t = along(t)
            h1 = H(g - t * step, s_t)
            ok = jnp.isfinite(h1) & (h1 <= h0 - _ARMIJO * t * slope + slack)
            return t, k + 1, ok, s_t

        t, _, ok, s_t = lax.while_loop(ls_cond, ls_body, (jnp.asarray(1.0, g.dtype), 0, False, s))
        g_new = jnp.where(ok, g - t * step, g)
        s_new = jnp.where(ok, s_t, s)
        return g_new, s_new, grad_of(g_new, s_new), it + 1, ~ok

    g, s, grad, it, _ = lax.while_loop(cond, body, (g0, s0, grad_of(g0, s0), 0, False))
    return g, s, it, jnp.linalg.norm(grad)
