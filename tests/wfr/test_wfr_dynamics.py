r"""WFR dynamics: conic particles = GD on balanced neurons, and WFR-JKO → the conic flow → GD.

- The projection (w, α) ↦ (s, β) = (w/‖w‖, α‖w‖) maps GD's velocity field on balanced
  neurons onto the conic field (ds/dt = −∇_S G', dβ/dt = −2βG') exactly (chain rule,
  JVP) and GD's gradient flow onto the conic flow (two tight ODE solves, ≤ 1e-10).
- Explicit conic GD and GD on (w, α) differ by O(h) (measured slope 1).
- The WFR grid measure read as a ``neuron`` / ``sphere`` measure has F = G.
- τ → 0 with ε = τ² (so D = ε/(4τ) = τ/4 → 0): WFR-JKO's F(T) and sign-component masses
  converge to GD's on balanced neurons (F: rate 1 measured), on one N = 512 grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjko  # noqa: F401
from mfjko import data, initial, particles
from mfjko import objective as O
from mfjko import parametrizations as P
from mfjko.grid_runs import run_wfr_jko
from mfjko.particles import conic_gradient_descent
from mfjko.wfr import (
    as_neuron_measure,
    balanced_to_conic,
    bin_particles,
    circle_directions,
    conic_flow,
    conic_objective,
    conic_to_balanced,
    conic_velocity,
    direction_features,
    lifted_objective,
    sphere_directions,
    wfr_kernel,
)

LAM = 0.01


@pytest.fixture(scope="module")
def reg():
    ds = data.regression_1d(n_train=20, seed=0)
    return np.asarray(ds.X), np.asarray(ds.y)


def balanced(m, d, seed, scale=0.5):
    W, a = initial.BalancedLaw(scale).sample_classic(jax.random.PRNGKey(seed), m, d)
    return jnp.concatenate([W, a[:, None]], axis=1)


def project(theta_n):
    return balanced_to_conic(theta_n[:, :-1], theta_n[:, -1])


def sign_masses(theta_n):
    """GD's (1/m) Σ_{α ≷ 0} |α|‖w‖ for classic neurons θ = (w, α) (m, d + 1)."""
    theta_n = np.asarray(theta_n)
    w, a = theta_n[:, :-1], theta_n[:, -1]
    r = np.abs(a) * np.linalg.norm(w, axis=1) / len(a)
    return np.array([r[a > 0].sum(), r[a < 0].sum()])


@jax.jit
def _velocities(th, X, y):
    """(d/dt proj(θ) along GD's field, conic field at proj(θ))."""
    v_gd = particles.particle_velocity(P.get("neuron"), th, X, y, LAM)
    return jax.jvp(project, (th,), (v_gd,))[1], conic_velocity(project(th), X, y, LAM)


def test_maps_and_velocity_identity(reg):
    """d/dt proj(θ(t)) along GD's field = the conic field at proj(θ), to rounding (S¹ and
    S³ data); for unbalanced neurons it is not (the identity needs ‖w‖ = |α|)."""
    X, y = reg
    Xt = np.random.default_rng(0).normal(size=(15, 4))
    yt = np.sin(Xt[:, 0])
    for X_, y_, d in ((X, y, 2), (Xt, yt, 4)):
        th = balanced(40, d, seed=d)
        W, a = conic_to_balanced(project(th))
        assert np.abs(np.c_[W, a] - th).max() < 1e-15
        jv, vc = _velocities(th, X_, y_)
        assert np.abs(jv - vc).max() < 1e-14 * max(1.0, float(np.abs(vc).max()))
        assert float(np.abs(vc).max()) > 1e-2
    W, a = initial.GaussianLaw(0.5).sample_classic(jax.random.PRNGKey(1), 40, 2)
    jv, vc = _velocities(jnp.concatenate([W, a[:, None]], axis=1), X, y)
    assert np.abs(jv - vc).max() > 1e-3


