r"""The debiased entropic WFR step (docs/MATH.md "WFR §7", ``WFRSolverOptions.debias``).

J_deb = J − (ε/2)H_ω(γ1) + (ε/2)H_ω(γᵀ1), H_ω(p) = Σ p(log(p/ω) − 1), J of "WFR §4".
References independent of the Sinkhorn iterations: cvxpy (Clarabel, exponential cones)
on the primal over (γ, ν); the KKT conditions of J_deb checked on the returned plan;
closed forms (no transport: the debiased step is the standard one); the physics of one
step with G = 0 (variance change O(ε²) ≈ ε²/(16s²), mass kept to O(ε²)) and under a
force (same mean shift as the standard step). The production solver runs on one shape
(2, N_) with n_ data points (one compilation).
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest
from scipy.special import logsumexp

import mfjko  # noqa: F401  (float64)
from mfjko.wfr import (
    WFRSolverOptions,
    circle_directions,
    cone_cost,
    wfr_jko_step,
    wfr_jko_step_dense,
    wfr_kernel,
)

N_, n_, RHO = 128, 4, 2.0
OPTS = WFRSolverOptions(tol=1e-12, debias=True)


def bump_instance(N=N_, n=n_, s=0.4, seed=0, data=True):
    """Two von Mises-like bumps (std s) on S¹, random features/targets (or G = 0 data)."""
    rng = np.random.default_rng(seed)
    S = circle_directions(N)
    ang = np.arctan2(S[:, 1], S[:, 0])
    d = np.angle(np.exp(1j * (ang - 0.3)))
    b = np.exp(-(d**2) / (2 * s**2)) + 1e-3
    q = np.stack([b / b.sum(), 0.5 * np.roll(b, N // 2) / b.sum()])
    if not data:
        return S, d, q, np.zeros((n, N)), np.zeros(n)
    X = np.stack([rng.normal(size=n), np.ones(n)], axis=1)
    phi = np.maximum(X @ S.T, 0.0)
    return S, d, q, phi, rng.normal(size=n)


def production(S, q, phi, y, lam, tau, eps, potential=None):
    kernel = wfr_kernel(S, eps, RHO)
    return wfr_jko_step(kernel, q, phi, y, lam, tau, None, OPTS, potential, rho_old=RHO - eps)


@pytest.mark.parametrize("tau, eps, lam", [(0.1, 0.05, 0.01), (0.3, 0.02, 0.0)])
def test_production_equals_dense(tau, eps, lam):
    S, _, q, phi, y = bump_instance()
    ref = wfr_jko_step_dense(cone_cost(S, RHO), q, phi, y, lam, tau, eps, RHO,
                             rho_old=RHO - eps, tol=1e-13, debias=True)
    nu, _, diag = production(S, q, phi, y, lam, tau, eps)
    assert bool(diag.converged)
    assert np.abs(np.asarray(nu) - ref).max() <= 1e-10 * ref.max()  # measured ≤ 3e-12
    std = wfr_jko_step_dense(cone_cost(S, RHO), q, phi, y, lam, tau, eps, RHO,
                             rho_old=RHO - eps, tol=1e-7)  # (only their difference matters)
    assert np.abs(std - ref).max() > 1e-3 * ref.max()  # the two steps differ


def cvx_debiased(cost, q, phi, y, lam, tau, eps, rho, rho_old):
    r"""argmin J_deb over (γ, ν) for cvxpy: εKL(γ|R) − (ε/2)H(p) = ε Σ rel_entr(γ_kl, p_k)
    + (ε/2)Σ p log p − ε⟨γ, log R⟩ − ε|γ| + ε|R| + (ε/2)|p| (ω = 1): DCP, hence convex."""
    N, n = q.shape[1], len(y)
    K = np.exp(-cost / eps)
    nu = cp.Variable((2, N), nonneg=True)
    obj, cons, pos = 0, [], K > 0
    for c in range(2):
        log_R = np.log(np.where(pos, K * (q[c] / K.sum(0))[None, :], 1.0))
        gam = cp.Variable((N, N), nonneg=True)
        if (~pos).any():
            cons.append(cp.multiply(~pos, gam) == 0)  # C = +∞: no transport
        p, col = cp.sum(gam, axis=1), cp.sum(gam, axis=0)
        rows = cp.reshape(p, (N, 1), order="F") @ np.ones((1, N))
        obj += eps * (cp.sum(cp.rel_entr(gam, rows)) + 0.5 * cp.sum(-cp.entr(p))
                      - cp.sum(cp.multiply(log_R, gam)) - 0.5 * cp.sum(p) + q[c].sum())
        obj += 0.5 * eps * (cp.sum(-cp.entr(col)) - cp.sum(col))  # + (ε/2)H(γᵀ1)
        obj += rho * cp.sum(cp.kl_div(p, nu[c])) + rho_old * cp.sum(cp.kl_div(col, q[c]))
    r = phi @ (nu[0] - nu[1]) - y
    obj += 2 * tau * (cp.sum_squares(r) / (2 * n) + lam * cp.sum(nu))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cp.Problem(cp.Minimize(obj), cons).solve(solver="CLARABEL", tol_gap_abs=1e-12,
                                           tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=500)
    return nu.value


@pytest.mark.parametrize("tau, eps, lam", [(0.1, 0.2, 0.05), (0.5, 0.1, 0.0)])
def test_dense_matches_cvxpy(tau, eps, lam):
    S, _, q, phi, y = bump_instance(N=10, n=3, s=0.8, seed=2)
    cost = cone_cost(S, RHO)
    ref = wfr_jko_step_dense(cost, q, phi, y, lam, tau, eps, RHO, rho_old=RHO - eps,
                             tol=1e-13, debias=True)
    assert np.abs(ref - cvx_debiased(cost, q, phi, y, lam, tau, eps, RHO, RHO - eps)).max() < 1e-6


def joint_objective(gam, nu, R, q, eps, w_target):
    """J_deb(γ, ν) with G = 0 and −ε·w·H(γ1) + (ε/2)H(γᵀ1) (ω = 1); w = ½ is ours."""
    def H(x):
        return np.sum(x * (np.log(x) - 1))

    def KL(a, b):
        return np.sum(a * np.log(a / b) - a + b)

    J = 0.0
    for c in range(2):
        p, col = gam[c].sum(1), gam[c].sum(0)
        J += eps * KL(gam[c], R[c]) - w_target * eps * H(p) + 0.5 * eps * H(col)
        J += RHO * KL(p, nu[c]) + (RHO - eps) * KL(col, q[c])
    return J


def test_objective_convex_along_segments():
    """J_deb(γ, ν) is jointly convex for every ε (the joint check of docs/MATH.md "WFR §7");
    the same check fails for a target weight w = 1.5 once ε(w − 1) > ρ."""
    rng = np.random.default_rng(5)
    N = 8
    S, _, q, _, _ = bump_instance(N=N, s=0.8)
    gaps = {(0.5, 0.1): [], (0.5, 10.0): [], (1.5, 10.0): []}  # (w, ε)
    for _ in range(200):
        # segments between plans concentrated on one column: where Σγ log γ − w·H(γ1)
        # is least convex (affine for w = 1 when γ = p ⊗ δ_l)
        ends = []
        for _ in range(2):
            gam = 1e-9 + np.zeros((2, N, N))
            gam[:, :, rng.integers(N)] += rng.random((2, N)) * 0.2
            ends.append((gam, rng.random((2, N)) + 0.05))
        mid = tuple(0.5 * (a + b) for a, b in zip(ends[0], ends[1], strict=True))
        for (w, eps), out in gaps.items():
            K = np.exp(-cone_cost(S, 20.0) / eps)  # a cost finite everywhere (R > 0)
            R = np.stack([K * (q[c] / K.sum(0))[None, :] for c in range(2)])
            vals = [joint_objective(g, v, R, q, eps, w) for g, v in (ends[0], mid, ends[1])]
            out.append(0.5 * (vals[0] + vals[2]) - vals[1])
    assert min(gaps[0.5, 0.1]) >= -1e-12 and min(gaps[0.5, 10.0]) >= -1e-12
    assert min(gaps[1.5, 10.0]) < -1e-3  # the check detects a non-convex objective


def test_no_transport_debiased_equals_standard():
    """C = 0 on the diagonal, +∞ elsewhere: the two entropy terms cancel (γ1 = γᵀ1), so
    the debiased step is the standard one (hence still the Hellinger JKO at ρ' = ρ − ε)."""
    S, _, q, phi, y = bump_instance(N=16, n=3, seed=1)
    cost = np.where(np.eye(16) > 0, 0.0, np.inf)
    for eps in (0.05, 0.3):
        args = (cost, q, phi, y, 0.02, 0.2, eps, RHO)
        std = wfr_jko_step_dense(*args, rho_old=RHO - eps, tol=1e-13)
        deb = wfr_jko_step_dense(*args, rho_old=RHO - eps, tol=1e-13, debias=True)
        assert np.abs(deb - std).max() <= 1e-12 * std.max()
        one = wfr_jko_step_dense(*args, rho_old=RHO - eps, tol=1e-13, debias=True,
                                 debias_source=False)
        assert np.abs(one - std).max() > 1e-3 * std.max()  # target-only: a spurious reaction


def moments(nu, d):
    m = nu.sum()
    mean = (nu * d).sum() / m
    return m, mean, (nu * (d - mean) ** 2).sum() / m


@pytest.mark.parametrize("s", [0.3, 0.5])
def test_zero_objective_variance_change_is_fisher_order(s):
    S, d, q, phi, y = bump_instance(s=s, data=False)
    rows = {}
    for eps in (0.01, 0.005):
        nu, _, diag = production(S, q, phi, y, 0.0, 0.1, eps)
        nu = np.asarray(nu)
        m0, _, v0 = moments(q[0], d)
        m1, _, v1 = moments(nu[0], d)
        std = wfr_jko_step_dense(cone_cost(S, RHO), q, phi, y, 0.0, 0.1, eps, RHO,
                                 rho_old=RHO - eps)
        rows[eps] = (v1 - v0, moments(std[0], d)[2] - v0, float(diag.mass_change))
    for eps, (dv, dv_std, dm) in rows.items():
        assert abs(dv_std / (eps / 2) - 1) < 0.02  # Peyré-type blur ε/2 (standard step)
        pred = eps**2 / (16 * s**2)  # the balanced Gaussian residual ε²/(16s²)
        assert 0.5 * pred < dv < 2.0 * pred  # measured 1.08 (s = 0.3), 1.24 (s = 0.5)
        assert abs(dm) < 0.1 * eps**2 / s**2  # mass: measured −ε²/(32s²)
    assert 3.5 < rows[0.01][0] / rows[0.005][0] < 4.5  # O(ε²)
    assert 3.5 < rows[0.01][2] / rows[0.005][2] < 4.5


def test_target_only_variant_leaks_mass_at_order_eps():
    """The target-only debias J − (ε/2)H_ω(γ1) is not ω-scale invariant and changes the
    mass by O(ε) per step with G = 0 (why the source term is there)."""
    S, _, q, phi, y = bump_instance(N=64, s=0.4, data=False)
    cost = cone_cost(S, RHO)
    for eps in (0.02, 0.01):
        kw = dict(rho_old=RHO - eps, tol=1e-12, debias=True)
        one = wfr_jko_step_dense(cost, q, phi, y, 0.0, 0.1, eps, RHO, debias_source=False, **kw)
        two = wfr_jko_step_dense(cost, q, phi, y, 0.0, 0.1, eps, RHO, **kw)
        assert abs(one.sum() / q.sum() - 1) > 0.3 * eps  # measured 0.9ε
        assert abs(two.sum() / q.sum() - 1) < 0.02 * eps
        two_w = wfr_jko_step_dense(cost, q, phi, y, 0.0, 0.1, eps, RHO, omega=np.full(64, 7.0),
                                   **kw)
        assert np.abs(two_w - two).max() <= 1e-10 * two.max()  # only ratios of ω matter


def test_force_moves_the_mean_as_the_standard_step():
    """ψ₊ = κ sin(θ − 0.3) (a force ≈ −κ on the bump at 0.3): the debiased and standard
    steps shift the mean direction alike; the variance change drops from ≈ ε/2 to O(ε²)."""
    S, d, q, phi, y = bump_instance(s=0.3, data=False)
    kappa, tau, eps = 0.5, 0.2, 0.01
    psi = np.stack([kappa * np.sin(d), np.zeros(N_)])
    nu = np.asarray(production(S, q, phi, y, 0.0, tau, eps, potential=psi)[0])
    std = wfr_jko_step_dense(cone_cost(S, RHO), q, phi, y, 0.0, tau, eps, RHO, potential=psi,
                             rho_old=RHO - eps)
    _, m0, v0 = moments(q[0], d)
    _, m_deb, v_deb = moments(nu[0], d)
    _, m_std, v_std = moments(std[0], d)
    # first-order flow: transport −κ cos θ plus the reaction's tilt −(4/ρ)κ Var
    flow = -tau * kappa * ((q[0] * np.cos(d)).sum() / q[0].sum() + (4 / RHO) * v0)
    assert abs(m_deb / flow - 1) < 0.05 and abs(m_std / flow - 1) < 0.05
    assert abs(m_deb / m_std - 1) < 0.01  # measured in docs/MATH.md "WFR §7"
    assert abs((v_std - v_deb) / (eps / 2) - 1) < 0.05  # only the blur ε/2 is removed


@pytest.mark.parametrize("eps", [0.005, 0.02, 0.1])
def test_kkt_residuals_of_the_returned_plan(eps):
    """Stationarity of J_deb in γ (rows and columns) and ν, from the returned (ν, g, a, b)."""
    S, _, q, phi, y = bump_instance(seed=3)
    lam, tau = 0.01, 0.2
    nu, state, diag = production(S, q, phi, y, lam, tau, eps)
    assert float(diag.marginal_error) <= 1e-12
    nu, g, la, lb = (np.asarray(x) for x in (nu, state.g, state.log_a, state.log_b))
    K = -cone_cost(S, RHO) / eps
    log_R = K[None] + (np.log(q) - logsumexp(K, axis=0))[:, None, :]
    log_gam = la[:, :, None] + log_R + lb[:, None, :]
    p, col = np.exp(logsumexp(log_gam, axis=2)), np.exp(logsumexp(log_gam, axis=1))
    phis = np.concatenate([phi, -phi], axis=1)
    g_nu = (phis @ nu.reshape(-1) - y) / len(y)
    u = (1 + (2 * tau / RHO) * (lam + phis.T @ g_nu)).reshape(2, -1)
    res = [
        np.abs(g - g_nu).max(),
        np.abs(p / u - nu).max() / nu.max(),  # ν-stationarity: ρ(1 − p/ν) + 2τ∇G = 0
        np.abs(eps * la + RHO * np.log(u) - 0.5 * eps * np.log(p)).max(),  # rows of γ
        np.abs(eps * lb + (RHO - eps) * np.log(col / q) + 0.5 * eps * np.log(col)).max(),
    ]
    assert max(res) <= 1e-9, res


def _wfr_raw(debias: bool):
    from support import tiny_raw

    raw = tiny_raw()
    eps = 1.5 * (2 * np.pi / 48) ** 2
    raw["methods"] = {"gd": {"h": 0.05},
                      "wfr_jko": {"tau": 0.1, "eps": eps, "n_dirs": 48, "debias": debias}}
    raw["metrics"].update(max_support=96)
    raw["init"]["law"] = "balanced"  # GD is then exactly a WFR flow (MATH.md "WFR")
    return raw


def test_config_sweep_axis_and_report_label(tmp_path):
    import yaml

    from mfjko.config import parse_config
    from mfjko.report import _verdict
    from mfjko.sweep import expand, load_sweep, resolve_point

    cfg = parse_config(_wfr_raw(True), "test")
    assert cfg.methods.wfr_jko.solver_options().debias is True
    assert parse_config(_wfr_raw(False), "test").methods.wfr_jko.solver_options().debias is False
    spec = {"name": "d", "base": _wfr_raw(False), "product": {"wfr_jko.debias": [False, True]}}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(spec))
    sweep = load_sweep(tmp_path / "d.yaml")
    flags = [resolve_point(sweep, p).methods.wfr_jko.debias for p in expand(sweep)]
    assert flags == [False, True]

    class Store:  # the two calls _verdict makes on a run store
        def has(self, path):
            return path == "wfr_jko/steps/drift_ratio"

        def get(self, path):
            return [0.95, 0.97]

    t = [0.0, 1.0, 2.0]
    series = {"gd": {"t": t, "loss": [1.0, 0.5, 0.25]},
              "wfr_jko": {"t": t, "loss": [1.0, 0.501, 0.251]}}
    cfg_doc = {"methods": {"wfr_jko": {"tau": 0.2, "eps": 0.03, "debias": True}}}
    assert _verdict(Store(), series, cfg_doc).startswith("wfr_jko (debiased step):")


