"""Matched mean-field references: GD of weighted particles (the grid's own initial measure)
and Langevin as S seeds with their standard error (docs/STUDY.md "References"); implicit
(and frobenius) and conic steps of weighted particles; w2 and sliced refuse them."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjko import data, methods, metrics
from mfjko import parametrizations as P
from mfjko.config import ConfigError, parse_config
from mfjko.driver import drive
from mfjko.methods.base import WeightedParticles
from mfjko.methods.conic import ConicGD
from mfjko.methods.gd import GradientDescent
from mfjko.methods.implicit import ImplicitSteps
from mfjko.methods.langevin import Langevin, seed_statistics
from mfjko.objective import velocity
from mfjko.problem import MeanFieldProblem
from mfjko.runner.setup import prepare
from support import tiny_raw


@pytest.fixture(scope="module")
def problem():
    ds = data.regression_1d(n_train=12, seed=3)
    return MeanFieldProblem.create(P.get("neuron"), ds.X, ds.y, 0.01)


def _final(stepper, problem, initial, T=0.5):
    traj = drive(stepper, problem, initial, T=T, record_every=10)
    return traj.support[-1], traj.weights


def test_weighted_gd_equals_uniform_gd_of_the_duplicated_particles(problem):
    # weights 2/5, 1/5, 2/5 = five uniform particles with the first and last doubled: the
    # same measure, so the same mean-field GD (an independent path: no weights at all)
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, 3)))
    w = np.array([0.4, 0.2, 0.4])
    dup = theta[[0, 0, 1, 2, 2]]
    gd = GradientDescent(h=0.01)
    th_w, w_out = _final(gd, problem, WeightedParticles(theta, w))
    th_u, _ = _final(gd, problem, dup)
    np.testing.assert_allclose(th_w, th_u[[0, 2, 3]], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(w_out, w)  # masses are carried, never changed


def test_uniform_weights_reproduce_plain_gd_exactly(problem):
    # 5 particles: the shape of the duplicated run above (one compiled GD program)
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 3)))
    gd = GradientDescent(h=0.02)
    a, _ = _final(gd, problem, theta)
    b, _ = _final(gd, problem, WeightedParticles(theta, np.full(5, 1 / 5)))
    np.testing.assert_array_equal(a, b)


def test_methods_without_weights_refuse_weighted_particles(problem):
    for name in ("w2", "sliced"):
        stepper = methods.get(name).stepper(h=0.05)
        with pytest.raises(ValueError, match="uniform particles"):
            stepper.init(problem, WeightedParticles(np.zeros((2, 3)), np.array([0.5, 0.5])))


def test_weighted_implicit_steps_solve_the_measures_backward_euler_equation(problem):
    """Weights 2/5, 1/5, 1/5, 1/5, 0 on (a, b, c, d, e) = uniform 1/5 on (a, a, b, c, d): the
    same measure (e, of mass 0, is a test particle), so the same implicit steps; and every
    particle meets (θ − θ_k)/h = −∇F′(μ)(θ) with μ = Σ p_i δ_{θ_i} the measure after the
    step. m·D = 15 > n = 12: the Woodbury path of the Newton solve (the grids' one)."""
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (5, 3)))
    w = np.array([0.4, 0.2, 0.2, 0.2, 0.0])
    step = ImplicitSteps(h=0.05)
    a, w_out = _final(step, problem, WeightedParticles(theta, w), T=0.2)
    b, _ = _final(step, problem, WeightedParticles(theta[[0, 0, 1, 2, 3]], np.full(5, 0.2)),
                  T=0.2)
    np.testing.assert_allclose(a[:4], b[[0, 2, 3, 4]], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(w_out, w)
    one, _ = _final(step, problem, WeightedParticles(theta, w), T=0.05)
    v = velocity(problem.param, jnp.asarray(one), jnp.asarray(w), problem.X, problem.y,
                 problem.lam)
    np.testing.assert_allclose((one - theta) / 0.05, np.asarray(v), rtol=0, atol=1e-9)
    assert np.abs(one - theta).max() > 1e-3  # the particles moved


def test_weighted_conic_gd_is_conic_gd_of_the_duplicated_particles(problem):
    # a weighted particle of mass p is a conic particle with β scaled by m·p: weights 2/5,
    # 1/5, 2/5 and five uniform particles with the first and last doubled give one measure
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (3, 3)))
    w = np.array([0.4, 0.2, 0.4])
    conic = ConicGD(h=0.02)
    a = drive(conic, problem, WeightedParticles(theta, w), T=0.2, record_every=5)
    b = drive(conic, problem, theta[[0, 0, 1, 2, 2]], T=0.2, record_every=5)
    np.testing.assert_allclose(a.diagnostics["objective"], b.diagnostics["objective"],
                               rtol=1e-12)
    for k in range(len(a.t)):
        fa = problem.predict(jnp.asarray(a.support[k]), jnp.asarray(a.weights))
        fb = problem.predict(jnp.asarray(b.support[k]), jnp.asarray(b.weights))
        np.testing.assert_allclose(np.asarray(fa), np.asarray(fb), rtol=0, atol=1e-13)
    s_a = a.support[-1][:, :-1] / np.linalg.norm(a.support[-1][:, :-1], axis=1, keepdims=True)
    s_b = b.support[-1][:, :-1] / np.linalg.norm(b.support[-1][:, :-1], axis=1, keepdims=True)
    np.testing.assert_allclose(s_a, s_b[[0, 2, 3]], rtol=0, atol=1e-13)


