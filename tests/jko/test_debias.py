r"""The debiased entropic JKO step p = argmin_p W_ε(p, q) − (ε/2)H(p) + 2τF(p).

Independent references (none reuses our Sinkhorn iterations):
- the convex program over the plan π written for cvxpy with exponential cones,
  ⟨C,π⟩ + ε[Σ_kl π_kl log(π_kl/p_k) + ½ Σ_k p_k log p_k] + 2τF(p), p = π1, πᵀ1 = q,
  solved by Clarabel (H(π) − ½H(p) = [H(π) − H(p)] + ½H(p): a perspective plus a convex
  term, docs/MATH.md "Debiased entropic JKO");
- POT's log-domain Sinkhorn for W_ε(p, q) at given marginals (objective along segments);
- the physics: with F = 0 the step's variance change is O(ε²) (ε²/(16s²) for a Gaussian
  of std s), against ε/2 for Peyré's step; under a constant force the mean moves by τV
  on a fine grid and the drift ratio equals Peyré's on a coarse one (issue 20's table).
"""

from __future__ import annotations

import functools

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from scipy.special import logsumexp

import mfjko  # noqa: F401  (float64)
from mfjko import grids
from mfjko.jko import JKOSolverOptions, entropic_jko_step, jko_step

N_, n_ = 40, 5
CASES = [(0.1, 0.5, 0.1), (0.5, 0.1, 0.1), (0.05, 0.05, 0.0), (1.0, 0.02, 0.3)]  # τ, ε, λ


def random_instance(N, n, seed, dim=2):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(N, dim))
    cost = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    q = rng.random(N) + 0.05
    q /= q.sum()
    return pts, cost, q, rng.normal(size=(n, N)), rng.normal(size=n), (pts**2).sum(1)


def cvxpy_step(cost, q, phi, y, v, lam, tau, eps, entropy_weight):
    r"""argmin over π ≥ 0 with πᵀ1 = q of ⟨C,π⟩ + ε[H(π) − H(p)] + ε·w·H(p) + 2τF(p).

    w = ½ is the debiased step, w = 1 Peyré's (H(π) − H(p) = Σ rel_entr(π_kl, p_k)).
    """
    n, N = phi.shape
    P = cp.Variable((N, N), nonneg=True)
    p = cp.sum(P, axis=1)
    rows = cp.reshape(p, (N, 1), order="F") @ np.ones((1, N))
    obj = (cp.sum(cp.multiply(cost, P))
           + eps * (cp.sum(cp.rel_entr(P, rows)) + entropy_weight * cp.sum(-cp.entr(p)))
           + 2 * tau * (cp.sum_squares(phi @ p - y) / (2 * n) + lam / 2 * v @ p))
    prob = cp.Problem(cp.Minimize(obj), [cp.sum(P, axis=0) == q])
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11,
               max_iter=500)
    assert prob.status in ("optimal", "optimal_inaccurate")
    return P.value.sum(1)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("case", CASES[:3])
def test_dense_debiased_matches_cvxpy(case):
    tau, eps, lam = case
    _, cost, q, phi, y, v = random_instance(12, 3, seed=3)
    p_ref = entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, tol=1e-13, debias=True)
    p_cvx = cvxpy_step(cost, q, phi, y, v, lam, tau, eps, 0.5)
    assert np.abs(p_ref - p_cvx).sum() < 1e-7  # measured 1e-10, 2e-10, 4e-12
    # the same formulation with w = 1 is Peyré's step: the program is the right one
    p_std = entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, tol=1e-13)
    assert np.abs(p_std - cvxpy_step(cost, q, phi, y, v, lam, tau, eps, 1.0)).sum() < 1e-7
    assert np.abs(p_std - p_ref).sum() > 1e-3  # and the two steps differ


@functools.cache
def dense_reference(case):
    """The dense debiased step on the shared (N_, n_) instance, computed once per case
    (both Anderson depths compare with it)."""
    tau, eps, lam = case
    _, cost, q, phi, y, v = random_instance(N_, n_, seed=N_ + n_)
    return entropic_jko_step(cost, q, phi, y, v, lam, tau, eps, tol=1e-13, debias=True)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("depth", [0, 10])
