r"""One entropic WFR JKO step: dense reference and production solver vs independent references.

References (none reuses the Sinkhorn iteration):
- cvxpy (Clarabel, exponential cone) on the primal problem over (γ₊, γ₋, ν) as written in
  docs/MATH.md ("WFR §4"): the fully generic check of the formulation (≤ 1e-6);
- the semi-dual in g ∈ ℝⁿ (Lagrangian duality: γ and ν eliminated in closed form),
  maximized by scipy BFGS: a tight check (≤ 1e-8) and of the step's optimal value;
- closed forms: linear G (one half-iteration is exact), no transport (pure reaction,
  ν = q u^{−ρ/(ρ'+ε)−1}; with ρ' = ρ − ε exactly the Hellinger JKO, checked by cvxpy for
  a quadratic G), and G = 0 (the normalized heat-kernel blur: mass kept, variance
  (ε/2)(1 − ε/(2ρ)) + O(ε³) per step, i.e. D = ε/(4τ)).
The production solver runs on two array shapes only (it compiles once per shape).
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest
import scipy.optimize as so
from scipy.special import logsumexp

import mfjko  # noqa: F401  (float64)
from mfjko.wfr import (
    ConvergenceError,
    WFRSolverOptions,
    circle_directions,
    cone_cost,
    direction_features,
    lifted_objective,
    sphere_directions,
    wfr_jko_step,
    wfr_jko_step_dense,
    wfr_kernel,
)

NA, nA = 24, 4  # the one production shape of the small tests


def instance(d, N, n, seed):
    rng = np.random.default_rng(seed)
    S = circle_directions(N) if d == 2 else sphere_directions(d, N, steps=20)
    X = np.concatenate([rng.normal(size=(n, d - 1)), np.ones((n, 1))], axis=1)
    y = rng.normal(size=n)
    q = 0.05 * rng.random((2, N)) + 0.002
    return S, direction_features(S, X), y, q


def cvx_step(cost, q, phi, y, lam, tau, eps, rho, rho_old):
    """The primal of docs/MATH.md "WFR §4", for cvxpy (kl_div(x, y) = x log(x/y) − x + y)."""
    N, n = q.shape[1], len(y)
    reach = np.isfinite(cost)
    K = np.where(reach, np.exp(-np.where(reach, cost, 0.0) / eps), 0.0)
    Z = K.sum(0)
    nu = cp.Variable((2, N), nonneg=True)
    obj, cons = 0, []
    for c in range(2):
        R = K * (q[c] / Z)[None, :]
        gam = cp.Variable((N, N), nonneg=True)
        pos = R > 0
        if (~pos).any():
            cons.append(cp.multiply(~pos, gam) == 0)
        obj += eps * cp.sum(cp.multiply(pos, cp.kl_div(gam, np.where(pos, R, 1.0))))
        obj += rho * cp.sum(cp.kl_div(cp.sum(gam, axis=1), nu[c]))
        obj += rho_old * cp.sum(cp.kl_div(cp.sum(gam, axis=0), q[c]))
    r = phi @ (nu[0] - nu[1]) - y
    obj += 2 * tau * (cp.sum_squares(r) / (2 * n) + lam * cp.sum(nu))
    prob = cp.Problem(cp.Minimize(obj), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "solution may be inaccurate" at 1e-12 targets
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12,
                   max_iter=500)
    return nu.value


def semidual_step(cost, q, phi, y, lam, tau, eps, rho, rho_old):
    r"""ν from the concave semi-dual, derived by Lagrangian duality:
    (1/2n)‖r‖² = max_g ⟨g, r⟩ − (n/2)‖g‖²; min_ν ρKL(p|ν) + 2τ⟨λ + Φᵀg, ν⟩ = ρ⟨p, log u⟩
    at ν = p/u; then min_γ εKL(γ|R) + ρ⟨log u, γ1⟩ + ρ'KL(γᵀ1|q) is explicit, giving
    D(g) = −2τ⟨g,y⟩ − τn‖g‖² + (ε+ρ')|q| − (ε+ρ')Σ q^θ (Rᵀa)^{1−θ},  a = u^{−ρ/ε}.
    Returns (ν, max D)."""
    N, n = q.shape[1], len(y)
    log_k = -cost / eps
    log_zeta = logsumexp(log_k, axis=0)
    with np.errstate(divide="ignore"):
        log_R = log_k[None] + (np.log(q) - log_zeta)[:, None, :]
    th = rho_old / (rho_old + eps)
    phis = np.concatenate([phi, -phi], axis=1)

    def parts(g):
        arg = (2 * tau / rho) * (lam + phis.T @ g)
        if np.any(arg <= -1):
            return None
        log_u = np.log1p(arg).reshape(2, N)
        log_w = logsumexp(log_R - (rho / eps) * log_u[:, :, None], axis=1)
        return log_u, log_w

    def nu_of(log_u, log_w):
        log_b = th * (np.log(q) - log_w)
        log_p = -(rho / eps) * log_u + logsumexp(log_R + log_b[:, None, :], axis=2)
        return np.exp(log_p - log_u)

    def negD(g):
        pr = parts(g)
        if pr is None:
            return 1e300, np.zeros(n)
        log_u, log_w = pr
        s = np.exp(logsumexp(th * np.log(q) + (1 - th) * log_w))
        D = -2 * tau * g @ y - tau * n * g @ g + (eps + rho_old) * (q.sum() - s)
        # ∇D = 2τ(Φν(g) − y − n g) (chain rule through a(g) and Rᵀa)
        grad = 2 * tau * (phis @ nu_of(log_u, log_w).reshape(-1) - y - n * g)
        return -D, -grad

    res = so.minimize(negD, np.zeros(n), jac=True, method="BFGS",
                      options=dict(gtol=1e-15, maxiter=10_000))
    # BFGS stalls at |∇D| ~ 1e-8..1e-11 (line-search rounding): polish the root of ∇D
    root = so.root(lambda g: negD(g)[1], res.x, method="hybr", tol=1e-15)
    g = root.x if np.linalg.norm(root.fun) < np.linalg.norm(res.jac) else res.x
    assert np.linalg.norm(negD(g)[1]) < 1e-11
    return nu_of(*parts(g)), -negD(g)[0]


@pytest.mark.parametrize(
    "d, N, tau, eps, lam, rho_old",
    [(2, 8, 0.3, 0.5, 0.1, None), (2, 12, 0.5, 0.1, 0.02, None), (4, 10, 0.5, 0.1, 0.1, "deb")],
)
def test_dense_equals_generic_solvers(d, N, tau, eps, lam, rho_old):
    """Dense step = cvxpy primal (≤ 1e-6) = scipy semi-dual (≤ 1e-8), relative to max ν."""
    S, phi, y, q = instance(d, N, 3, seed=N)
    rho = 2.0
    ro = rho - eps if rho_old == "deb" else rho
    C = cone_cost(S, rho)
    nu = wfr_jko_step_dense(C, q, phi, y, lam, tau, eps, rho, rho_old=ro)
    nu_cvx = cvx_step(C, q, phi, y, lam, tau, eps, rho, ro)
    nu_sd, _ = semidual_step(C, q, phi, y, lam, tau, eps, rho, ro)
    scale = nu.max()
    assert np.abs(nu - nu_cvx).max() / scale < 1e-6
    assert np.abs(nu - nu_sd).max() / scale < 1e-8
    # the step really moved mass: not a trivial instance
    assert np.abs(nu - q).max() / scale > 1e-2


@pytest.mark.parametrize("d", [2, 4])
def test_production_equals_dense(d):
    """Production (Anderson, warm start) = dense to 1e-10 on S¹ and S³, over two chained
    steps; its step objective equals the semi-dual optimum (strong duality)."""
    S, phi, y, q = instance(d, NA, nA, seed=d)
    lam, tau, eps, rho = 0.05, 0.4, 0.03, 2.0
    C = cone_cost(S, rho)
    ker = wfr_kernel(S, eps, rho)
    opts = WFRSolverOptions(tol=1e-12)
    nu1, state, diag = wfr_jko_step(ker, q, phi, y, lam, tau, options=opts)
    ref1 = wfr_jko_step_dense(C, q, phi, y, lam, tau, eps, rho, tol=1e-13)
    assert np.abs(np.asarray(nu1) - ref1).max() / ref1.max() < 1e-10
    _, D = semidual_step(C, q, phi, y, lam, tau, eps, rho, rho)
    assert abs(float(diag.step_objective) - D) < 1e-9 * max(1.0, abs(D))
    assert float(diag.objective) == pytest.approx(lifted_objective(ref1, phi, y, lam), rel=1e-10)
    d1 = diag.as_dict()
    assert d1["converged"] and d1["marginal_error"] <= 1e-12 and d1["exact_lse"] == 0
    assert d1["mass_plus"] == pytest.approx(ref1[0].sum(), rel=1e-10)
    # second step, warm-started, with the debiased old-marginal weight
    nu2, _, diag2 = wfr_jko_step(ker, nu1, phi, y, lam, tau, state, opts, rho_old=rho - eps)
    ref2 = wfr_jko_step_dense(C, ref1, phi, y, lam, tau, eps, rho, rho_old=rho - eps, tol=1e-13)
    assert np.abs(np.asarray(nu2) - ref2).max() / ref2.max() < 1e-10
    # Anderson + warm start need fewer iterations than the plain dense iteration
    dense_it = wfr_jko_step_dense(C, ref1, phi, y, lam, tau, eps, rho, rho_old=rho - eps,
                                  tol=1e-12, full=True).iterations
    assert int(diag2.sinkhorn_iterations) < dense_it


def closed_form_linear(C, q, lin, tau, eps, rho, rho_old):
    """Linear G = ⟨lin, ν⟩: a = u^{−ρ/ε} does not depend on ν, so b = (q/Rᵀa)^θ and
    ν = a ⊙ Rb / u in one pass (u = 1 + (2τ/ρ) lin)."""
    K = np.exp(-C / eps)
    R = K[None] * (q / K.sum(0))[:, None, :]
    u = 1 + 2 * tau / rho * lin
    a = u ** (-rho / eps)
    b = (q / np.einsum("ckl,ck->cl", R, a)) ** (rho_old / (rho_old + eps))
    return a * np.einsum("ckl,cl->ck", R, b) / u


def test_linear_objective_closed_form():
    """G(ν) = ⟨λ + ψ, ν⟩ (Φ = 0), ψ of both signs: dense and production = the one-pass
    closed form to 1e-12."""
    S, _, _, q = instance(2, NA, nA, seed=5)
    rng = np.random.default_rng(5)
    psi = 0.8 * rng.standard_normal((2, NA))
    lam, tau, eps, rho = 0.1, 0.3, 0.05, 2.0
    C = cone_cost(S, rho)
    phi0, y0 = np.zeros((nA, NA)), rng.normal(size=nA)
    expect = closed_form_linear(C, q, lam + psi, tau, eps, rho, rho)
    dense = wfr_jko_step_dense(C, q, phi0, y0, lam, tau, eps, rho, potential=psi)
    prod, _, _ = wfr_jko_step(wfr_kernel(S, eps, rho), q, phi0, y0, lam, tau, potential=psi)
    assert np.abs(dense - expect).max() / expect.max() < 1e-12
    assert np.abs(np.asarray(prod) - expect).max() / expect.max() < 1e-12
    assert np.abs(expect - q).max() / expect.max() > 0.1  # a non-trivial step


def test_pure_reaction_closed_form_and_hellinger_jko():
    """No transport (C = 0 on the diagonal, +∞ elsewhere): R = diag(q), and
    - linear G: ν = q u^{−ρ/(ρ'+ε)−1} (closed form), for ρ' = ρ and ρ' = ρ − ε (then q/u²);
    - quadratic G with ρ' = ρ − ε: exactly the Hellinger JKO
      argmin ρΣ(√ν − √q)² + 2τG(ν) (cvxpy, ≤ 1e-6), for any ε."""
    S, phi, y, q = instance(2, NA, nA, seed=7)
    C = np.where(np.eye(NA) > 0, 0.0, np.inf)
    rng = np.random.default_rng(7)
    psi = 0.5 * rng.standard_normal((2, NA))
    lam, tau, eps, rho = 0.05, 0.25, 0.1, 2.0
    u = 1 + 2 * tau / rho * (lam + psi)
    ker = wfr_kernel(cost=C, eps=eps, rho=rho)
    for ro in (rho, rho - eps):
        expect = q * u ** (-rho / (ro + eps) - 1)
        nu = wfr_jko_step_dense(C, q, np.zeros((nA, NA)), y, lam, tau, eps, rho, potential=psi,
                                rho_old=ro)
        assert np.abs(nu - expect).max() / expect.max() < 1e-12
        prod, _, _ = wfr_jko_step(ker, q, np.zeros((nA, NA)), y, lam, tau, potential=psi,
                                  rho_old=ro)
        assert np.abs(np.asarray(prod) - expect).max() / expect.max() < 1e-12
        if ro == rho - eps:  # exactly the Hellinger JKO of a linear G: ν = q/u²
            assert np.abs(nu - q / u**2).max() / nu.max() < 1e-12

    nu_h = cp.Variable((2, NA), nonneg=True)
    r = phi @ (nu_h[0] - nu_h[1]) - y
    hell = cp.sum(nu_h) - 2 * cp.sum(cp.multiply(np.sqrt(q), cp.sqrt(nu_h))) + q.sum()
    prob = cp.Problem(cp.Minimize(rho * hell + 2 * tau * (cp.sum_squares(r) / (2 * nA)
                                                          + lam * cp.sum(nu_h))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "solution may be inaccurate" at 1e-12 targets
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    for e in (0.1, 0.01):
        nu = wfr_jko_step_dense(C, q, phi, y, lam, tau, e, rho, rho_old=rho - e)
        assert np.abs(nu - nu_h.value).max() / nu.max() < 1e-6
    prod, _, _ = wfr_jko_step(ker, q, phi, y, lam, tau, rho_old=rho - eps)
    assert np.abs(np.asarray(prod) - nu_h.value).max() / nu_h.value.max() < 1e-6
    # with ρ' = ρ the entropic reaction is biased by O(ε): measurably off the Hellinger step
    nu_b = wfr_jko_step_dense(C, q, phi, y, lam, tau, eps, rho)
    assert np.abs(nu_b - nu_h.value).max() / nu_b.max() > 1e-4


def test_zero_objective_is_a_mass_preserving_blur_with_D_eps_over_4tau():
    """G = 0 on S¹ (N = 512): one step from a Dirac is the normalized Gibbs column
    ν_k = K_k0 / Z_0 (mass exactly kept), of angular variance (ε/2)(1 − ε/(2ρ)) + O(ε³):
    the heat flow with D = ε/(4τ) (per-step variance 2Dτ = ε/2 to leading order)."""
    N, n = 512, 20  # the shape of the dynamics tests: no extra compilation
    S = circle_directions(N)
    ang = np.angle(S[:, 0] + 1j * S[:, 1])
    rho, tau = 2.0, 0.1
    for eps in (0.02, 0.005):
        q = np.zeros((2, N))
        q[0, 0] = 0.7
        nu, _, diag = wfr_jko_step(wfr_kernel(S, eps, rho), q, np.zeros((n, N)), np.zeros(n),
                                   0.0, tau)
        nu = np.asarray(nu)
        col = np.exp(-cone_cost(S, rho)[:, 0] / eps)
        assert np.abs(nu[0] - 0.7 * col / col.sum()).max() < 1e-13
        assert np.all(nu[1] == 0.0)
        assert abs(nu.sum() - 0.7) < 1e-13 and abs(float(diag.mass_change)) < 1e-13
        var = (nu[0] * ang**2).sum() / nu[0].sum()
        # remainder measured 0.042 ε² (relative)
        assert var / (eps / 2 * (1 - eps / (2 * rho))) - 1 == pytest.approx(0.0, abs=0.1 * eps**2)
        assert var / (eps / 2) - 1 == pytest.approx(-eps / (2 * rho), rel=0.01)


def test_failure_handling_raises_or_warns_never_nan():
    S, phi, y, q = instance(2, NA, nA, seed=11)
    C = cone_cost(S)
    ker = wfr_kernel(S, 0.005)
    opts = WFRSolverOptions(max_iter=1)
    with pytest.raises(ConvergenceError, match="did not converge"):
        wfr_jko_step(ker, q, phi, y, 0.01, 0.5, options=opts)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        nu, _, diag = wfr_jko_step(
            ker, q, phi, y, 0.01, 0.5, options=WFRSolverOptions(max_iter=1, on_failure="warn")
        )
    assert not bool(diag.converged) and np.all(np.isfinite(np.asarray(nu)))
    with pytest.raises(ConvergenceError):
        wfr_jko_step_dense(C, q, phi, y, 0.01, 0.5, 0.005, max_iter=2)


def test_bad_inputs():
    S, phi, y, q = instance(2, NA, nA, seed=3)
    C = cone_cost(S)
    ker = wfr_kernel(S, 0.05)
    step = lambda **kw: wfr_jko_step_dense(**{**dict(cost=C, q=q, phi=phi, y=y, lam=0.1,
                                                      tau=0.1, eps=0.05), **kw})
    for kw, msg in [
        (dict(q=q[:1]), "q must"),
        (dict(q=-q), "negative"),
        (dict(q=0 * q), "no mass"),
        (dict(phi=phi[:, :-1]), "phi must"),
        (dict(y=y[:-1]), "y must"),
        (dict(tau=0.0), "tau"),
        (dict(eps=-1.0), "eps"),
        (dict(rho=0.0), "rho"),
        (dict(rho_old=-0.1), "rho_old"),
        (dict(lam=-1.0), "lam"),
        (dict(cost=C[:-1]), "cost must"),
        (dict(phi=np.where(phi > 0, np.nan, 0)), "NaN"),
        (dict(potential=np.full((2, NA), -30.0), tau=1.0), "create mass"),
    ]:
        with pytest.raises(ValueError, match=msg):
            step(**kw)
    with pytest.raises(ValueError, match="q must"):
        wfr_jko_step(ker, q[:, :-1], phi, y, 0.1, 0.1)
    with pytest.raises(ValueError, match="unit vectors"):
        cone_cost(2 * S)
    with pytest.raises(ValueError, match="symmetric"):
        wfr_kernel(cost=np.triu(C), eps=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        wfr_kernel(S, 0.1, cost=C)
    with pytest.raises(ValueError, match="eps"):
        wfr_kernel(S, 0.0)
    with pytest.raises(ValueError):
        WFRSolverOptions(on_failure="ignore")
