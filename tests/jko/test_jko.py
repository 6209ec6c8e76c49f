"""Entropic JKO step: dense reference and production solver against independent references.

References used here (none of them reuses our Sinkhorn):
- the Lagrange dual of W_ε(p, q) + 2τF(p) over (g, β) ∈ ℝⁿ × ℝᴺ, maximized by
  scipy's L-BFGS-B (a generic optimizer);
- the KL-prox as a bound-constrained primal problem, minimized by L-BFGS-B;
- POT's log-domain Sinkhorn for W_ε(p, q) at given marginals;
- the closed-form Gibbs blur when F = 0.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
import scipy.optimize as so
from scipy.special import logsumexp

import mfjko  # noqa: F401  (float64)
from mfjko import grids
from mfjko import parametrizations as P
from mfjko.grid_runs import run_jko
from mfjko.jko import (
    ConvergenceError,
    JKOSolverOptions,
    entropic_jko_step,
    grid_objective,
    jko_step,
    kl_prox_newton,
)

# (N, n, τ, ε, λ): from easy to a small-ε/large-σ case (σ = 2τ/ε = 100). One shape
# (N, n) for all, so the jitted solver compiles once per variant.
N_, n_ = 40, 5
CASES = [(N_, n_, 0.1, 0.5, 0.1), (N_, n_, 0.5, 0.1, 0.1), (N_, n_, 0.05, 0.05, 0.0),
         (N_, n_, 1.0, 0.02, 0.3)]


def random_instance(N, n, seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(N, 2))
    cost = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    q = rng.random(N) + 0.05
    q /= q.sum()
    phi = rng.normal(size=(n, N))
    y = rng.normal(size=n)
    v = (pts**2).sum(1)
    return pts, cost, q, phi, y, v


def dual_lbfgs_solution(cost, q, phi, y, v, lam, tau, eps):
    r"""p from the Lagrange dual, derived independently of Peyré's iterations:

    min_π ⟨C,π⟩ + εΣπ(log π − 1) + 2τ[(1/2n)‖Φπ1 − y‖² + (λ/2)vᵀπ1]  s.t. πᵀ1 = q.
    With (1/2n)‖r‖² = max_g ⟨g,r⟩ − (n/2)‖g‖² and a multiplier β for πᵀ1 = q:
    D(g, β) = ⟨β,q⟩ − 2τ⟨g,y⟩ − τn‖g‖² − ε Σ_kl exp((β_l − C_kl − 2τ(λv_k/2 + (Φᵀg)_k))/ε),
    concave; π_kl = exp(...) at the maximizer, p = π1.
    """
    n, N = phi.shape

    def neg_dual(x):
        g, beta = x[:n], x[n:]
        s = (beta[None, :] - cost - 2 * tau * (lam * v / 2 + phi.T @ g)[:, None]) / eps
        pi = np.exp(s)
        val = beta @ q - 2 * tau * g @ y - tau * n * g @ g - eps * np.exp(logsumexp(s))
        grad_g = -2 * tau * y - 2 * tau * n * g + 2 * tau * phi @ pi.sum(1)
        grad_b = q - pi.sum(0)
        return -val, -np.concatenate([grad_g, grad_b])

    res = so.minimize(neg_dual, np.zeros(n + N), jac=True, method="L-BFGS-B",
                      options=dict(maxiter=100_000, ftol=1e-16, gtol=1e-12, maxcor=50))
    g, beta = res.x[:n], res.x[n:]
    s = (beta[None, :] - cost - 2 * tau * (lam * v / 2 + phi.T @ g)[:, None]) / eps
    p = np.exp(s).sum(1)
    return p / p.sum()


def entropic_cost(p, q, cost, eps):
    """W_ε(p, q) = ⟨C,π⟩ + εΣπ(log π − 1) with π from POT's log-domain Sinkhorn."""
    pi = ot.sinkhorn(p, q, cost, eps, method="sinkhorn_log", numItermax=20_000,
                     stopThr=1e-11)
    pos = pi > 0
    return float(np.sum(cost * pi) + eps * np.sum(pi[pos] * (np.log(pi[pos]) - 1.0)))