def test_production_matches_dense_random_points(case, depth):
    tau, eps, lam = case
    pts, cost, q, phi, y, v = random_instance(N_, n_, seed=N_ + n_)
    p_ref = dense_reference(case)
    opts = JKOSolverOptions(tol=1e-12, debias_anderson_depth=depth, debias=True)
    p, state, diag = jko_step(grids.DenseGeometry.from_points(pts), q, phi, y, v, lam, tau,
                              eps, options=opts)
    assert bool(diag.converged)
    assert np.abs(np.asarray(p) - p_ref).sum() < 1e-10  # measured ≤ 9.3e-13
    assert state.f.shape == (N_,) and state.g.shape == (n_,)


def _separable_instance(sizes, seed):
    geom = grids.cartesian_grid([(-1.0, 1.0)] * len(sizes), sizes)
    x = np.asarray(geom.points)
    rng = np.random.default_rng(seed)
    q = np.exp(-((x - 0.1) ** 2).sum(1) / 0.3) * (1 + 0.3 * rng.random(len(x)))
    q /= q.sum()
    n = 4
    phi = np.maximum(rng.normal(size=(n, x.shape[1])) @ x.T + 0.3, 0.0)  # ReLU-like
    y = rng.normal(size=n)
    return geom, x, q, phi, y, (x**2).sum(1)


@pytest.mark.parametrize("sizes", [[21], [12, 11]])
def test_production_matches_dense_on_separable_grids(sizes):
    """Separable kernels (1-D and 2-D product grids) against the dense reference; the 2-D
    grid is test_kkt_residual_over_eps's (one compiled program)."""
    geom, x, q, phi, y, v = _separable_instance(sizes, seed=len(sizes))
    cost = ((x[:, None] - x[None]) ** 2).sum(-1)
    delta = 2.0 / (sizes[0] - 1)
    for tau, eps in ((0.2, delta**2), (0.05, 0.3)):
        p_ref = entropic_jko_step(cost, q, phi, y, v, 0.1, tau, eps, tol=1e-13, debias=True)
        p, _, diag = jko_step(geom, q, phi, y, v, 0.1, tau, eps,
                              options=JKOSolverOptions(tol=1e-12, debias=True))
        assert np.abs(np.asarray(p) - p_ref).sum() < 1e-10  # measured ≤ 6.8e-13


def kkt_residuals(geom, q, phi, y, v, lam, tau, eps, state):
    """Marginal and p-update residuals of the plan (a, b) = exp((f, ψ)/ε) of a step.

    The optimality conditions: πᵀ1 = q, and log a = log Kb − σ'(λv/2 + Φᵀg) with
    σ' = 4τ/ε, g = (Φp − y)/n, p = π1 = a ⊙ Kb (from the Lagrangian of the program over π).
    Returns (‖b ⊙ Kᵀa − q‖₁, Σ_k p_k |log a_k − log(Kb)_k + σ'(...)_k|).
    """
    log_a = np.asarray(state.f) / eps
    log_b = np.where(q > 0, np.asarray(state.psi) / eps, -np.inf)
    log_z = np.asarray(geom.apply_lse(jnp.asarray(log_b), eps))
    col = np.exp(log_b + np.asarray(geom.apply_lse(jnp.asarray(log_a), eps)))
    p = np.exp(log_a + log_z)
    g = (phi @ p - y) / phi.shape[0]
    resid = log_a - log_z + (4 * tau / eps) * (0.5 * lam * v + phi.T @ g)
    return np.abs(col - q).sum(), np.sum(p * np.abs(resid))


