r"""Entropic JKO against known dynamics: Ornstein–Uhlenbeck, separable vs dense kernels,
and the τ → 0 limit towards the Wasserstein gradient flow.

Ornstein–Uhlenbeck. With Φ = 0 and v = |θ|², F(p) = (λ/2)∫|θ|² dp is linear, the KL-prox
is explicit and one step is exact after one half-iteration: π(θ, θ') ∝
q(θ') exp(−(|θ − θ'|² + τλ|θ|²)/ε) normalized in θ for each θ'. So, with a = 1 + τλ,
θ_new | θ' ~ N(θ'/a, ε/(2a) I): one step maps mean m ↦ m/a and covariance
Σ ↦ Σ/a² + ε/(2a) I (exact, any q, up to grid and box truncation). As τ → 0 at fixed
D = ε/(4τ) this is the implicit Euler scheme of dθ = −λθ dt + √(2D) dB, whose law has
mean m₀e^{−λt} and covariance Σ₀e^{−2λt} + (D/λ)(1 − e^{−2λt}) I: the diffusion
coefficient of the entropy is D = ε/(4τ) (per-step variance ε/2 = 2Dτ), as MATH.md says.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfjko  # noqa: F401
from mfjko import grids
from mfjko import objective as O
from mfjko import parametrizations as P
from mfjko.grid_runs import run_jko
from mfjko.initial import GaussianLaw
from mfjko.jko import JKOSolverOptions, entropic_jko_step, jko_step


def moments(x, p):
    """Mean (D,) and covariance (D, D) of weights p on points x (N, D)."""
    m = x.T @ p
    xc = x - m
    return m, (xc * p[:, None]).T @ xc


def gaussian_weights(x, mean, cov):
    d = x - mean
    logp = -0.5 * np.einsum("ki,ij,kj->k", d, np.linalg.inv(cov), d)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def ou_step(geom_or_cost, x, q, lam, tau, eps, production=True):
    N = x.shape[0]
    phi, y, v = np.zeros((1, N)), np.zeros(1), (x**2).sum(1)
    if production:
        return np.asarray(jko_step(geom_or_cost, q, phi, y, v, lam, tau, eps)[0])
    return entropic_jko_step(geom_or_cost, q, phi, y, v, lam, tau, eps)


def test_ou_one_step_2d_matches_exact_gaussian_map():
    """Correlated Gaussian on a 2-D product grid: m ↦ m/a, Σ ↦ Σ/a² + ε/(2a) I."""
    geom = grids.cartesian_grid([(-3.0, 3.0)] * 2, [101, 101])  # h = 0.06
    x = np.asarray(geom.points)
    # ≥ 6.7 standard deviations from the box edges: truncation is below rounding
    q = gaussian_weights(x, np.array([0.3, -0.2]), np.array([[0.16, 0.06], [0.06, 0.09]]))
    lam, tau, eps = 1.0, 0.1, 0.02  # √(ε/2) = 0.1 ≈ 1.7h
    p = ou_step(geom, x, q, lam, tau, eps)
    m0, S0 = moments(x, q)
    m1, S1 = moments(x, p)
    a = 1 + tau * lam
    np.testing.assert_allclose(m1, m0 / a, atol=1e-9)  # measured 2e-15 (cov: 1e-14)
    np.testing.assert_allclose(S1, S0 / a**2 + eps / (2 * a) * np.eye(2), atol=1e-9)
    # the diffusion reading: variance added per step (λ → 0) is ε/2 = 2Dτ, D = ε/(4τ)
    p0 = ou_step(geom, x, q, 0.0, tau, eps)
    _, S_free = moments(x, p0)
    D = eps / (4 * tau)
    np.testing.assert_allclose(S_free - S0, 2 * D * tau * np.eye(2), atol=1e-9)


def test_ou_grid_error_vanishes_as_spacing_shrinks():
    """One 1-D step against its exact Gaussian map as h/√(ε/2) decreases (reference
    solver, dense): the error collapses super-exponentially (a discrete Gaussian's
    moments converge like exp(−π²ε/(2h²)·…)), to rounding once h ≲ 0.7√(ε/2)."""
    lam, tau, eps = 1.0, 0.05, 0.01  # √(ε/2) = 0.0707
    errs = []
    for h in (0.14, 0.1, 0.07, 0.05):
        x = np.arange(-2.2, 3.8 + h / 2, h)[:, None]  # 7.5 standard deviations each side
        q = gaussian_weights(x, np.array([0.8]), np.array([[0.16]]))
        p = ou_step(((x - x.T) ** 2), x, q, lam, tau, eps, production=False)
        (m0,), ((v0,),) = moments(x, q)
        (m1,), ((v1,),) = moments(x, p)
        a = 1 + tau * lam
        errs.append(max(abs(m1 - m0 / a), abs(v1 - v0 / a**2 - eps / (2 * a))))
    # measured: 2.4e-3, 1.6e-5, 7.8e-10, 1.4e-15 for h/√(ε/2) = 1.98, 1.41, 0.99, 0.71
    assert np.all(np.diff(np.log(errs)) < -4.0), errs
    assert errs[-1] < 1e-12


def test_ou_converges_to_continuous_process_at_first_order():
    """τ → 0 at fixed D = ε/(4τ): grid JKO equals the discrete OU recursion exactly and
    the continuous OU law at t = 1 with error slope 1 in τ."""
    lam, D, m0, s0, T = 1.0, 0.05, 0.8, 0.4, 1.0
    # h = 0.02 ≤ 0.3√(ε/2) (grid error at rounding level, test above); the line of
    # tests/jko/test_debias.py's fine-grid test (one compiled program)
    geom = grids.cartesian_grid([(-4.0, 4.0)], [401])
    x = np.asarray(geom.points)
    q0 = gaussian_weights(x, np.array([m0]), np.array([[s0**2]]))
    (mq,), ((vq,),) = moments(x, q0)
    mc = m0 * np.exp(-lam * T)
    vc = s0**2 * np.exp(-2 * lam * T) + D / lam * (1 - np.exp(-2 * lam * T))
    taus, err_m, err_v = (0.2, 0.1, 0.05), [], []
    for tau in taus:
        eps = 4 * D * tau
        p, m_rec, v_rec = q0, mq, vq
        a = 1 + tau * lam
        for _ in range(round(T / tau)):
            p = ou_step(geom, x, p, lam, tau, eps)
            m_rec, v_rec = m_rec / a, v_rec / a**2 + eps / (2 * a)
        (m,), ((var,),) = moments(x, p)
        assert abs(m - m_rec) < 1e-8 and abs(var - v_rec) < 1e-8  # the scheme, exactly
        err_m.append(abs(m - mc))
        err_v.append(abs(var - vc))
    slopes_m = np.diff(np.log(err_m)) / np.diff(np.log(taus))
    slopes_v = np.diff(np.log(err_v)) / np.diff(np.log(taus))
    # measured: err_m 2.72e-2, 1.41e-2, 7.2e-3 (slopes 0.95, 0.97); err_v similar
    assert np.all((slopes_m > 0.85) & (slopes_m < 1.1)), slopes_m
    assert np.all((slopes_v > 0.85) & (slopes_v < 1.1)), slopes_v


def _neuron_problem(geom, param="neuron", n=8):
    """Features, targets and potentials of n data points x ∈ [−1, 1] (with a bias column
    when Θ has room for one: 1-D data without bias for neuron on a 2-D grid)."""
    param = P.get(param)
    x = np.linspace(-1, 1, n)
    d = 2 if param.dim(2) == geom.points.shape[1] else 1
    X = np.stack([x, np.ones_like(x)], 1)[:, :d]
    y = np.abs(x) - 0.3
    return param.features(geom.points, X), y, param.potentials(geom.points)


@pytest.mark.parametrize("kind", ["product", "signed", "sphere"])
def test_separable_geometries_match_dense(kind):
    """ProductGeometry / ComponentGeometry kernels give the dense solver's step."""
    n = 8
    if kind == "product":
        # the grid and data shapes of tests/jko/test_jko.py's small_grid tests (one compiled
        # program; a dense reference on 42 points)
        geom, param, n = grids.cartesian_grid([(-1, 1), (-1, 1)], [7, 6]), "neuron", 4
    elif kind == "signed":
        geom, param = grids.signed_grid([(-2, 2)] * 2, [6, 7]), "signed"
    else:
        geom, param = grids.sphere_line_grid(2, 9, (-2, 2), 8), "sphere"
    phi, y, v = _neuron_problem(geom, param, n)
    rng = np.random.default_rng(2)
    q = rng.random(geom.size)
    q /= q.sum()
    lam, tau, eps = 0.01, 0.3, 0.2
    opts = JKOSolverOptions(tol=1e-12)
    p_sep, _, d = jko_step(geom, q, phi, y, v, lam, tau, eps, options=opts)
    # the dense solver: the reference on the dense cost (+inf between components)
    p_dense = entropic_jko_step(np.asarray(geom.cost_matrix()), q, np.asarray(phi), y,
                                np.asarray(v), lam, tau, eps, tol=1e-12)
    assert np.abs(np.asarray(p_sep) - p_dense).sum() < 1e-8  # measured 4e-13 .. 8e-13
    if kind == "signed":  # no mass crosses between the ν⁺ and ν⁻ components
        half = geom.sizes[0]
        np.testing.assert_allclose(np.sum(p_sep[:half]), np.sum(q[:half]), atol=1e-12)


