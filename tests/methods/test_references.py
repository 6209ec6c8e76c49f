"""Matched mean-field references: GD of weighted particles (the grid's own initial measure)
and Langevin as S seeds with their standard error (docs/STUDY.md "References")."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjko import data, methods
from mfjko import parametrizations as P
from mfjko.config import ConfigError, parse_config
from mfjko.driver import drive
from mfjko.methods.base import WeightedParticles
from mfjko.methods.gd import GradientDescent
from mfjko.methods.langevin import Langevin, seed_statistics
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
    theta = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (40, 3)))
    gd = GradientDescent(h=0.02)
    a, _ = _final(gd, problem, theta)
    b, _ = _final(gd, problem, WeightedParticles(theta, np.full(40, 1 / 40)))
    np.testing.assert_array_equal(a, b)


def test_methods_without_weights_refuse_weighted_particles(problem):
    stepper = methods.get("implicit").stepper(h=0.05)
    with pytest.raises(ValueError, match="uniform particles"):
        stepper.init(problem, WeightedParticles(np.zeros((2, 3)), np.array([0.5, 0.5])))


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


def _setup(**methods_cfg):
    raw = tiny_raw()
    raw["methods"].update(methods_cfg)
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
        s.reference_init("implicit", "grid")
    raw = tiny_raw()
    del raw["methods"]["jko"]
    raw["methods"]["langevin"] = {"h": 0.05, "D": 0.01, "m": 100, "seeds": 2}
    s2 = prepare(parse_config(raw))
    assert s2.reference_init("gd", "auto") == "particles"
    with pytest.raises(ConfigError, match="needs a jko method"):
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