@pytest.mark.parametrize("ratio", [1e-2, 0.1, 1.0, 10.0, "one"])
def test_kkt_residual_over_eps(ratio):
    """ε from 1e-2 δ² (a nearly diagonal kernel) to 1 (much wider than the grid)."""
    geom, x, q, phi, y, v = _separable_instance([12, 11], seed=7)
    delta = 2.0 / 11
    eps = 1.0 if ratio == "one" else ratio * delta**2
    lam, tau = 0.1, 0.2
    p, state, diag = jko_step(geom, q, phi, y, v, lam, tau, eps,
                              options=JKOSolverOptions(tol=1e-11, debias=True))
    assert bool(diag.converged)
    marg, kkt = kkt_residuals(geom, q, phi, y, v, lam, tau, eps, state)
    assert marg <= 1e-9 and kkt <= 1e-9  # measured marginal ≤ 7.4e-12, p-update ≤ 5.4e-12


def debiased_objective(r, q, cost, phi, y, v, lam, tau, eps):
    """W_ε(r, q) − (ε/2)Σ r(log r − 1) + 2τF(r), W_ε by POT (independent of our solver),
    F(r) = (1/(2n))‖Φr − y‖² + (λ/2)vᵀr in NumPy."""
    # scaling-domain Sinkhorn: C/ε ≤ 100 here, no underflow (10x faster than the log domain)
    pi = ot.sinkhorn(r, q, cost, eps, numItermax=50_000, stopThr=1e-13)
    pos = pi > 0
    w = float(np.sum(cost * pi) + eps * np.sum(pi[pos] * (np.log(pi[pos]) - 1.0)))
    h = float(np.sum(r * (np.log(r) - 1.0)))
    res = phi @ r - y
    F = 0.5 * (res @ res) / len(y) + 0.5 * lam * (v @ r)
    return w - 0.5 * eps * h + 2 * tau * F


def test_objective_convex_along_segments_and_minimal_at_solution():
    tau, eps, lam = 0.3, 0.4, 0.1
    N = N_  # the shapes of the tests above and of tests/jko/test_jko.py: no new program
    pts, cost, q, phi, y, v = random_instance(N, n_, seed=21)
    p, _, diag = jko_step(grids.DenseGeometry.from_points(pts), q, phi, y, v, lam, tau, eps,
                          options=JKOSolverOptions(tol=1e-12, debias=True))
    p = np.asarray(p)

    assert cost.max() / eps < 100  # see debiased_objective

    def J(r):
        return debiased_objective(r, q, cost, phi, y, v, lam, tau, eps)

    assert abs(float(diag.step_objective) - J(p)) < 1e-9
    rng = np.random.default_rng(1)
    ts = np.linspace(0.0, 1.0, 9)
    for _ in range(3):
        r0, r1 = rng.dirichlet(np.ones(N)), rng.dirichlet(np.ones(N))
        vals = np.array([J((1 - t) * r0 + t * r1) for t in ts])
        assert np.all(vals[:-2] - 2 * vals[1:-1] + vals[2:] > -1e-10)  # second differences
        r = rng.dirichlet(np.ones(N))
        for t in (1e-3, 3e-2):
            assert J((1 - t) * p + t * r) > J(p)
    # with the −(ε/2)H(p) term but the cost at ε/2 less: it is a different point from Peyré's
    p_std = np.asarray(jko_step(grids.DenseGeometry.from_points(pts), q, phi, y, v, lam, tau,
                                eps, options=JKOSolverOptions(tol=1e-12))[0])
    assert J(p) < J(p_std) - 1e-6


# --- physics: issue 20's 1-D table ------------------------------------------------------


def _line(delta, half_width):
    n = int(round(2 * half_width / delta)) + 1
    geom = grids.cartesian_grid([(-half_width, half_width)], [n])
    return geom, np.asarray(geom.points)[:, 0]


def _force_step(geom, x, q, tau, eps, force, debias):
    """One step under F(p) = −V Σ p_k θ_k (constant force V): λ = 2, v = −Vθ."""
    N = x.size
    phi, y, v = np.zeros((1, N)), np.zeros(1), -force * x
    p, _, diag = jko_step(geom, q, phi, y, v, 2.0, tau, eps,
                          options=JKOSolverOptions(tol=1e-13, debias=debias))
    assert bool(diag.converged)
    return np.asarray(p)