def weighted_flow_objective(param, thetas, weights, X, y, lam, T, dt):
    """F(t) along the Wasserstein gradient flow of μ₀ = Σ_k w_k δ_{θ_k}: every support
    point moves with dθ/dt = −∇F'(μ_t)(θ) (objective.velocity), weights fixed; RK4."""
    f = lambda th: O.velocity(param, th, weights, X, y, lam)

    @jax.jit
    def integrate(th):
        def body(th, _):
            k1 = f(th)
            k2 = f(th + dt / 2 * k1)
            k3 = f(th + dt / 2 * k2)
            k4 = f(th + dt * k3)
            th = th + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            return th, O.objective(param, th, weights, X, y, lam)

        return jax.lax.scan(body, th, None, length=round(T / dt))[1]

    F0 = O.objective(param, thetas, weights, X, y, lam)
    return np.concatenate([[float(F0)], np.asarray(integrate(thetas))])


@pytest.mark.parametrize("levels", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_jko_approaches_gradient_flow_as_tau_and_eps_over_tau_vanish(levels):
    """(τ, ε) = (0.2, 0.02), (0.1, 0.005), (0.05, 0.00125): ε/τ = τ/2 → 0, grid spacing
    h = 0.7√ε shrinking with ε. The sup-gap of F(t) on [0, 1] between grid JKO and the
    gradient flow from the same discrete initial measure shrinks along the sequence: all
    three levels (the 161² grid) in `make test-all`; in `make test` the first two, both on
    the second's grid (h = 0.05: one compiled step, one initial measure, one flow), where
    the (τ, ε/τ) part of the gap alone must shrink."""
    param = P.get("neuron")
    x = np.linspace(-1, 1, 10)
    X = jnp.asarray(x[:, None])
    y = jnp.asarray(np.maximum(x, 0) - 0.2 * np.maximum(-x, 0))
    # RK4 at dt = 0.05 (every τ is a multiple of it): F within 5e-7 of dt = 0.01's on each
    # level (measured), ≪ the gaps
    lam, T, dt = 0.01, 1.0, 0.05
    sequence = ((0.2, 0.02, 0.1), (0.1, 0.005, 0.05), (0.05, 0.00125, 0.025))[:levels]
    if levels == 2:
        sequence = tuple((tau, eps, 0.05) for tau, eps, _ in sequence)
    gaps, flows = [], {}
    for tau, eps, h in sequence:
        if h not in flows:  # grid, initial measure and gradient flow of this spacing
            n1 = round(4.0 / h) + 1
            geom = grids.cartesian_grid([(-2.0, 2.0)] * 2, [n1, n1])
            p0, _ = grids.discretize(GaussianLaw(0.5), param, geom, jax.random.PRNGKey(0))
            flows[h] = geom, p0, weighted_flow_objective(param, geom.points, p0, X, y, lam, T,
                                                         dt)
        geom, p0, F_flow = flows[h]
        tr = run_jko(geom, param, p0, X, y, lam, tau, eps, T)
        F_jko = np.asarray(tr.diagnostics["objective"][1:])
        F_flow_at = np.interp(tr.t[1:], dt * np.arange(len(F_flow)), F_flow)
        gaps.append(np.max(np.abs(F_jko - F_flow_at)))
    # measured: 6.5e-4, 3.7e-4, 2.2e-4 (F drops from 0.108 to 0.098 over [0, 1]); in
    # `make test` (both on h = 0.05) 5.1e-4, 3.7e-4
    assert all(b < 0.8 * a for a, b in zip(gaps[:-1], gaps[1:], strict=True)), gaps