def test_conic_flow_equals_gd_flow_on_balanced_neurons(reg):
    """Two independent tight ODE solves (diffrax, rtol = atol = 1e-14), 8 balanced neurons,
    t ∈ [0, 1]: proj(GD flow) = conic flow to 1e-10 (measured 4e-12); F and the masses of
    each sign, Σ|α|‖w‖/m, agree."""
    X, y = reg
    th = balanced(8, 2, seed=0)
    gf = particles.gradient_flow("neuron", th, X, y, LAM, 1.0, n_records=3, rtol=1e-14,
                                 atol=1e-14)
    cf = conic_flow(project(th), X, y, LAM, 1.0, n_records=3, rtol=1e-14, atol=1e-14)
    for k in range(3):
        pk = np.asarray(project(jnp.asarray(gf.support[k])))
        assert np.abs(pk - cf.support[k]).max() < 1e-10
        beta = cf.support[k][:, -1]
        m_conic = np.array([beta[beta > 0].sum(), -beta[beta < 0].sum()]) / len(beta)
        assert np.abs(m_conic - sign_masses(gf.support[k])).max() < 1e-10
    assert np.abs(gf.diagnostics["objective"] - cf.diagnostics["objective"]).max() < 1e-11
    assert abs(cf.diagnostics["objective"][-1] - cf.diagnostics["objective"][0]) > 1e-3


def test_conic_gd_and_gd_differ_by_order_h(reg):
    """Explicit Euler in (s, β) and in (w, α) are two first-order schemes of one flow:
    their gap at t = 1 halves with h (slope 1.00 measured: 3.79e-3, 1.90e-3, 9.5e-4). Six
    neurons on tests/methods/test_particles.py's data: its compiled GD program."""
    X, y = reg
    th = balanced(6, 2, seed=0)
    gaps = []
    for h in (0.02, 0.01, 0.005):
        g = particles.gradient_descent("neuron", th, X, y, LAM, h, 1.0, record_every=10_000)
        c = conic_gradient_descent(project(th), X, y, LAM, h, 1.0, record_every=10_000)
        gaps.append(np.abs(np.asarray(project(jnp.asarray(g.support[-1]))) - c.support[-1]).max())
        assert c.diagnostics["objective"][-1] == pytest.approx(
            float(conic_objective(jnp.asarray(c.support[-1]), X, y, LAM)), rel=1e-14)
    slopes = np.log2(np.array(gaps[:-1]) / np.array(gaps[1:]))
    assert np.all((slopes > 0.9) & (slopes < 1.1)), slopes
    with pytest.raises(ValueError, match="reduce h"):
        conic_gradient_descent(project(th) * jnp.array([1.0, 1.0, 1e4]), X, y, LAM, 0.5, 0.5)
    with pytest.raises(ValueError, match="unit vectors"):
        conic_gradient_descent(2.0 * project(th), X, y, LAM, 0.1, 0.1)


_objective = jax.jit(O.objective, static_argnums=0)


def test_grid_measure_is_a_neuron_and_sphere_measure(reg):
    """F of Σ ν^±_k δ_{(s_k, ±1)} under ``neuron`` and ``sphere`` = the lifted G (V = 2 per
    unit mass); binning balanced particles keeps each sign's mass Σ|α|‖w‖/m."""
    X, y = reg
    rng = np.random.default_rng(0)
    for S, X_ in ((circle_directions(37), X), (sphere_directions(3, 50), None)):
        if X_ is None:
            X_ = np.c_[rng.normal(size=(len(y), 2)), np.ones(len(y))]
        nu = rng.random((2, len(S)))
        pts, w = as_neuron_measure(S, nu)
        G = lifted_objective(nu, direction_features(S, X_), y, LAM)
        for name in ("neuron", "sphere"):
            F = float(_objective(P.get(name), jnp.asarray(pts), jnp.asarray(w), X_, y, LAM))
            assert F == pytest.approx(G, rel=1e-13)
    th = balanced(500, 2, seed=3)
    q = bin_particles(circle_directions(64), np.asarray(project(th)))
    assert np.abs(q.sum(axis=1) - sign_masses(th)).max() < 1e-15