def _moments(x, p):
    m = x @ p
    return m, ((x - m) ** 2) @ p


# (ε/δ², Peyré drift ratio, Peyré Δvar, corrected drift ratio, corrected Δvar), as printed
TABLE = [(0.3, 0.4705, 1.96e-4, 0.4698, 6.0e-8), (0.5, 0.8687, 5.54e-4, 0.8681, 4.8e-7),
         (1.0, 0.9981, 1.25e-3, 0.9981, 2.4e-6), (2.0, 1.0000, 2.50e-3, 1.0000, 9.8e-6)]


def _printed(value, printed):
    """``value`` rounds to ``printed`` at its number of significant digits (2 or 3)."""
    digits = len(f"{printed:.2e}".split("e")[0].rstrip("0").replace(".", "")) - 1
    unit = 10.0 ** (np.floor(np.log10(abs(printed))) - max(digits, 1))
    return abs(value - printed) <= 0.5 * unit + 1e-15


@pytest.mark.parametrize("row", TABLE)
def test_issue_table_coarse_grid(row):
    """δ = 0.05, Gaussian q of std 0.4, τ = 0.1, c = τV/δ = 0.1: drift ratio (mean shift
    over τV) and variance change of one forced step, for both steps, to the printed digits."""
    ratio, *expected = row
    delta, tau, s = 0.05, 0.1, 0.4
    geom, x = _line(delta, 3.0)
    q = np.exp(-(x**2) / (2 * s * s))
    q /= q.sum()
    eps, V = ratio * delta**2, 0.1 * delta / tau
    m0, v0 = _moments(x, q)
    got = []
    for debias in (False, True):
        m1, v1 = _moments(x, _force_step(geom, x, q, tau, eps, V, debias))
        got += [(m1 - m0) / (tau * V), v1 - v0]
    assert abs(got[0] - expected[0]) <= 5e-5 and abs(got[2] - expected[2]) <= 5e-5
    assert _printed(got[1], expected[1]) and _printed(got[3], expected[3]), got
    assert abs(got[0] - got[2]) < 1e-3  # same lattice mobility
    assert got[3] < 0.01 * eps / 2  # the diffusion is gone


def test_fine_grid_exact_shift_and_fisher_residual():
    """δ = 0.02, ε = 0.01, std 0.5: mean shift τV exactly in both steps; variance change
    ε/2 (Peyré) against ε²/(16s²) = 2.5e-5 (corrected), F = 0 and under the force."""
    delta, tau, eps, s = 0.02, 0.1, 0.01, 0.5
    geom, x = _line(delta, 4.0)
    q = np.exp(-(x**2) / (2 * s * s))
    q /= q.sum()
    m0, v0 = _moments(x, q)
    V = 0.5
    out = {}
    for debias in (False, True):
        for force in (0.0, V):
            m1, v1 = _moments(x, _force_step(geom, x, q, tau, eps, force, debias))
            out[debias, force] = (m1 - m0, v1 - v0)
    for debias in (False, True):
        assert abs(out[debias, V][0] - tau * V) < 1e-9  # measured ≤ 3.7e-15
        assert abs(out[debias, 0.0][0]) < 1e-12
    assert abs(out[False, 0.0][1] - eps / 2) < 1e-6 * eps
    fisher = eps**2 / (16 * s**2)
    assert abs(out[True, 0.0][1] - fisher) < 0.01 * fisher  # measured 2.49975e-5 (1e-4)
    assert abs(out[True, V][1] - out[True, 0.0][1]) < 1e-9  # a constant force only shifts