def test_langevin_seeds_are_independent_copies_with_their_standard_error(problem):
    m, S, D = 50, 3, 0.05
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (S * m, 3))) * 0.5
    many = Langevin(h=0.01, diffusion=D, key=7, seeds=S)
    one = Langevin(h=0.01, diffusion=D, key=7, seeds=1)
    th_many, _ = _final(many, problem, theta, T=0.2)
    th_one, _ = _final(one, problem, theta[:m], T=0.2)
    # seed 0 of an S-seed run is the one-seed run (same key, same particles)
    np.testing.assert_allclose(th_many[:m], th_one, rtol=0, atol=1e-13)
    # the other seeds are different systems (their own noise)
    assert np.abs(th_many[m:2 * m] - theta[m:2 * m]).max() > 0
    # the recorded standard error is std/√S of the seeds' F, computed independently here
    state = many.init(problem, th_many)
    per_seed = [float(problem.objective(th_many[s * m:(s + 1) * m], np.full(m, 1 / m)))
                for s in range(S)]
    figures = many.record_diagnostics(state)
    assert figures["loss_se"] == pytest.approx(np.std(per_seed, ddof=1) / math.sqrt(S),
                                               rel=1e-10)
    assert figures["pred_se"] > 0
    assert math.isnan(seed_statistics([1.0])[1])


def test_langevin_refuses_particles_that_do_not_split_into_seeds(problem):
    with pytest.raises(ValueError, match="do not split"):
        Langevin(h=0.01, seeds=3).init(problem, np.zeros((10, 3)))


def _setup(f_star=True, **methods_cfg):
    raw = tiny_raw()
    raw["methods"].update(methods_cfg)
    raw["metrics"]["f_star"] = f_star
    return prepare(parse_config(raw))


def test_grid_particles_have_the_grids_F_and_frozen_mass_on_odd_grids():
    s = _setup()
    wp = s.grid_particles()
    assert float(s.problem.measure_objective(wp.points, wp.weights)) == pytest.approx(
        float(s.grid.objective(s.p0)), rel=1e-12)
    # 7³ grid on [-2, 2]³: the 7 points with w = 0 are dead neurons (σ(0) = σ'(0) = 0)
    dead = np.all(np.asarray(wp.points)[:, :2] == 0, axis=1)
    assert dead.sum() == 7 and s.frozen_mass == pytest.approx(wp.weights[dead].sum())
    assert s.frozen_mass > 0
    traj = drive(GradientDescent(h=0.05), s.problem, wp, T=0.5, record_every=10)
    np.testing.assert_array_equal(traj.support[-1][dead, :2], 0.0)  # they stay at w = 0
    even = tiny_raw()
    even["methods"]["jko"]["grid"]["sizes"] = [6] * 3
    s_even = prepare(parse_config(even))
    s_even.grid_particles()
    assert s_even.frozen_mass == 0.0


