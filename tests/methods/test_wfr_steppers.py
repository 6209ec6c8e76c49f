"""The WFR steppers (methods/wfr_jko.py, methods/conic.py) against the functional API
(mfjko.grid_runs.run_wfr_jko, mfjko.particles.conic_gradient_descent), independent
references (dense plan, autodiff, Monte Carlo) and the runner.

- drive(WFRJKO) = run_wfr_jko and drive(ConicGD) = conic_gradient_descent, bit for bit;
- the conic view (the reported measure) has F = G(ν), the grid predictor, weights 1/(2N);
- a run resumed from saved arrays continues bit for bit;
- initial masses: binning keeps each sign's Σ|α|‖w‖/m; the law's lift = Monte Carlo;
- drift ratio and angular speed = the dense plan's barycentres and autodiff gradients;
- the directional measure (the direction_gap metric) sees only what a WFR scheme
  represents: invariant under rebalancing and splitting neurons, = ν/|ν| of the conic view;
- a tiny `mfjko run` with gd, langevin (D matched to wfr_jko), conic and wfr_jko, and its
  resume after an interruption inside wfr_jko; configs that cannot run fail early.
"""

import csv
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjko import data, initial
from mfjko import parametrizations as P
from mfjko.config import ConfigError, parse_config
from mfjko.driver import drive
from mfjko.grid_runs import run_wfr_jko
from mfjko.methods.conic import ConicGD
from mfjko.methods.wfr_jko import WFRJKO, conic_view, direction_spacing, initial_masses
from mfjko.metrics import direction_measure
from mfjko.particles import conic_gradient_descent
from mfjko.problem import MeanFieldProblem
from mfjko.runner import INTERRUPT_ENV, RunInterrupted, run
from mfjko.wfr import (
    circle_directions,
    cone_cost,
    conic_objective,
    direction_features,
    direction_speed,
    drift_ratio,
    lifted_objective,
    sphere_directions,
    wfr_jko_step,
    wfr_kernel,
)
from support import tiny_raw

LAM = 0.01
N = 48  # one direction count (and tiny_raw's data) everywhere: one compiled solver
EPS = 1.5 * (2 * math.pi / N) ** 2
DS = data.regression_1d(n_train=8, n_test=30, seed=1)  # tiny_raw's data


def _problem(name="neuron"):
    return MeanFieldProblem.create(name, DS.X, DS.y, LAM)


def _particles(name="neuron", m=60, seed=0, law=None):
    law = initial.GaussianLaw(0.5) if law is None else law
    return np.asarray(initial.sample_particles(law, P.get(name), jax.random.PRNGKey(seed), m,
                                               DS.d))


def _sign_masses(theta_n):
    w, a = theta_n[:, :-1], theta_n[:, -1]
    r = np.abs(a) * np.linalg.norm(w, axis=1) / len(a)
    return np.array([r[a > 0].sum(), r[a < 0].sum()])


@pytest.mark.parametrize("name", ["neuron", "sphere"])
def test_wfr_stepper_equals_functional_api_and_reports_the_conic_view(name):
    """drive(WFRJKO) and run_wfr_jko from the same binned masses: identical frames; the
    reported measure (2N balanced neurons) has F = G(ν) and the grid's predictor."""
    prob = _problem(name)
    theta0 = _particles(name)
    st = WFRJKO(tau=0.1, eps=EPS, n_dirs=N)
    tr = drive(st, prob, theta0, T=0.4, record_every=2)
    S = circle_directions(N)
    q0 = initial_masses(S, prob, theta0)
    ref = run_wfr_jko(S, q0, DS.X, DS.y, LAM, 0.1, EPS, 0.4, rho_old=2.0 - EPS, record_every=2,
                      param=name)
    state = tr.meta["state"]
    assert np.array_equal(np.asarray(state.nu).reshape(-1), ref.weights[-1])
    assert np.array_equal(tr.t, ref.t) and tr.meta["n_steps"] == 4
    for key in ("sinkhorn_iterations", "marginal_error", "mass_change"):
        assert np.array_equal(tr.diagnostics[key][1:], ref.diagnostics[key][1:]), key
    np.testing.assert_allclose(tr.diagnostics["objective"], ref.diagnostics["objective"],
                               rtol=1e-13)
    np.testing.assert_allclose(tr.diagnostics["mass_plus"], ref.diagnostics["mass_plus"],
                               rtol=1e-14)
    # the conic view of the final masses
    nu = np.asarray(state.nu)
    pts, w = conic_view(name, S, nu)
    assert pts.shape == (2 * N, DS.d + 1) and np.allclose(w, 1 / (2 * N))
    np.testing.assert_array_equal(pts, tr.support[-1])
    phi = direction_features(S, DS.X)
    G = lifted_objective(nu, phi, DS.y, LAM)
    assert float(prob.objective(jnp.asarray(pts), jnp.asarray(w))) == pytest.approx(G, rel=1e-13)
    np.testing.assert_allclose(np.asarray(prob.predict(jnp.asarray(pts), jnp.asarray(w))),
                               phi @ (nu[0] - nu[1]), rtol=1e-12, atol=1e-14)
    assert np.all(np.abs(pts[:, -1]) <= np.sqrt(2 * N * nu.max()) * (1 + 1e-12)
                  if name == "neuron" else np.abs(pts[:, -1]) <= 2 * N * nu.max() * (1 + 1e-12))
    # the stratified order: the first half of the rows covers both signs and every other
    # direction block
    assert set(np.sign(pts[:N, -1][pts[:N, -1] != 0])) == {-1.0, 1.0}
    assert 0.3 < tr.diagnostics["drift_ratio"][-1] < 1.5


