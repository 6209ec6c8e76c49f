"""The four parametrizations against the classic network (MATH.md, "The four parametrizations").

References are independent NumPy evaluations of the classic network
h(x) = Σ_i α_i max(0, w_iᵀx) and of L(W, α).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfjko import objective as obj
from mfjko import parametrizations as P
from support import examples

NAMES = ["neuron", "signed", "pm", "sphere"]


def _numpy_classic(W, alpha, X):
    return np.maximum(X @ W.T, 0.0) @ alpha


def _particle_outputs(name, W, alpha, X):
    """(f_μ, classic outputs of to_classic(θ)) in one jitted call per shape."""
    return _particle_outputs_jit(P.get(name), jnp.asarray(W), jnp.asarray(alpha), jnp.asarray(X))


@partial(jax.jit, static_argnums=0)
def _particle_outputs_jit(param, W, alpha, X):
    m = W.shape[0]
    theta = param.project(param.from_classic(W, alpha))
    f = obj.predict(param, theta, jnp.full(m, 1.0 / m), X)
    W2, a2 = param.to_classic(theta)
    return theta, f, obj.classic_predict(W2, a2, X)


@partial(jax.jit, static_argnums=0)
def _losses_jit(lam, W, alpha, X, y):
    param = P.get("neuron")
    m, n = W.shape[0], X.shape[0]
    F = obj.particle_objective(param, param.from_classic(W, alpha), X, y, lam)
    via = obj.classic_data_loss(W, alpha / m, X, y) / (2 * n) + lam * obj.classic_reg(W, alpha) / (
        2 * m)
    return F, via, obj.classic_loss(W, alpha, X, y, lam)


def _instance(seed, m, n, d):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, d)), rng.standard_normal(m), rng.standard_normal((n, d)), \
        rng.standard_normal(n)


@settings(max_examples=examples(25), deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 4),
    n=st.integers(1, 4),
    d=st.integers(1, 3),
    name=st.sampled_from(NAMES),
)
def test_outputs_match_classic_network(seed, m, n, d, name):
    """f_μ of the mapped particles equals h/m of the classic network, and to_classic maps
    back to a classic network with the same outputs."""
    param = P.get(name)
    W, alpha, X, _ = _instance(seed, m, n, d)
    theta, f, h_back = _particle_outputs(name, W, alpha, X)
    assert theta.shape == (m, param.dim(d))
    h = _numpy_classic(W, alpha, X)
    np.testing.assert_allclose(np.asarray(f), h / m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(h_back), h, rtol=1e-12, atol=1e-12)


@settings(max_examples=examples(20), deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 4), n=st.integers(1, 4),
       d=st.integers(1, 3), lam=st.sampled_from([0.0, 0.01, 0.5, 2.0]))
def test_objective_equals_scaled_classic_loss(seed, m, n, d, lam):
    """F(μ_m(W, α)) = (1/(2n)) Σ_j (h(x_j)/m − y_j)² + (λ/(2m)) Σ_i (‖w_i‖² + α_i²) under
    `neuron` (objective.py docstring), i.e. data_loss(W, α/m)/(2n) + λ reg/(2m)."""
    W, alpha, X, y = _instance(seed, m, n, d)
    F, via_classic, L = (float(v) for v in _losses_jit(lam, *map(jnp.asarray, (W, alpha, X, y))))
    h = _numpy_classic(W, alpha, X)
    ref = np.sum((h / m - y) ** 2) / (2 * n) + lam * (np.sum(W**2) + np.sum(alpha**2)) / (2 * m)
    np.testing.assert_allclose(F, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(F, via_classic, rtol=1e-12, atol=1e-14)
    # The seed's L itself, against NumPy.
    np.testing.assert_allclose(L, np.sum((h - y) ** 2) + lam * (np.sum(W**2) + np.sum(alpha**2)),
                               rtol=1e-12)


@pytest.mark.parametrize("name", ["pm", "sphere"])
def test_potential_is_weight_decay_exactly_on_balanced_neurons(name):
    param = P.get(name)
    # one program for both calls (eagerly, each operation compiles on its own)
    potentials = jax.jit(lambda W, a: param.potentials(param.from_classic(W, a)))
    rng = np.random.default_rng(1)
    W = rng.standard_normal((50, 3))
    sign = np.where(rng.random(50) < 0.5, -1.0, 1.0)
    alpha_bal = sign * np.linalg.norm(W, axis=1)
    V = np.asarray(potentials(jnp.asarray(W), jnp.asarray(alpha_bal)))
    np.testing.assert_allclose(V, np.sum(W**2, 1) + alpha_bal**2, rtol=1e-13)
    # Unbalanced: V = 2|α|‖w‖ < ‖w‖² + α² (AM–GM, strict when ‖w‖ ≠ |α|).
    alpha = 2.0 * alpha_bal + 0.3 * sign
    V_unb = np.asarray(potentials(jnp.asarray(W), jnp.asarray(alpha)))
    np.testing.assert_allclose(V_unb, 2 * np.abs(alpha) * np.linalg.norm(W, axis=1), rtol=1e-13)
    assert np.all(V_unb < np.sum(W**2, 1) + alpha**2 - 1e-6)


def test_potentials_closed_forms():
    th = jnp.array([[3.0, 4.0, -2.0]])
    assert float(P.get("neuron").potentials(th)[0]) == pytest.approx(29.0, rel=1e-15)
    assert float(P.get("signed").potentials(th)[0]) == pytest.approx(2 * 25 + 4, rel=1e-15)
    assert float(P.get("sphere").potentials(P.get("sphere").project(th))[0]) == 4.0
    pm = jnp.array([[3.0, 4.0, 0.0, 1.0]])
    assert float(P.get("pm").potentials(pm)[0]) == pytest.approx(2 * (5 + 1), rel=1e-15)
    with pytest.raises(ValueError, match="unknown parametrization"):
        P.get("polar")


def _balanced_inverse(name):
    """Map a particle back to the BALANCED classic neuron (w, α) (‖w‖ = |α|) with the same
    output; differentiable away from zero."""
    if name == "sphere":
        def inv(th):
            s, b = th[:-1], th[-1]
            r = jnp.sqrt(jnp.abs(b))
            return jnp.concatenate([r * s, jnp.sign(b)[None] * r[None]])
    else:  # pm with one of u, v zero
        def inv(th):
            u, v = jnp.split(th, 2)
            nu, nv = jnp.linalg.norm(u), jnp.linalg.norm(v)
            pos = nu > 0
            z = jnp.where(pos, u, v)
            nz = jnp.where(pos, nu, nv)
            a = jnp.sqrt(nz)
            return jnp.concatenate([z / a, jnp.where(pos, a, -a)[None]])
    return inv


@partial(jax.jit, static_argnums=0)
def _velocities_jit(name, theta_n, theta_o, X, y, lam):
    neuron, other = P.get("neuron"), P.get(name)
    w_unif = jnp.full(theta_n.shape[0], 1.0 / theta_n.shape[0])
    inv = _balanced_inverse(name)
    v_n = obj.velocity(neuron, theta_n, w_unif, X, y, lam)
    v_o = obj.velocity(other, theta_o, w_unif, X, y, lam)
    v_mapped = jax.vmap(lambda th, v: jax.jvp(inv, (th,), (v,))[1])(theta_o, v_o)
    df_o = jax.jvp(lambda th: obj.predict(other, th, w_unif, X), (theta_o,), (v_o,))[1]
    df_mapped = jax.jvp(lambda th: obj.predict(neuron, th, w_unif, X), (theta_n,), (v_mapped,))[1]
    return jax.vmap(inv)(theta_o), v_n, v_mapped, df_o, df_mapped


@pytest.mark.parametrize("name", ["pm", "sphere"])
def test_gradients_differ_from_classic_gd(name):
    """Seed: "Gradient are not equal to discrete". From the same balanced classic neurons,
    the velocity of `name` mapped back to (w, α) (by the derivative of the balanced inverse
    map) differs from the `neuron` velocity on (w, α). Recorded: relative difference."""
    rng = np.random.default_rng(7)
    m, n, d, lam = 12, 15, 3, 0.1
    W = rng.standard_normal((m, d))
    alpha = np.where(rng.random(m) < 0.5, -1.0, 1.0) * np.linalg.norm(W, axis=1)
    X, y = jnp.asarray(rng.standard_normal((n, d))), jnp.asarray(rng.standard_normal(n))
    W, alpha = jnp.asarray(W), jnp.asarray(alpha)
    neuron, other = P.get("neuron"), P.get(name)
    theta_n = neuron.from_classic(W, alpha)
    theta_o = other.project(other.from_classic(W, alpha))
    (back, v_n, v_mapped, df_o, df_mapped) = _velocities_jit(name, theta_n, theta_o, X, y, lam)
    # the inverse really returns the original balanced neurons
    np.testing.assert_allclose(np.asarray(back), np.asarray(theta_n), rtol=1e-12)
    # Sanity: the mapped velocity gives the same df/dt as the `name` velocity does.
    np.testing.assert_allclose(np.asarray(df_o), np.asarray(df_mapped), rtol=1e-10, atol=1e-12)
    rel = float(jnp.linalg.norm(v_mapped - v_n) / jnp.linalg.norm(v_n))
    print(f"\n[{name}] relative difference of (w, α) velocities vs GD's: {rel:.4f}")
    assert rel > 1e-2