def test_reference_init_resolution():
    s = _setup()
    assert s.reference_init("gd", "auto") == "grid"
    assert isinstance(s.initial_of("gd"), WeightedParticles)
    assert s.reference_init("gd", "particles") == "particles"
    # Langevin: S·m particles drawn from the grid's atoms
    lang = s.initial_of("langevin")
    assert lang.shape == (800, 3)
    grid_pts = {tuple(p) for p in np.asarray(s.geom.points)}
    assert all(tuple(p) in grid_pts for p in lang[:50])
    with pytest.raises(ConfigError, match="uniform particles only"):
        s.reference_init("w2", "grid")
    raw = tiny_raw()
    del raw["methods"]["jko"]
    raw["methods"]["langevin"] = {"h": 0.05, "D": 0.01, "m": 100, "seeds": 2}
    s2 = prepare(parse_config(raw))
    assert s2.reference_init("gd", "auto") == "particles"
    with pytest.raises(ConfigError, match="needs a grid method: jko"):
        s2.grid_particles()
    assert s2.initial_of("langevin").shape == (200, 3)


def test_grid_particle_gd_follows_the_grid_measure_at_t0():
    s = _setup()
    wp = s.grid_particles()
    f_grid = np.asarray(s.grid.phi @ jnp.asarray(s.p0))
    f_part = np.asarray(s.problem.predict(wp.points, wp.weights))
    np.testing.assert_allclose(f_part, f_grid, rtol=0, atol=1e-14)


def test_setup_doc_states_where_every_reference_starts():
    from mfjko.runner.run import setup_doc

    raw = tiny_raw()
    raw["methods"]["langevin"]["init"] = "grid"  # sampled from p0: not a weighted method
    raw["methods"]["gd"]["init"] = "grid"
    doc = setup_doc(prepare(parse_config(raw)))
    assert doc["reference_init"] == "gd: grid, langevin: grid (sampled)"
    assert doc["grid_reference_frozen_mass"] > 0
    raw["methods"]["gd"]["init"] = "particles"
    raw["methods"]["langevin"]["init"] = "particles"
    doc = setup_doc(prepare(parse_config(raw)))
    assert doc["reference_init"] == "gd: particles, langevin: particles (sampled)"


def _sphere_setup(**methods_cfg):
    raw = tiny_raw()
    raw["model"]["parametrization"] = "sphere"
    raw["methods"]["jko"]["grid"] = {"kind": "sphere_line", "n_dirs": 12,
                                     "beta_range": [-2.0, 2.0], "n_beta": 9}
    raw["methods"].update(methods_cfg)
    raw["metrics"]["f_star"] = False
    return prepare(parse_config(raw))


def _start_F(setup, name):
    """F of the measure method ``name`` starts from (its stepper's own view of it)."""
    stepper = methods.get(name).build(getattr(setup.cfg.methods, name), setup)
    state = stepper.init(setup.problem, setup.initial_of(name))
    pts, w = stepper.measure(state)
    return float(setup.problem.measure_objective(pts, w)), pts, w


def test_weighted_particle_measure_gap_compresses_the_measure_as_gds(monkeypatch):
    """A weighted particle method's measure gap compares its measure compressed as GD's is
    (not its first max_support particles): at t = 0 implicit's measure is GD's, so the two
    measures handed to the Sinkhorn divergence are the same."""
    s = _setup(f_star=False, implicit={"h": 0.05})
    wp = s.grid_particles()
    pts, w = np.asarray(wp.points), np.asarray(wp.weights)
    assert len(w) > s.cfg.metrics.max_support
    seen = []
    monkeypatch.setattr(metrics, "sinkhorn_divergence", lambda *a, **k: seen.append(a) or 0.0)
    ctx = metrics.RowContext("implicit", "particles", 0, 0.0, pts, w, {},
                             {"support": pts, "weights": w}, s.cfg.metrics, s.param.cost_kind)
    metrics._measure_gap(ctx)
    x, a, y, b = seen[-1][:4]
    assert len(a) <= s.cfg.metrics.max_support
    np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a, b)


