"""The mean-field objective and its first variation against independent references:
NumPy loops (closed forms), JAX autodiff of G, and central finite differences."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjko import objective as obj
from mfjko import parametrizations as P

NAMES = ["neuron", "signed", "pm", "sphere"]


def _numpy_output(name, th, X):
    """m(θ; x_j) written out per parametrization (independent of the package)."""
    relu = lambda z: np.maximum(z, 0.0)
    if name in ("neuron", "signed", "sphere"):
        return th[-1] * relu(X @ th[:-1])
    u, v = np.split(th, 2)
    return relu(X @ u) - relu(X @ v)


def _numpy_potential(name, th):
    if name == "neuron":
        return np.sum(th**2)
    if name == "signed":
        return abs(th[-1]) * np.sum(th[:-1] ** 2) + th[-1] ** 2
    if name == "sphere":
        return 2 * abs(th[-1])
    u, v = np.split(th, 2)
    return 2 * (np.linalg.norm(u) + np.linalg.norm(v))


def _instance(name, seed=0, K=7, n=9, d=3):
    """A random measure away from ReLU kinks and from zero norms (min |pre-activation|
    is checked, so finite differences with step 1e-6 stay on one smooth piece)."""
    param = P.get(name)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    thetas = np.asarray(param.project(jnp.asarray(rng.standard_normal((K, param.dim(d))))))
    weights = rng.random(K)
    weights /= weights.sum()
    at = np.asarray(param.project(jnp.asarray(rng.standard_normal((4, param.dim(d))))))
    return param, X, y, thetas, weights, at


def _min_preactivation(name, pts, X):
    if name == "pm":
        pre = np.concatenate([X @ pts[:, : X.shape[1]].T, X @ pts[:, X.shape[1]:].T], axis=1)
    else:
        pre = X @ pts[:, :-1].T
    return np.abs(pre).min()


# The package's functions run under one jit per test: eagerly, each of their operations
# compiles a program of its own (most of these tests' time); the values are the same.


@partial(jax.jit, static_argnums=0)
def _formulas(param, thetas, weights, X, y, lam, at):
    return (obj.predict(param, thetas, weights, X),
            obj.objective(param, thetas, weights, X, y, lam),
            obj.first_variation(param, thetas, weights, X, y, lam, at))


@pytest.mark.parametrize("name", NAMES)
def test_predict_objective_first_variation_against_numpy(name):
    param, X, y, thetas, weights, at = _instance(name)
    lam = 0.3
    f_ref = sum(weights[k] * _numpy_output(name, thetas[k], X) for k in range(len(weights)))
    V = np.array([_numpy_potential(name, t) for t in thetas])
    F_ref = np.mean((f_ref - y) ** 2) / 2 + lam / 2 * weights @ V
    f, F, Fp = _formulas(param, thetas, weights, X, y, lam, at)
    np.testing.assert_allclose(np.asarray(f), f_ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(float(F), F_ref, rtol=1e-13)
    r = f_ref - y
    Fp_ref = np.array([np.mean(r * _numpy_output(name, a, X)) + lam / 2 *
                       _numpy_potential(name, a) for a in at])
    np.testing.assert_allclose(np.asarray(Fp), Fp_ref, rtol=1e-12, atol=1e-14)


@partial(jax.jit, static_argnums=0)
def _grads(param, thetas, X, y, lam):
    m = thetas.shape[0]
    w = jnp.full(m, 1.0 / m)
    g_fv = obj.first_variation_grad(param, thetas, w, X, y, lam)
    g_G = jax.grad(obj.particle_objective, argnums=1)(param, thetas, X, y, lam)
    return g_fv, m * g_G


@pytest.mark.parametrize("name", NAMES)
def test_first_variation_grad_is_m_times_autodiff_of_G(name):
    """∇F'(μ_m)(θ_i) = m ∇_{θ_i} G (MATH.md): compared with jax.grad of G as a function
    of all particles (a different computation: through f_μ's dependence on every θ)."""
    param, X, y, thetas, _, _ = _instance(name, seed=1)
    assert _min_preactivation(name, thetas, X) > 1e-3
    g_fv, g_G = _grads(param, jnp.asarray(thetas), jnp.asarray(X), jnp.asarray(y), 0.2)
    np.testing.assert_allclose(np.asarray(g_fv), np.asarray(g_G), rtol=1e-12, atol=1e-13)
    assert float(jnp.abs(g_fv).max()) > 1e-2  # not trivially zero


@partial(jax.jit, static_argnums=0)
def _fv_and_grad(param, thetas, weights, X, y, lam, at):
    """(F'(μ)(θ), ∇_θ F'(μ)(θ)) at the points ``at``; also the velocity at the support."""
    return (obj.first_variation(param, thetas, weights, X, y, lam, at),
            obj.first_variation_grad(param, thetas, weights, X, y, lam, at=at),
            obj.velocity(param, thetas, weights, X, y, lam))


@pytest.mark.parametrize("name", NAMES)
def test_first_variation_grad_matches_central_differences(name):
    """∇_θ F'(μ)(θ) at off-support points θ, μ fixed, vs central differences of F'(μ)(·)."""
    param, X, y, thetas, weights, at = _instance(name, seed=2)
    lam, eps = 0.4, 1e-6
    assert _min_preactivation(name, at, X) > 1e-3
    g = np.asarray(_fv_and_grad(param, thetas, weights, X, y, lam, at)[1])
    Fp = lambda pts: np.asarray(_fv_and_grad(param, thetas, weights, X, y, lam, pts)[0])
    fd = np.zeros_like(at)
    for c in range(at.shape[1]):
        e = np.zeros(at.shape[1])
        e[c] = eps
        # perturb the ambient coordinates (no projection): the gradient is ambient
        fd[:, c] = (Fp(at + e) - Fp(at - e)) / (2 * eps)
    err = np.abs(g - fd).max() / np.abs(fd).max()
    assert err < 1e-7, err


def test_velocity_is_tangent_on_sphere():
    param, X, y, thetas, weights, _ = _instance("sphere", seed=3)
    # ∇F' at the support itself (at = θ) and the velocity there
    _, g, v = (np.asarray(a) for a in _fv_and_grad(param, thetas, weights, X, y, 0.1, thetas))
    np.testing.assert_allclose(np.sum(v[:, :-1] * thetas[:, :-1], axis=1), 0.0, atol=1e-14)
    # the β component is untouched, the s component loses exactly its radial part
    np.testing.assert_allclose(v[:, -1], -g[:, -1], rtol=1e-14)
    radial = np.sum(g[:, :-1] * thetas[:, :-1], axis=1, keepdims=True) * thetas[:, :-1]
    np.testing.assert_allclose(v[:, :-1], -(g[:, :-1] - radial), atol=1e-14)


def test_relu_derivative_at_zero_is_zero():
    """σ'(0) = 0 (Boursier et al.): a neuron exactly on a data point's kink gets no data
    gradient through it, and the norm's gradient at 0 is 0, not NaN."""
    param = P.get("neuron")
    X = jnp.array([[1.0, 1.0]])
    theta = jnp.array([[1.0, -1.0, 2.0]])  # w·x = 0
    grad = jax.jit(obj.first_variation_grad, static_argnums=0)
    g = grad(param, theta, jnp.ones(1), X, jnp.array([1.0]), 0.0)
    np.testing.assert_array_equal(np.asarray(g), 0.0)
    pm = P.get("pm")
    g0 = jax.jit(jax.grad(pm.potential))(jnp.zeros(4))
    np.testing.assert_array_equal(np.asarray(g0), 0.0)