@pytest.mark.parametrize("case", CASES[:3])  # L-BFGS needs ~10 s on CASES[3] (σ = 100)
def test_reference_matches_generic_dual_solver(case):
    N, n, tau, eps, lam = case
    _, cost, q, phi, y, v = random_instance(N, n, seed=N + n)
    p_ref = entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, tol=1e-12)
    p_dual = dual_lbfgs_solution(cost, q, phi, y, v, lam, tau, eps)
    assert abs(p_ref.sum() - 1.0) < 1e-14 and np.all(p_ref >= 0)
    assert np.abs(p_ref - p_dual).sum() < 1e-6  # measured: 3.2e-9, 2.4e-8, 8.5e-9


VARIANTS = [(c, 0, None) for c in CASES] + [(c, 6, None) for c in CASES] + [
    (CASES[1], 6, 0.5), (CASES[3], 6, 0.5)]


@functools.cache
def dense_reference(case):
    """The dense reference step of a case, computed once (several variants use it)."""
    N, n, tau, eps, lam = case
    _, cost, q, phi, y, v = random_instance(N, n, seed=N + n)
    return entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, tol=1e-13)


@pytest.mark.parametrize("case,anderson,eps_scaling", VARIANTS)
def test_production_matches_reference(case, anderson, eps_scaling):
    N, n, tau, eps, lam = case
    pts, cost, q, phi, y, v = random_instance(N, n, seed=N + n)
    p_ref = dense_reference(case)
    geom = grids.DenseGeometry.from_points(pts)
    opts = JKOSolverOptions(tol=1e-12, anderson_depth=anderson, eps_scaling=eps_scaling,
                            eps_start_ratio=16.0)
    p, state, diag = jko_step(geom, q, phi, y, v, lam, tau, eps, options=opts)
    assert bool(diag.converged) and float(diag.marginal_error) <= 1e-12
    assert np.abs(np.asarray(p) - p_ref).sum() < 1e-8  # measured 3e-14 .. 9e-13
    assert state.g.shape == (n,) and state.f.shape == (N,)


def test_anderson_cuts_iterations_on_a_hard_case():
    N, n, tau, eps, lam = CASES[-1]
    pts, _, q, phi, y, v = random_instance(N, n, seed=N + n)
    geom = grids.DenseGeometry.from_points(pts)
    its = {}
    for depth in (0, 6):
        opts = JKOSolverOptions(tol=1e-12, anderson_depth=depth)
        its[depth] = int(jko_step(geom, q, phi, y, v, lam, tau, eps, options=opts)[2]
                         .sinkhorn_iterations)
    assert its[6] * 5 < its[0]  # measured 29 vs 577


def test_kl_prox_matches_primal_bound_constrained_solver():
    """prox^{KL}_{σF}(z) = argmin_{p ≥ 0} σF(p) + KL(p|z), solved in the primal by L-BFGS-B."""
    rng = np.random.default_rng(3)
    N, n, sigma, lam = 25, 4, 3.0, 0.2
    phi, y, v = rng.normal(size=(n, N)), rng.normal(size=n), rng.random(N)
    z = rng.random(N) + 0.1

    def primal(p):
        r = phi @ p - y
        F = 0.5 * r @ r / n + 0.5 * lam * v @ p
        kl = np.sum(p * np.log(p / z) - p + z)
        grad = sigma * (phi.T @ r / n + 0.5 * lam * v) + np.log(p / z)
        return sigma * F + kl, grad

    res = so.minimize(primal, z.copy(), jac=True, method="L-BFGS-B",
                      bounds=[(1e-300, None)] * N, options=dict(ftol=1e-16, gtol=1e-13))
    prox = jax.jit(kl_prox_newton)  # one program (eagerly, each operation compiles alone)
    log_p, g, it, gnorm = prox(jnp.log(z), jnp.asarray(phi), jnp.asarray(y),
                               0.5 * lam * jnp.asarray(v), sigma, jnp.zeros(n), 1e-13, 50)
    assert float(gnorm) < 1e-12 and int(it) < 20
    assert np.abs(np.exp(np.asarray(log_p)) - res.x).sum() < 1e-7
    # g is the scaled residual (Φp − y)/n at the solution
    p = np.exp(np.asarray(log_p))
    np.testing.assert_allclose(np.asarray(g), (phi @ p - y) / n, atol=1e-12)


