"""The damped Newton of both KL-proxes (mfjko.newton) against a closed form.

On H(g) = (n/2)‖g‖² + ⟨g, y⟩ + ψ(g) with a quadratic ψ(g) = ½ Σ_k w_k (Φᵀg)_k², H is
quadratic: Newton lands on the linear solve (nI + Φ diag(w) Φᵀ)g = −y in one step. (The
two production penalties are checked through their proxes: tests/jko, tests/wfr.)
"""

import jax.numpy as jnp
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko.newton import DualPenalty, damped_newton


def test_damped_newton_on_a_quadratic_penalty_is_the_linear_solve():
    # ψ(g) = ½ Σ_k w_k (Φᵀg)_k² with state s = Φᵀg: ∇ψ = Φ(w s) = −Φν with ν = −w s
    rng = np.random.default_rng(1)
    n, N = 4, 9
    phi, y, w = rng.normal(size=(n, N)), rng.normal(size=n), rng.random(N) + 0.1
    phi_j, w_j = jnp.asarray(phi), jnp.asarray(w)
    psi = DualPenalty(
        value=lambda s: 0.5 * jnp.sum(w_j * s * s),
        mass=lambda s: -w_j * s,
        hessian=lambda s: (phi_j * w_j) @ phi_j.T,
        line=lambda g, s, step: lambda t: (g - t * step) @ phi_j,
    )
    g0 = jnp.asarray(rng.normal(size=n))
    g, s, it, gnorm = damped_newton(psi, phi_j, jnp.asarray(y), g0, g0 @ phi_j, 1e-13, 50)
    exact = np.linalg.solve(n * np.eye(n) + (phi * w) @ phi.T, -y)
    np.testing.assert_allclose(np.asarray(g), exact, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(s), exact @ phi, rtol=1e-12, atol=1e-13)
    assert int(it) <= 2 and float(gnorm) <= 1e-12