def test_wfr_stepper_resumes_bit_for_bit():
    prob = _problem()
    theta0 = _particles()
    st = WFRJKO(tau=0.1, eps=EPS, n_dirs=N)
    full = drive(st, prob, theta0, T=0.4, record_every=1, objective=False)
    half = drive(st, prob, theta0, T=0.2, record_every=1, objective=False)
    arrays = st.save(half.meta["state"])
    assert set(arrays) == {"nu", "k", "g", "log_a", "log_b"}
    rest = drive(st, prob, None, T=0.2, record_every=1, t0=0.2, record_initial=False,
                 state=st.restore(prob, arrays), objective=False)
    assert np.array_equal(rest.support[-1], full.support[-1])
    assert np.array_equal(np.asarray(rest.meta["state"].solver.g),
                          np.asarray(full.meta["state"].solver.g))
    assert rest.t[-1] == pytest.approx(0.4) and rest.meta["state"].k == 4


def test_initial_masses_binning_and_law_lift():
    """Binning keeps each sign's mass Σ|α|‖w‖/m exactly; the closed-form lift of the
    Gaussian and balanced laws (E|α|‖w‖ per unit, half per sign, uniform in direction)
    equals a Monte-Carlo estimate from 10⁵ neurons to 3 standard errors."""
    prob = _problem()
    theta0 = _particles(m=500, seed=3)
    S = circle_directions(N)
    q = initial_masses(S, prob, theta0)
    np.testing.assert_allclose(q.sum(axis=1), _sign_masses(theta0), rtol=1e-13)
    # each particle sits at its nearest direction
    s = theta0[:, :-1] / np.linalg.norm(theta0[:, :-1], axis=1, keepdims=True)
    i = np.argmax(np.abs(theta0[:, -1]))
    k = np.argmax(s[i] @ S.T)
    assert q[0 if theta0[i, -1] > 0 else 1, k] >= np.abs(theta0[i, -1]) * np.linalg.norm(
        theta0[i, :-1]) / 500 - 1e-15
    rng = np.random.default_rng(7)
    for law, d in ((initial.GaussianLaw(0.5), 2), (initial.GaussianLaw(0.3), 4),
                   (initial.BalancedLaw(0.7), 3)):
        Sd = sphere_directions(d, 40, steps=5)
        pd = MeanFieldProblem.create("neuron", np.ones((3, d)), np.zeros(3), LAM)
        lift = initial_masses(Sd, pd, None, law=law, mode="law")
        assert np.allclose(lift, lift[0, 0])
        W = law.scale * rng.normal(size=(100_000, d))  # NumPy draws of the laws' definitions
        a = np.linalg.norm(W, axis=1) if isinstance(law, initial.BalancedLaw) \
            else law.scale * rng.normal(size=100_000)
        r = np.abs(a) * np.linalg.norm(W, axis=1)
        assert abs(lift.sum() - r.mean()) < 3 * r.std() / math.sqrt(len(r))
    with pytest.raises(ValueError, match="law"):
        initial_masses(S, prob, theta0, law=None, mode="law")