@pytest.mark.parametrize("use_product", [False, True])
def test_zero_objective_is_gibbs_blur(use_product):
    """F = 0: p = K (q ⊘ K1) (K symmetric) in closed form."""
    rng = np.random.default_rng(5)
    if use_product:
        geom = small_grid()  # one compiled step for every jko_step on a product grid here
    else:
        geom = grids.DenseGeometry.from_points(rng.normal(size=(N_, 2)))
    N, eps = geom.size, 0.6
    C = np.asarray(geom.cost_matrix())
    K = np.exp(-C / eps)
    q = rng.random(N)
    q /= q.sum()
    blur = K @ (q / (K @ np.ones(N)))
    n = SMALL_N if use_product else n_
    phi, y, v = np.zeros((n, N)), np.zeros(n), rng.random(N)
    p_ref = entropic_jko_step(C, q, phi, y, v, 0.0, 0.7, eps)
    p, _, diag = jko_step(geom, q, phi, y, v, 0.0, 0.7, eps)
    assert np.abs(p_ref - blur).max() < 1e-13
    assert np.abs(np.asarray(p) - blur).max() < 1e-13
    assert int(diag.sinkhorn_iterations) == 1  # a is constant: one half-step is exact


def test_step_objective_matches_pot_and_descends():
    """The reported W_ε + 2τF equals POT's W_ε at (p, q) plus 2τF(p), is minimal along
    random simplex directions, and is ≤ the value at p = q (descent)."""
    N, n, tau, eps, lam = N_, n_, 0.5, 0.3, 0.1
    pts, cost, q, phi, y, v = random_instance(N, n, seed=11)
    geom = grids.DenseGeometry.from_points(pts)
    p, _, diag = jko_step(geom, q, phi, y, v, lam, tau, eps,
                          options=JKOSolverOptions(tol=1e-12))
    p = np.asarray(p)

    def J(r):
        return entropic_cost(r, q, cost, eps) + 2 * tau * float(grid_objective(r, phi, y, v, lam))

    J_p = J(p)
    assert abs(float(diag.step_objective) - J_p) < 1e-9
    assert abs(float(diag.objective) - float(grid_objective(p, phi, y, v, lam))) < 1e-14
    rng = np.random.default_rng(0)
    for _ in range(3):
        r = rng.random(N)
        r /= r.sum()
        assert J(0.97 * p + 0.03 * r) > J_p
    assert J_p < J(q)


# the shapes of tests/jko/test_pinning.py and tests/test_driver.py: a 7×8×9 grid and
# 10 data points (one compiled step for all of them)
RUN_SIZES, RUN_N = [7, 8, 9], 10


def run_problem():
    """1-D regression with bias under ``neuron`` on a small 3-D box grid (w1, w2, α)."""
    geom = grids.cartesian_grid([(-2, 2)] * 3, RUN_SIZES)
    x = np.linspace(-1, 1, RUN_N)
    X = np.stack([x, np.ones_like(x)], 1)
    y = np.abs(x) - 0.3
    rng = np.random.default_rng(1)
    p0 = rng.random(geom.size)
    return geom, X, y, p0 / p0.sum()


def small_grid():
    """The 7×6 box [−1, 1]² of the jko_step tests on a product grid (and of
    tests/jko/test_jko_physics.py's product case): one compiled step for all of them,
    with SMALL_N data points."""
    return grids.cartesian_grid([(-1.0, 1.0), (-1.0, 1.0)], [7, 6])


