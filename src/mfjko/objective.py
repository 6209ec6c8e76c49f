r"""The mean-field objective, its first variation and the seed's classic loss: the formulas.

A measure is a weighted point set μ = Σ_k p_k δ_{θ_k} (``thetas`` (K, D), ``weights``
(K,)); with Φ[j, k] = m(θ_k; x_j): f_μ = Φp, F(μ) = (1/(2n))‖Φp − y‖² + (λ/2) Σ_k p_k V(θ_k)
(:func:`loss_from_features`, the one place F is computed), F′(μ)(θ) = (1/n) Σ_j r_j m(θ; x_j)
+ (λ/2) V(θ) with r = f_μ(X) − y, and ∇_θF′ (σ′(0) = 0). The classic loss of the seed is
L(W, α) = Σ_j (h(x_j) − y_j)² + λ Σ_i (‖w_i‖² + α_i²), and F(μ_m(W, α)) =
data_loss(W, α/m)/(2n) + λ·reg(W, α)/(2m) (MATH.md, "Classic network").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mfjko.parametrizations import Parametrization, relu

Array = jax.Array

__all__ = [
    "fit_loss",
    "loss_from_features",
    "predict",
    "objective",
    "data_loss",
    "residual",
    "first_variation",
    "first_variation_grad",
    "velocity",
    "particle_objective",
    "classic_predict",
    "classic_data_loss",
    "classic_reg",
    "classic_loss",
]


def fit_loss(f: Array, y: Array) -> Array:
    """(1/(2n)) ‖f − y‖² for predictions f (n,) and targets y (n,): the data part of F."""
    r = f - y
    return 0.5 * jnp.mean(r * r)


def loss_from_features(phi: Array, weights: Array, y: Array, v: Array, lam) -> Array:
    """F = (1/(2n)) ‖Φp − y‖² + (λ/2) vᵀp: the one formula of F every method uses.

    Args:
      phi: (n, K) features Φ[j, k] = m(θ_k; x_j).
      weights: (K,) masses p.
      y: (n,) targets.
      v: (K,) potentials V(θ_k).
      lam: weight decay λ.

    Returns:
      The scalar F.
    """
    return fit_loss(phi @ weights, y) + 0.5 * lam * jnp.dot(weights, v)


def predict(param: Parametrization, thetas: Array, weights: Array, X: Array) -> Array:
    """f_μ(x_j) = Σ_k p_k m(θ_k; x_j), shape (n,)."""
    return param.features(thetas, X) @ weights


def residual(param, thetas, weights, X, y) -> Array:
    """R = f_μ(X) − y, shape (n,)."""
    return predict(param, thetas, weights, X) - y


def data_loss(param, thetas, weights, X, y) -> Array:
    """(1/(2n)) ‖f_μ(X) − y‖² (the data part of F; also the test loss on test data)."""
    return fit_loss(predict(param, thetas, weights, X), y)


def objective(param, thetas, weights, X, y, lam) -> Array:
    """F(μ) of MATH.md for μ = Σ_k p_k δ_{θ_k}."""
    return loss_from_features(param.features(thetas, X), weights, y, param.potentials(thetas),
                              lam)


def first_variation(param, thetas, weights, X, y, lam, at: Array) -> Array:
    """F'(μ)(θ) evaluated at the points ``at`` (L, D), shape (L,)."""
    r = residual(param, thetas, weights, X, y)
    n = X.shape[0]
    return param.features(at, X).T @ r / n + 0.5 * lam * param.potentials(at)


def _first_variation_given_residual(param, theta, r, X, lam):
    return jnp.dot(param.output(theta, X), r) / X.shape[0] + 0.5 * lam * param.potential(theta)


def first_variation_grad(param, thetas, weights, X, y, lam, at: Array | None = None) -> Array:
    """∇_θ F'(μ)(θ) (ambient gradient) at ``at`` (default: the support), shape (L, D)."""
    at = thetas if at is None else at
    r = residual(param, thetas, weights, X, y)
    g = jax.grad(_first_variation_given_residual, argnums=1)
    return jax.vmap(lambda th: g(param, th, r, X, lam))(at)


def velocity(param, thetas, weights, X, y, lam) -> Array:
    """Wasserstein-gradient-flow velocity −∇F'(μ)(θ_k) at each support point, shape (K, D).

    Projected on the tangent space of Θ (sphere).
    """
    return -param.tangent(thetas, first_variation_grad(param, thetas, weights, X, y, lam))


def particle_objective(param, thetas, X, y, lam) -> Array:
    """G(θ_1..θ_m) = F(μ_m) with μ_m uniform. ∇_{θ_i} G = (1/m) ∇F'(μ_m)(θ_i)."""
    m = thetas.shape[0]
    return objective(param, thetas, jnp.full((m,), 1.0 / m), X, y, lam)


def classic_predict(W: Array, alpha: Array, X: Array) -> Array:
    """h(x_j) = Σ_i α_i σ(w_iᵀx_j), shape (n,)."""
    return relu(X @ W.T) @ alpha


def classic_data_loss(W, alpha, X, y) -> Array:
    """Σ_j (h(x_j) − y_j)²."""
    r = classic_predict(W, alpha, X) - y
    return jnp.sum(r * r)


def classic_reg(W, alpha) -> Array:
    """Σ_i (‖w_i‖² + α_i²)."""
    return jnp.sum(W * W) + jnp.sum(alpha * alpha)


def classic_loss(W, alpha, X, y, lam) -> Array:
    """The seed's L(W, α) = Σ_j (h(x_j) − y_j)² + λ Σ_i (‖w_i‖² + α_i²)."""
    return classic_data_loss(W, alpha, X, y) + lam * classic_reg(W, alpha)