def test_drift_ratio_and_speed_equal_the_dense_plan_and_autodiff():
    """The log-domain barycentres of the step's plan γ_± = diag(a) R_± diag(b) equal the
    dense plan's; ∇_S G′ from jax.grad of G′(s) projected on the tangent space."""
    prob = _problem()
    S = circle_directions(N)
    q = initial_masses(S, prob, _particles(m=200, seed=5))
    tau = 0.1
    k = wfr_kernel(S, EPS, 2.0)
    phi = direction_features(S, DS.X)
    _, state, _ = wfr_jko_step(k, q, phi, DS.y, LAM, tau, rho_old=2.0 - EPS)
    a = np.exp(np.asarray(state.log_a))
    K = np.exp(-cone_cost(S, 2.0) / EPS)
    bary = np.stack([(K * a[c][:, None]).T @ S / (K * a[c][:, None]).sum(0)[:, None]
                     for c in range(2)])  # (2, N, d), b and q/Z cancel per column
    disp2 = ((bary - S[None]) ** 2).sum(-1)
    r = phi @ (q[0] - q[1]) - DS.y

    def g_prime(s):
        return jnp.mean(r * jnp.maximum(jnp.asarray(DS.X) @ s, 0.0))

    grad = np.asarray(jax.vmap(jax.grad(g_prime))(jnp.asarray(S)))
    tang = grad - (grad * S).sum(1, keepdims=True) * S
    speed = np.sqrt(((q[0] + q[1]) * (tang**2).sum(1)).sum() / q.sum())
    assert float(direction_speed(jnp.asarray(S), jnp.asarray(q), DS.X, DS.y)) == \
        pytest.approx(speed, rel=1e-12)
    ref = np.sqrt((q * disp2).sum() / q.sum()) / (tau * speed)
    got = float(drift_ratio(k, jnp.asarray(S), jnp.asarray(q), state.log_a, DS.X, DS.y, tau))
    assert got == pytest.approx(ref, rel=1e-8)
    assert 0.3 < got < 1.5
    assert direction_spacing(S) == pytest.approx(2 * math.pi / N, rel=1e-9)


def test_direction_measure_is_lift_free():
    """Rebalancing (w, α) → (cw, α/c) and splitting a neuron in two leave the directional
    measure unchanged; it is ν/|ν| on (s_k, ±1) for the conic view of ν."""
    theta = _particles(m=30, seed=4)
    pts, w = direction_measure("neuron", theta, np.full(30, 1 / 30))
    assert pts.shape == (30, 3) and w.sum() == pytest.approx(1.0, abs=1e-15)
    c = np.exp(np.random.default_rng(0).normal(size=30))[:, None]
    rebalanced = np.c_[theta[:, :-1] * c, theta[:, -1] / c[:, 0]]
    split = np.concatenate([rebalanced, rebalanced])
    p2, w2 = direction_measure("neuron", split, np.full(60, 1 / 60))
    np.testing.assert_allclose(p2[::2], pts, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(p2[1::2], pts, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(w2[::2] + w2[1::2], w, rtol=1e-12)
    S = circle_directions(N)
    nu = np.random.default_rng(1).random((2, N))
    nu[0, :5] = 0.0  # massless points are dropped
    for name in ("neuron", "sphere"):
        pts, w = direction_measure(name, *conic_view(name, S, nu))
        ref = {(round(float(np.arctan2(p[1], p[0])), 9), p[2]): wi for p, wi in zip(pts, w,
                                                                                   strict=True)}
        assert len(ref) == 2 * N - 5
        for k in range(N):
            for c_, sign in ((0, 1.0), (1, -1.0)):
                if nu[c_, k] > 0:
                    key = (round(float(np.arctan2(S[k, 1], S[k, 0])), 9), sign)
                    assert ref[key] == pytest.approx(nu[c_, k] / nu.sum(), rel=1e-12)
    with pytest.raises(ValueError, match="neuron or sphere"):
        direction_measure("pm", theta, np.full(30, 1 / 30))


@pytest.mark.parametrize("name", ["neuron", "sphere"])
def test_conic_stepper_equals_conic_gradient_descent(name):
    """drive(ConicGD) = conic_gradient_descent on the projected particles, bit for bit; the
    ``neuron`` view is the balanced neurons (√r s, ±√r), whose F is the conic G."""
    prob = _problem(name)
    theta0 = _particles(name, m=40, seed=2)
    st = ConicGD(h=0.02)
    tr = drive(st, prob, theta0, T=0.4, record_every=5)
    conic0 = np.asarray(P.get("sphere").from_classic(theta0[:, :-1], theta0[:, -1])) \
        if name == "neuron" else theta0
    ref = conic_gradient_descent(conic0, DS.X, DS.y, LAM, 0.02, 0.4, record_every=5)
    assert np.array_equal(np.asarray(tr.meta["state"].theta), ref.support[-1])
    np.testing.assert_allclose(tr.diagnostics["objective"], ref.diagnostics["objective"],
                               rtol=1e-13)
    if name == "neuron":
        w, a = tr.support[-1][:, :-1], tr.support[-1][:, -1]
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), np.abs(a), rtol=1e-13)
        # the initial measure predicts exactly as GD's particles (projection is exact)
        f0 = prob.predict(jnp.asarray(theta0), jnp.full(40, 1 / 40))
        np.testing.assert_allclose(prob.predict(jnp.asarray(tr.support[0]), jnp.full(40, 1 / 40)),
                                   f0, rtol=1e-13, atol=1e-15)
    G = float(conic_objective(jnp.asarray(ref.support[-1]), DS.X, DS.y, LAM))
    assert tr.diagnostics["objective"][-1] == pytest.approx(G, rel=1e-13)
    assert 0 < tr.diagnostics["min_mass_factor"][-1] < 1
    big = theta0.copy()
    big[:, -1] *= 1e4  # huge masses: 1 − 2hG′ < 0 at h = 1
    with pytest.raises(ValueError, match="reduce"):
        drive(ConicGD(h=1.0), prob, big, T=1.0, record_every=1)
    with pytest.raises(ValueError, match="parametrization"):
        ConicGD().init(_problem("pm"), np.ones((3, 2 * DS.d)))