def test_debiased_option_in_dense_reference_logsumexp_consistency():
    """F = 0, dense: the fixed point a = Kb = K(q ⊘ Kᵀa) ⊙ const holds at the output."""
    pts, cost, q, *_ = random_instance(15, 1, seed=2)
    eps = 0.5
    N = q.size
    p = entropic_jko_step(cost, q, np.zeros((1, N)), np.zeros(1), np.zeros(N), 0.0, 0.3, eps,
                          tol=1e-13, debias=True)
    # p = z², z = Kb and b = q/Kᵀa with a = z: so z = K(q ⊘ Kz), i.e. z is the symmetric
    # Sinkhorn potential of q; check p ⊘ z² is constant with z = √p
    log_k = -cost / eps
    log_z = 0.5 * np.log(p)
    log_kz = logsumexp(log_k + log_z[None, :], axis=1)
    log_z2 = logsumexp(log_k + (np.log(q) - log_kz)[None, :], axis=1)
    np.testing.assert_allclose(log_z2, log_z, atol=1e-9)


@pytest.mark.slow  # ~15 s alone, 20–30 s on the loaded 2-core machine (compiles)
def test_batched_and_eps_scaled_debiased_steps_match_single_ones():
    """vmap over ε (sweeps' EntropicJKOBatch) and ε-scaling give the same debiased steps."""
    from mfjko.jko.solver import solve_step, solve_step_batch
    from mfjko.problem import GridProblem

    geom, x, q, phi, y, v = _separable_instance([9, 8], seed=2)
    grid = GridProblem.from_arrays(geom, jnp.asarray(phi), jnp.asarray(y), jnp.asarray(v), 0.1)
    tau, eps = 0.2, np.array([0.03, 0.1])
    opts = JKOSolverOptions(tol=1e-12, debias=True)
    pb, state, diag = solve_step_batch(grid, np.stack([q, q]), tau, eps, options=opts)
    pb2, _, diag2 = solve_step_batch(grid, pb, tau, eps, state, opts)  # warm-started
    for i, e in enumerate(eps):
        p1, st1, _ = solve_step(grid, q, tau, e, options=opts)
        assert np.abs(np.asarray(pb[i]) - np.asarray(p1)).sum() < 1e-11
        p2, _, _ = solve_step(grid, p1, tau, e, st1, opts)
        assert np.abs(np.asarray(pb2[i]) - np.asarray(p2)).sum() < 1e-11
        scaled = JKOSolverOptions(tol=1e-12, debias=True, eps_scaling=0.5, eps_start_ratio=16.0)
        p3, _, d3 = solve_step(grid, q, tau, e, options=scaled)
        assert bool(d3.converged) and np.abs(np.asarray(p3) - np.asarray(p1)).sum() < 1e-10
    assert np.all(np.asarray(diag.converged)) and np.all(np.asarray(diag2.converged))


@pytest.mark.slow  # ~15 s alone, 20–30 s on the loaded 2-core machine (compiles)
def test_drift_ratio_of_debiased_step_matches_standard():
    """The drift ratio (pinning diagnostic) measures the same lattice mobility for both
    steps: the debiased plan's reference is its own F = 0 plan (a ≈ q^{1/2}), so its
    un-blurring is not counted as drift (measured on 21³/31³: within 2 %)."""
    from mfjko import data, initial
    from mfjko import parametrizations as P
    from mfjko.jko.solver import solve_step
    from mfjko.problem import GridProblem, MeanFieldProblem

    ds = data.regression_1d(n_train=20, n_test=200, target="relu_teacher", seed=0)
    param = P.get("neuron")
    geom = grids.cartesian_grid([(-3.5, 3.5)] * 3, [15] * 3)
    delta = 0.5
    p0, _ = initial.discretize(initial.GaussianLaw(scale=0.5), param, geom,
                               jax.random.PRNGKey(0))
    grid = GridProblem.create(MeanFieldProblem.create(param, ds.X, ds.y, 0.01), geom)
    ratios = [float(solve_step(grid, jnp.asarray(p0), 0.2, delta**2, None,
                               JKOSolverOptions(debias=d))[2].drift_ratio)
              for d in (False, True)]
    assert 0.5 < ratios[0] < 1.2 and abs(ratios[1] - ratios[0]) < 0.05 * ratios[0], ratios