def test_implicit_frobenius_and_conic_start_from_the_grids_measure():
    """init: auto → grid for implicit, frobenius and conic: F(0) is the grid's F(p0) (conic on
    ``neuron``: its balanced projection, same predictor, F(0) lower by the imbalance); w2
    and sliced stay on sampled particles and ``init: grid`` is a ConfigError for them."""
    peers = {"implicit": {"h": 0.05}, "frobenius": {"h": 0.05}, "w2": {"h": 0.05},
             "sliced": {"h": 0.05}}
    s = _setup(f_star=False, **peers, conic={"h": 0.05})
    F_grid = float(s.grid.objective(s.p0))
    for name in ("implicit", "frobenius"):
        assert s.reference_init(name, "auto") == "grid" and s.starts_on_grid(name)
        assert _start_F(s, name)[0] == pytest.approx(F_grid, rel=1e-12)
    for name in ("w2", "sliced"):
        assert s.reference_init(name, "auto") == "particles"
        with pytest.raises(ConfigError, match=f"methods.{name}.init: grid: .*init: particles"):
            s.reference_init(name, "grid")
    F_conic, pts, w = _start_F(s, "conic")
    f_grid = np.asarray(s.grid.phi @ jnp.asarray(s.p0))
    f_conic = np.asarray(s.problem.predict(jnp.asarray(pts), jnp.asarray(w)))
    np.testing.assert_allclose(f_conic, f_grid, rtol=0, atol=1e-14)
    # F(0) lower by the imbalance (λ/2) Σ p_i (‖w_i‖ − |α_i|)² the projection removes
    wp = s.grid_particles()
    pts0 = np.asarray(wp.points)
    gap = 0.5 * s.cfg.model.lam * np.sum(
        wp.weights * (np.linalg.norm(pts0[:, :-1], axis=1) - np.abs(pts0[:, -1])) ** 2)
    assert gap > 0 and F_grid - F_conic == pytest.approx(gap, rel=1e-9)
    sphere = _sphere_setup(conic={"h": 0.05}, implicit={"h": 0.05})
    F_sphere = float(sphere.grid.objective(sphere.p0))
    for name in ("conic", "implicit"):
        assert sphere.reference_init(name, "auto") == "grid"
        F0, pts, w = _start_F(sphere, name)
        assert F0 == pytest.approx(F_sphere, rel=1e-12)
        # ``sphere``: the weighted particles themselves (conic: β′/(m p) = β to rounding)
        wp = sphere.grid_particles()
        np.testing.assert_allclose(pts, wp.points, rtol=1e-14, atol=0)
        np.testing.assert_array_equal(w, wp.weights)


WFR_N = 48


def _wfr_setup(param="neuron", **methods_cfg):
    """tiny_raw's problem with wfr_jko (N = 48 directions, as tests/methods/test_wfr_steppers)
    instead of jko: the run's grid measure is the WFR's ν₀."""
    raw = tiny_raw()
    raw["model"]["parametrization"] = param
    raw["methods"] = {"gd": {"h": 0.05},
                      "langevin": {"h": 0.05, "match_jko": True, "m": 400, "seeds": 2},
                      "conic": {"h": 0.05},
                      "wfr_jko": {"tau": 0.1, "eps": 1.5 * (2 * math.pi / WFR_N) ** 2,
                                  "n_dirs": WFR_N}, **methods_cfg}
    raw["init"]["law"] = "balanced"
    raw["metrics"]["f_star"] = False
    return prepare(parse_config(raw))