def _wfr_raw():
    raw = tiny_raw()
    raw["methods"] = {"gd": {"h": 0.05},
                      "langevin": {"h": 0.05, "match_jko": True, "m": 400, "seeds": 2},
                      "conic": {"h": 0.05},
                      "wfr_jko": {"tau": 0.1, "eps": EPS, "n_dirs": N}}
    raw["metrics"].update(max_support=2 * N, measure_gap="final")
    raw["init"]["law"] = "balanced"  # GD is then exactly a WFR flow (MATH.md "WFR")
    return raw


def test_config_checks():
    cfg = parse_config(_wfr_raw())
    assert cfg.langevin_D() == pytest.approx(EPS / 0.4)
    assert cfg.methods.enabled() == ["gd", "langevin", "conic", "wfr_jko"]
    assert cfg.methods.wfr_jko.stepper().rho_prime == pytest.approx(2.0 - EPS)
    for param in ("signed", "pm"):
        raw = _wfr_raw()
        raw["model"]["parametrization"] = param
        with pytest.raises(ConfigError, match="parametrization"):
            parse_config(raw)
    raw = _wfr_raw()
    raw["methods"]["wfr_jko"]["eps"] = 3.0
    with pytest.raises(ConfigError, match="rho_old"):
        parse_config(raw)


@pytest.mark.slow
def test_runner_rows_and_resume_inside_wfr(tmp_path, monkeypatch):
    """A tiny run (balanced init) with gd, Langevin at the WFR's D, conic and wfr_jko: rows
    for every record, exact t = 0 predictors and F (GD and conic start from ν₀'s conic
    view), small gaps at T, and a run interrupted inside wfr_jko resumes to the same
    metrics.csv bytes."""
    cfg = parse_config(_wfr_raw())
    full = run(cfg, tmp_path / "full", progress=False, render=False)
    rows = list(csv.DictReader(open(full / "metrics.csv")))
    assert [r["method"] for r in rows] == sum(([m] * 3 for m in
                                              ("gd", "langevin", "conic", "wfr_jko")), [])
    by = {(r["method"], float(r["t"])): r for r in rows}
    for m in ("conic", "wfr_jko"):
        assert float(by[m, 0.0]["pred_gap"]) < 1e-14
        assert float(by[m, 0.0]["loss_gap"]) <= 1e-9 * float(by["gd", 0.0]["loss"])
        assert float(by[m, 0.0]["loss_gap_floor"]) == 0.0  # deterministic, both
    for m in ("conic", "wfr_jko"):
        for t in (0.0, 0.2, 0.4):
            r = by[m, t]
            assert float(r["loss"]) >= float(r["F_star"]) - 1e-12 and r["edge_mass"] == ""
        assert float(by[m, 0.4]["measure_gap"]) >= 0 and by[m, 0.0]["measure_gap"] == ""
    # balanced init: GD is the WFR flow; conic GD is GD up to O(h) (measured: direction gap
    # 3.2e-4, measure gap 1.9e-6); the WFR grid adds its discretization (direction gap 7.6e-3)
    assert float(by["conic", 0.4]["direction_gap"]) < 2e-3
    assert float(by["conic", 0.4]["measure_gap"]) < 1e-4
    assert float(by["wfr_jko", 0.4]["direction_gap"]) < 0.03
    assert float(by["wfr_jko", 0.4]["loss_gap"]) < 0.01 * float(by["gd", 0.4]["loss"])
    assert float(by["wfr_jko", 0.4]["loss"]) < float(by["wfr_jko", 0.0]["loss"])
    out = tmp_path / "interrupted"
    monkeypatch.setenv(INTERRUPT_ENV, "7")  # 2 intervals each of gd, langevin, conic, then 1
    with pytest.raises(RunInterrupted):
        run(cfg, out, progress=False, render=False)
    monkeypatch.delenv(INTERRUPT_ENV)
    run(cfg, out, resume=True, progress=False, render=False)
    assert (out / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()
