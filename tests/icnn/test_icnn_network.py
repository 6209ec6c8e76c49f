"""The ICNN potential: closed-form ∇ψ, ∇²ψ and Hessian-vector products against JAX
autodiff of the definition ψ(θ); convexity by construction (random nonnegative-weight
networks, Hessians ⪰ δI); ∇ψ = identity at init up to init_scale; the log-det estimators
(Lanczos quadrature and solves exact at k = D, Hutchinson mean and the gradient surrogate
against the exact log-det and its autodiff gradient)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjko  # noqa: F401  (float64)
from mfjko.icnn.network import init_icnn, inverse_softplus
from mfjko.icnn.step import lanczos_logdet_solve, logdet_exact, logdet_lanczos


def _random_icnn(key, dim, hidden, scale=1.0, sharpness=3.0):
    """A generic ICNN: random raw weights (not the near-identity init)."""
    psi = init_icnn(jax.random.PRNGKey(key), dim, hidden, init_scale=1.0, sharpness=sharpness)
    return _perturb(psi, key + 100, scale)


def _perturb(psi, seed, scale):
    """Every raw weight plus scale·N(0, 1), drawn by NumPy (jax.random would compile a
    program for this pytree)."""
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree_util.tree_flatten(psi)
    leaves = [jnp.asarray(np.asarray(x) + scale * rng.standard_normal(x.shape)) for x in leaves]
    return jax.tree_util.tree_unflatten(tree, leaves)


def _normal(seed, shape):
    """Standard normal points drawn by NumPy (no sampler to compile per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@eqx.filter_jit
def _forms(psi, th, V):
    """(closed-form ∇ψ, ∇²ψ, ∇²ψ·v; autodiff ∇ψ, ∇²ψ of the definition)."""
    return (psi.grad_batch(th), psi.hessian_batch(th), psi.hvp_batch(psi.cache(th), V),
            jax.vmap(jax.grad(psi))(th), jax.vmap(jax.hessian(psi))(th))


@pytest.mark.parametrize("hidden", [
    (5, 4),
    pytest.param((5, 6, 4), marks=pytest.mark.slow),
])
def test_closed_forms_equal_autodiff_of_the_definition(hidden):
    """Two hidden layers (the U recursion once) and, slow, three (twice); hidden = () is
    tested at init."""
    psi = _random_icnn(0, 4, hidden)
    th, V = _normal(1, (9, 4)), _normal(2, (9, 4))
    g_cf, H_cf, hv_cf, g, H = _forms(psi, th, V)
    np.testing.assert_allclose(g_cf, g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H_cf, H, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hv_cf, jnp.einsum("mde,me->md", H, V), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_random_icnns_are_delta_convex_and_monotone():
    """Any raw weights give ∇²ψ ⪰ δI (softplus-nonnegative U, a; convex nondecreasing
    activation) and a δ-strongly monotone map, on 400 random points of 3 networks."""
    maps = eqx.filter_jit(lambda psi, th: (psi.hessian_batch(th), psi.grad_batch(th)))
    for seed in range(3):
        psi = _random_icnn(10 + seed, 3, (8, 8), scale=2.0)
        th = 3.0 * jax.random.normal(jax.random.PRNGKey(seed), (400, 3))
        H, T = maps(psi, th)
        eig = np.linalg.eigvalsh(np.asarray(H))
        assert eig.min() >= psi.delta * (1 - 1e-9)
        da, dT = th[:200] - th[200:], T[:200] - T[200:]
        ratio = jnp.sum(da * dT, 1) / jnp.sum(da * da, 1)
        assert float(ratio.min()) >= psi.delta * (1 - 1e-9)


@pytest.mark.slow
def test_init_is_the_identity_map_up_to_init_scale():
    psi = init_icnn(jax.random.PRNGKey(0), 5, (16, 16), init_scale=1e-2)
    th = jax.random.normal(jax.random.PRNGKey(1), (300, 5))
    grad = eqx.filter_jit(lambda p, t: p.grad_batch(t))
    err = jnp.max(jnp.abs(grad(psi, th) - th))
    # ∇φ = Σ_l W_lᵀ(c_l ⊙ s'(p_l)) is O(init_scale·‖W‖); measured 2.8e-3
    assert float(err) < 1e-2
    assert float(inverse_softplus(0.3)) == pytest.approx(np.log(np.expm1(0.3)), rel=1e-14)
    pure = init_icnn(jax.random.PRNGKey(0), 5, ())
    np.testing.assert_allclose(grad(pure, th), th, rtol=1e-14, atol=1e-14)


def test_init_rejects_bad_arguments():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="dim"):
        init_icnn(key, 0)
    with pytest.raises(ValueError, match="hidden"):
        init_icnn(key, 3, (4, 0))
    with pytest.raises(ValueError, match="delta"):
        init_icnn(key, 3, delta=1.5)
    with pytest.raises(ValueError, match="> 0"):
        init_icnn(key, 3, init_scale=-1.0)
    with pytest.raises(ValueError, match="sharpness"):
        init_icnn(key, 3, sharpness=0.0)


@pytest.mark.slow
def test_lanczos_and_hutchinson_log_det_and_gradient():
    """Lanczos with k = D = 6: every probe's zᵀ log(H) z and H⁻¹z equal the dense ones
    (eigh, solve) to 1e-9. Hutchinson over 300 probes: the mean log det is within 4
    standard errors of the exact one, and the squared error of the mean surrogate gradient
    vᵀ∂(Hz) to the autodiff gradient of the exact mean log det is within 3 times its
    variance estimated from the per-probe gradients (an unbiased estimator gives ≈ 1)."""
    psi = _random_icnn(6, 6, (8,), scale=0.5)
    th = jax.random.normal(jax.random.PRNGKey(7), (8, 6))
    P = 300
    probes = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(8), 0.5, (P, 8, 6)), 1.0, -1.0)

    @eqx.filter_jit
    def values(psi):
        quad, solve = jax.vmap(lambda Z: lanczos_logdet_solve(
            lambda V: psi.hvp_batch(psi.cache(th), V), Z, 6))(probes)  # (P, m), (P, m, D)
        return (psi.hessian_batch(th), logdet_exact(psi, th), quad, solve,
                logdet_lanczos(psi, th, probes, 6)[0])

    H, exact, quad, solve, est = (np.asarray(x) for x in values(psi))
    w, U = np.linalg.eigh(H)
    logH = np.einsum("mij,mj,mkj->mik", U, np.log(w), U)
    Z = np.asarray(probes)
    np.testing.assert_allclose(quad, np.einsum("pmi,mij,pmj->pm", Z, logH, Z), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(solve, np.linalg.solve(H[None], Z[..., None])[..., 0],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(exact, np.linalg.slogdet(H)[1], rtol=1e-12)
    se = quad.std(0) / np.sqrt(P)  # standard error of the mean over probes
    assert np.all(np.abs(est - exact) <= 4 * se + 1e-12)  # measured ≤ 1.4 s.e.

    params, static = eqx.partition(psi, eqx.is_inexact_array)

    def exact_mean(p):
        return jnp.mean(logdet_exact(eqx.combine(p, static), th))

    def surrogate(p, Z):
        """mean_i vᵢᵀ(∇²ψ(θ_i) zᵢ) for one probe per sample, v = H⁻¹z frozen."""
        q = eqx.combine(p, static)
        _, solves = logdet_lanczos(jax.lax.stop_gradient(q), th, Z[None], 6)
        hz = q.hvp_batch(q.cache(th), Z)
        return jnp.mean(jnp.sum(jax.lax.stop_gradient(solves[0]) * hz, -1))

    def flat(tree):
        return jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(tree)])

    ge, per = jax.jit(lambda p: (flat(jax.grad(exact_mean)(p)), jax.vmap(
        lambda Z: flat(jax.grad(surrogate)(p, Z)))(probes)))(params)
    ge, per = np.asarray(ge), np.asarray(per)  # (n_params,), (P, n_params)
    gs = per.mean(0)
    noise = per.var(0, ddof=1).sum() / P  # E‖mean − truth‖² if unbiased
    ratio = np.sum((gs - ge) ** 2) / noise
    # unbiased: ratio ≈ 1 (measured 1.39); a bias of the size of the noise would double it
    assert ratio < 3.0
    assert np.sqrt(noise) / np.linalg.norm(ge) < 0.2  # the check has teeth (measured 0.12)