@pytest.fixture(scope="module")
def convergence_runs(reg):
    """WFR-JKO on N = 512 directions of S¹ from uniform masses s²/2 per sign (s = 0.5; the
    lift of an isotropic law), τ ∈ {0.2, 0.1, 0.05}, ε = τ², ρ' = ρ − ε, T = 1; reference:
    GD on the balanced neurons at the grid points (w = √r s, α = ±√r), h = 2e-3 and 1e-3,
    Richardson-extrapolated (its own error ~1e-6 relative)."""
    X, y = reg
    N, T = 512, 1.0
    S = circle_directions(N)
    q = np.full((2, N), 0.5**2 / 2 / N)
    beta = 2 * N * np.concatenate([q[0], -q[1]])
    W, a = conic_to_balanced(np.c_[np.concatenate([S, S]), beta])
    th = np.c_[W, a]
    refs = {}
    for h in (0.002, 0.001):
        g = particles.gradient_descent("neuron", th, X, y, LAM, h, T, record_every=10_000)
        refs[h] = (g.diagnostics["objective"][-1], sign_masses(g.support[-1]))
    F_ref = 2 * refs[0.001][0] - refs[0.002][0]
    M_ref = 2 * refs[0.001][1] - refs[0.002][1]
    runs = {}
    for tau in (0.2, 0.1, 0.05):
        runs[tau] = run_wfr_jko(S, q, X, y, LAM, tau, tau**2, T, rho_old=2.0 - tau**2,
                                record_every=2)
    return S, q, F_ref, M_ref, runs


def test_wfr_jko_converges_to_gd_on_balanced_neurons(reg, convergence_runs):
    """|F_JKO(1) − F_GD(1)|/F_GD: 1.04e-2, 4.9e-3, 2.4e-3 (rate 1.08, 1.05), dominated by
    the entropic diffusion D = τ/4; sign masses |ν_±| vs Σ|α|‖w‖/m: gaps ≤ 4.7e-3, 2.7e-3,
    1.5e-3, decreasing."""
    S, q, F_ref, M_ref, runs = convergence_runs
    phi = direction_features(S, reg[0])
    gF, gM = [], []
    for tr in runs.values():
        assert np.all(tr.diagnostics["converged"][1:] == 1.0)
        assert tr.support.shape == (2 * len(S), 3) and tr.weights.shape[1] == 2 * len(S)
        assert tr.t[-1] == pytest.approx(1.0)
        G = lifted_objective(tr.weights[-1].reshape(2, -1), phi, reg[1], LAM)
        assert tr.diagnostics["objective"][-1] == pytest.approx(G, rel=1e-13)
        gF.append(abs(tr.diagnostics["objective"][-1] - F_ref) / F_ref)
        M = np.array([tr.diagnostics["mass_plus"][-1], tr.diagnostics["mass_minus"][-1]])
        gM.append(np.abs(M - M_ref) / M_ref)
    gF, gM = np.array(gF), np.array(gM)
    rates = np.log2(gF[:-1] / gF[1:])
    assert np.all((rates > 0.85) & (rates < 1.3)), (gF, rates)
    assert gF[-1] < 3e-3
    assert np.all(np.diff(gM, axis=0) < 0) and gM[-1].max() < 2e-3, gM
    # the masses really changed (reaction at work), by much more than the gaps
    assert np.abs(M_ref - q.sum(axis=1)).min() / q.sum(axis=1).max() > 0.05


def test_run_resumes_identically_and_validates(reg, convergence_runs):
    S, q, _, _, runs = convergence_runs
    X, y = reg
    full = runs[0.2]
    eps = 0.2**2  # exactly the fixture's ε
    k = wfr_kernel(S, eps, 2.0)
    a = run_wfr_jko(S, q, X, y, LAM, 0.2, eps, 0.4, rho_old=2.0 - eps, kernel=k)
    b = run_wfr_jko(S, a.weights[-1].reshape(2, -1), X, y, LAM, 0.2, eps, 0.6,
                    rho_old=2.0 - eps, kernel=k, state=a.meta["state"], t0=0.4)
    assert np.array_equal(b.weights[-1], full.weights[-1])
    assert b.t[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="multiple"):
        run_wfr_jko(S, q, X, y, LAM, 0.3, eps, 1.0)
    with pytest.raises(ValueError, match="another"):
        run_wfr_jko(S, q, X, y, LAM, 0.2, 0.05, 0.2, kernel=k)
    with pytest.raises(ValueError, match="param"):
        run_wfr_jko(S, q, X, y, LAM, 0.2, eps, 0.2, kernel=k, param="pm")