def test_lattice_cold_start_converges_in_few_iterations():
    """ε = 1.5δ² (configs/wfr.yaml's regime), 40 % empty cells, a large residual and no
    warm start: log a's solution is far from g = 0's (±(ρ/ε)·(2τ/ρ)Φᵀg); started from the
    standard step (DEBIAS_START_TOL) the debiased step converges within 2× the standard's
    iterations (measured 49 vs 35; from g = 0 and q it took 485)."""
    S, _, q, phi, y = bump_instance()
    q = np.where(np.random.default_rng(1).random(q.shape) < 0.4, 0.0, q)
    eps = 1.5 * (2 * np.pi / N_) ** 2
    kernel = wfr_kernel(S, eps, RHO)
    its = []
    for opts in (WFRSolverOptions(), WFRSolverOptions(debias=True)):
        nu, _, diag = wfr_jko_step(kernel, q, phi, 10 * y, 0.01, 0.2, None, opts,
                                   rho_old=RHO - eps)
        assert bool(diag.converged) and np.all(np.isfinite(np.asarray(nu)))
        its.append(int(diag.sinkhorn_iterations))
    assert its[1] <= 2 * its[0], its


def test_debiased_wfr_jko_tracks_gd_on_binned_particles():
    """In process (the runner's version is the slow test below): ε = 1.5δ², N_ directions,
    60 balanced particles binned (199 of 256 cells empty), 4 steps from a cold start: every
    step converges and F stays within 0.5 % of GD's (balanced init: GD is the WFR flow;
    measured 0.30 %)."""
    import jax

    from mfjko import data, initial
    from mfjko.driver import drive
    from mfjko.methods.gd import GradientDescent
    from mfjko.methods.wfr_jko import WFRJKO
    from mfjko.problem import MeanFieldProblem

    ds = data.regression_1d(n_train=n_, n_test=10, seed=1)  # n_ points: the module's shapes
    prob = MeanFieldProblem.create("neuron", ds.X, ds.y, 0.01)
    theta0 = np.asarray(initial.sample_particles(initial.BalancedLaw(0.5), prob.param,
                                                 jax.random.PRNGKey(0), 60, ds.d))
    diags = []
    st = WFRJKO(tau=0.1, eps=1.5 * (2 * np.pi / N_) ** 2, n_dirs=N_,
                options=WFRSolverOptions(debias=True, on_failure="warn"),
                on_step=lambda k, t, nu, d: diags.append(d))
    tr = drive(st, prob, theta0, T=0.4, record_every=2)
    gd = drive(GradientDescent(h=0.05), prob, theta0, T=0.4, record_every=4)
    assert len(diags) == 4 and all(d["converged"] for d in diags)
    f, f_gd = np.asarray(tr.diagnostics["objective"]), np.asarray(gd.diagnostics["objective"])
    assert np.allclose(tr.t, gd.t) and np.all(np.isfinite(f))
    assert np.abs(f / f_gd - 1).max() < 5e-3


@pytest.mark.slow
def test_tiny_run_with_the_debiased_wfr_jko(tmp_path):
    import csv

    from mfjko.config import parse_config
    from mfjko.runner import run

    out = run(parse_config(_wfr_raw(True)), tmp_path / "run", progress=False, render=False)
    rows = {(r["method"], float(r["t"])): r for r in csv.DictReader(open(out / "metrics.csv"))}
    assert {m for m, _ in rows} == {"gd", "wfr_jko"}
    # balanced init: GD is the WFR flow (the standard step's gap at T: < 1 %, test_wfr_steppers)
    gap = abs(float(rows["wfr_jko", 0.4]["loss"]) / float(rows["gd", 0.4]["loss"]) - 1)
    assert gap < 0.01