@pytest.mark.parametrize("param", ["neuron", "sphere"])
def test_wfr_run_references_start_from_the_wfr_measure(param):
    """Without a jko grid, init: auto → grid starts GD and conic from ν₀'s conic view (its
    nonempty cells): F(0) and f(0) are the WFR JKO's (its stepper's own measure), every
    atom is one binned cell of the run's particles with its mass, none sits at w = 0; the
    WFR and GD are deterministic references, Langevin draws these atoms; init: particles
    keeps the sampled θ0."""
    s = _wfr_setup(param)
    assert s.grid is None and s.reference_grid == "wfr_jko"
    F_wfr, pts_w, w_w = _start_F(s, "wfr_jko")
    f_wfr = np.asarray(s.problem.predict(jnp.asarray(pts_w), jnp.asarray(w_w)))
    for name in ("gd", "conic"):
        assert s.reference_init(name, "auto") == "grid" and s.starts_on_grid(name)
        F0, pts, w = _start_F(s, name)
        assert F0 == pytest.approx(F_wfr, rel=1e-9)
        f0 = np.asarray(s.problem.predict(jnp.asarray(pts), jnp.asarray(w)))
        np.testing.assert_allclose(f0, f_wfr, rtol=0, atol=1e-13)
    assert s.starts_on_grid("wfr_jko") and not s.starts_on_grid("langevin")
    # the atoms: each nonempty (direction, sign) cell of the binned particles, mass K·ν
    wp = s.grid_particles()
    pts, w = np.asarray(wp.points), np.asarray(wp.weights)
    S = s.cfg.methods.wfr_jko.stepper().directions(s.d)
    theta = s.theta0 if param == "sphere" else np.asarray(
        P.get("sphere").from_classic(s.theta0[:, :-1], s.theta0[:, -1]))
    nu = np.zeros((2, WFR_N))  # binned here by angle, independently of bin_particles
    k = np.round(np.mod(np.arctan2(theta[:, 1], theta[:, 0]), 2 * np.pi) / (2 * np.pi / WFR_N))
    np.add.at(nu, (np.where(theta[:, -1] > 0, 0, 1), k.astype(int) % WFR_N),
              np.abs(theta[:, -1]) / len(theta))
    K = int((nu > 0).sum())
    assert len(w) == K < 2 * WFR_N and np.all(w == 1 / K) and s.dropped_mass == 0.0
    head, last = pts[:, :-1], pts[:, -1]
    r = np.abs(last) * (np.linalg.norm(head, axis=1) if param == "neuron" else 1.0)
    s_dir = head / np.linalg.norm(head, axis=1, keepdims=True)
    cell = np.argmax(s_dir @ S.T, axis=1)
    np.testing.assert_allclose(np.sort(r / K), np.sort(nu[nu > 0]), rtol=1e-12)
    np.testing.assert_allclose(r / K, nu[np.where(last > 0, 0, 1), cell], rtol=1e-12)
    assert s.frozen_mass == 0.0 and np.all(np.linalg.norm(head, axis=1) > 0)
    atoms = {tuple(p) for p in pts}
    lang = s.initial_of("langevin")
    assert lang.shape == (800, 3) and all(tuple(p) in atoms for p in lang[:50])
    assert s.sample_source("auto") == "grid"
    s2 = _wfr_setup(param, gd={"h": 0.05, "init": "particles"})
    assert s2.reference_init("gd", "particles") == "particles"
    np.testing.assert_array_equal(s2.initial_of("gd"), s2.theta0)
    assert not s2.starts_on_grid("gd")


def test_a_jko_grid_keeps_priority_over_wfr_and_auto_falls_back(monkeypatch):
    """With both jko and wfr_jko the references start from jko's p0 (the WFR from its binned
    particles, not a reference start); a WFR measure whose particles miss G(ν₀) makes
    init: auto fall back to the sampled particles (init: grid raises)."""
    from mfjko.methods.wfr_jko import WFRJKOConfig

    both = _setup(f_star=False, wfr_jko={"tau": 0.1, "eps": 0.05, "n_dirs": WFR_N})
    assert both.reference_grid == "jko" and not both.starts_on_grid("wfr_jko")
    assert _start_F(both, "gd")[0] == pytest.approx(float(both.grid.objective(both.p0)),
                                                    rel=1e-12)
    real = WFRJKOConfig.initial_particles
    monkeypatch.setattr(WFRJKOConfig, "initial_particles",
                        lambda self, *a: (real(self, *a)[0], 1.0))  # a wrong F(0)
    s = _wfr_setup()
    assert s.reference_init("gd", "auto") == "particles"
    assert not s.starts_on_grid("gd") and s.initial_of("gd") is s.theta0
    with pytest.raises(ConfigError, match="wfr_jko grid's initial measure"):
        s.grid_particles()