SMALL_N = 4


def test_warm_start_gives_same_answer_in_fewer_iterations():
    # neuron θ = (w, α) on the small grid, 1-D data without bias
    geom = small_grid()
    x = np.linspace(-1, 1, SMALL_N)
    X, y = x[:, None], np.abs(x) - 0.3
    p0 = np.random.default_rng(1).random(geom.size)
    p0 /= p0.sum()
    param = P.get("neuron")
    phi, v = param.features(geom.points, X), param.potentials(geom.points)
    lam, tau, eps = 0.01, 0.2, 0.15
    opts = JKOSolverOptions(tol=1e-11)
    p1, s1, _ = jko_step(geom, p0, phi, y, v, lam, tau, eps, options=opts)
    p_cold, _, d_cold = jko_step(geom, p1, phi, y, v, lam, tau, eps, options=opts)
    p_warm, _, d_warm = jko_step(geom, p1, phi, y, v, lam, tau, eps, s1, opts)
    assert np.abs(np.asarray(p_cold - p_warm)).sum() < 1e-9
    assert int(d_warm.sinkhorn_iterations) < int(d_cold.sinkhorn_iterations)
    assert int(d_warm.newton_total) < int(d_cold.newton_total)


def test_run_jko_schema_mass_positivity_descent_and_resume():
    geom, X, y, p0 = run_problem()
    lam, tau, eps = 0.01, 0.1, 0.15
    calls = []
    tr = run_jko(geom, "neuron", p0, X, y, lam, tau, eps, T=0.6, record_every=2,
                 callback=lambda k, t, p, d: calls.append((k, t, float(np.sum(p)))))
    assert tr.method == "jko" and tr.param == "neuron"
    np.testing.assert_allclose(tr.t, [0.0, 0.2, 0.4, 0.6], atol=1e-15)
    assert tr.weights.shape == (4, geom.size) and tr.support.shape == (geom.size, 3)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([c[1] for c in calls], 0.1 * np.arange(1, 7), atol=1e-15)
    np.testing.assert_allclose(tr.weights.sum(1), 1.0, atol=1e-13)
    assert np.all(tr.weights >= 0)
    d = tr.diagnostics
    assert np.isnan(d["objective"][0]) and np.all(d["converged"][1:] == 1.0)
    assert np.all(d["marginal_error"][1:] <= 1e-9) and np.all(d["mass_error"][1:] <= 1e-8)
    # F decreases along this run (small diffusion D = ε/(4τ) against a strong drift)
    F = [float(grid_objective(w, *_phi_y_v(geom, X, y), lam)) for w in tr.weights]
    assert np.all(np.diff(F) < 0)
    np.testing.assert_allclose(F[1:], d["objective"][1:], rtol=1e-12)
    # resume from the state at t = 0.4 reproduces the last frame
    half = run_jko(geom, "neuron", p0, X, y, lam, tau, eps, T=0.4)
    rest = run_jko(geom, "neuron", half.weights[-1], X, y, lam, tau, eps, T=0.2,
                   state=half.meta["state"], t0=0.4)
    np.testing.assert_allclose(rest.t, [0.4, 0.5, 0.6], atol=1e-15)
    assert np.abs(rest.weights[-1] - tr.weights[-1]).sum() < 1e-9


def _phi_y_v(geom, X, y):
    param = P.get("neuron")
    return param.features(geom.points, X), y, param.potentials(geom.points)


def test_bad_inputs_raise_clear_errors():
    geom, X, y, p0 = run_problem()
    phi, _, v = _phi_y_v(geom, X, y)
    with pytest.raises(ValueError, match="not a multiple"):
        run_jko(geom, "neuron", p0, X, y, 0.01, 0.3, 0.1, T=1.0)
    with pytest.raises(ValueError, match="eps"):
        jko_step(geom, p0, phi, y, v, 0.01, 0.1, 0.0)
    with pytest.raises(ValueError, match="tau"):
        jko_step(geom, p0, phi, y, v, 0.01, -0.1, 0.1)
    with pytest.raises(ValueError, match="nonnegative"):
        jko_step(geom, -p0, phi, y, v, 0.01, 0.1, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        jko_step(geom, p0, phi.at[0, 0].set(np.nan), y, v, 0.01, 0.1, 0.1)
    with pytest.raises(ValueError, match="phi"):
        jko_step(geom, p0, phi[:, :-1], y, v, 0.01, 0.1, 0.1)
    with pytest.raises(ValueError, match="eps_scaling"):
        JKOSolverOptions(eps_scaling=1.5)
    with pytest.raises(ValueError, match="cost"):
        entropic_jko_step(np.zeros((3, 3)), p0, phi, y, v, 0.01, 0.1, 0.1)


def test_non_convergence_raises_or_warns_with_figures():
    N, n, tau, eps, lam = CASES[-1]
    pts, cost, q, phi, y, v = random_instance(N, n, seed=N + n)
    geom = grids.DenseGeometry.from_points(pts)
    with pytest.raises(ConvergenceError, match="marginal error"):
        jko_step(geom, q, phi, y, v, lam, tau, eps, options=JKOSolverOptions(max_iter=2))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        p, _, diag = jko_step(geom, q, phi, y, v, lam, tau, eps,
                              options=JKOSolverOptions(max_iter=2, on_failure="warn"))
    assert not bool(diag.converged) and float(diag.marginal_error) > 1e-9
    assert any("did not converge" in str(x.message) for x in w)
    assert np.all(np.isfinite(np.asarray(p)))
    with pytest.raises(ConvergenceError, match="marginal error"):
        entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, max_iter=2)


def test_non_finite_kernel_is_flagged_not_returned():
    """A NaN in the cost propagates to the marginal error: the step raises, never
    returns NaN weights silently."""
    N, n, tau, eps, lam = CASES[1]
    pts, cost, q, phi, y, v = random_instance(N, n, seed=N + n)
    bad = grids.DenseGeometry.from_points(pts, jnp.asarray(cost).at[3, 5].set(jnp.nan))
    with pytest.raises(ConvergenceError, match="finite p: False|marginal error nan"):
        jko_step(bad, q, phi, y, v, lam, tau, eps)


@pytest.mark.parametrize("eps_over_delta2", [1e-2, "diam"])
def test_extreme_eps_on_a_product_grid_matches_reference(eps_over_delta2):
    """The stated range of ε: from 1e-2·δ² (kernel ≈ identity; the separable apply takes
    its exact-LSE fallback) to the squared diameter of the box (kernel ≈ constant).
    Production solver on the separable grid vs the dense reference on its cost matrix."""
    geom = small_grid()
    delta = geom.spacing
    pts = np.asarray(geom.points)
    diam2 = float(np.max(((pts[:, None] - pts[None]) ** 2).sum(-1)))
    eps = diam2 if eps_over_delta2 == "diam" else eps_over_delta2 * delta**2
    rng = np.random.default_rng(7)
    q = rng.random(geom.size) + 0.05
    q /= q.sum()
    phi = rng.normal(size=(SMALL_N, geom.size))
    y = rng.normal(size=SMALL_N)
    v = (pts**2).sum(1)
    tau, lam = 0.05, 0.1
    p_ref = entropic_jko_step(np.asarray(geom.cost_matrix()), q, phi, y, v, lam, tau, eps,
                              tol=1e-12)
    p, _, diag = jko_step(geom, q, phi, y, v, lam, tau, eps,
                          options=JKOSolverOptions(tol=1e-12))
    p = np.asarray(p)
    assert bool(diag.converged) and np.all(np.isfinite(p)) and np.all(p >= 0)
    assert np.abs(p - p_ref).sum() < 1e-8
    assert abs(p.sum() - 1.0) < 1e-12
