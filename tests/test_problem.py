"""The problem objects: one F for particles, grids and lifted measures, validation."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfjko import data, grids, initial
from mfjko import objective as obj
from mfjko.problem import GridProblem, MeanFieldProblem

DS = data.regression_1d(n_train=12, seed=3)


@partial(jax.jit, static_argnums=0)
def _formulas(param, th, w, X, y, lam, X_test):
    """F, the velocity and the test predictor by the functions of mfjko.objective, in one
    program (eagerly, each of their operations compiles on its own)."""
    return (obj.objective(param, th, w, X, y, lam), obj.velocity(param, th, w, X, y, lam),
            obj.predict(param, th, w, X_test))


@pytest.mark.parametrize("name", ["neuron", "signed", "pm", "sphere"])
def test_problem_methods_equal_the_functional_formulas(name):
    prob = MeanFieldProblem.create(name, DS.X, DS.y, 0.03)
    th = initial.sample_particles(initial.GaussianLaw(0.7), prob.param, jax.random.PRNGKey(1),
                                  9, DS.d)
    w = jnp.full(9, 1 / 9)
    F, v, f_test = _formulas(prob.param, th, w, DS.X, DS.y, 0.03, DS.X_test)
    assert float(prob.objective(th, w)) == pytest.approx(float(F), rel=1e-14)
    assert float(prob.particle_objective(th)) == pytest.approx(float(F), rel=1e-14)
    np.testing.assert_allclose(prob.particle_velocity(th), v, rtol=1e-13)
    losses = prob.losses(th, w, DS.X_test, DS.y_test)
    assert losses["loss"] == pytest.approx(float(F), rel=1e-13)
    assert losses["pred_test"].shape == (DS.X_test.shape[0],)
    # the test loss is the data part of F on the test points, by hand
    r = np.asarray(f_test) - DS.y_test
    assert losses["test_loss"] == pytest.approx(0.5 * np.mean(r * r), rel=1e-13)


def test_grid_problem_is_the_same_F_on_the_grid_support():
    prob = MeanFieldProblem.create("neuron", DS.X, DS.y, 0.05)
    geom = grids.cartesian_grid([(-2, 2)] * 3, [5, 6, 7])
    grid = GridProblem.create(prob, geom)
    p = jnp.asarray(np.random.default_rng(0).random(geom.size))
    p = p / p.sum()
    assert float(grid.objective(p)) == pytest.approx(float(prob.objective(geom.points, p)),
                                                     rel=1e-13)
    np.testing.assert_allclose(grid.predict(p), prob.predict(geom.points, p), rtol=1e-13)
    with pytest.raises(ValueError, match="needs"):
        GridProblem.create(prob, grids.cartesian_grid([(-1, 1)] * 2, [3, 3]))


def test_problem_validation_names_the_input():
    with pytest.raises(ValueError, match="lam"):
        MeanFieldProblem.create("neuron", DS.X, DS.y, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        MeanFieldProblem.create("neuron", np.full_like(DS.X, np.nan), DS.y, 0.1)
    prob = MeanFieldProblem.create("sphere", DS.X, DS.y, 0.1)
    with pytest.raises(ValueError, match="unit vectors"):
        prob.check_particles(np.ones((4, 3)))
    with pytest.raises(ValueError, match="theta0 must have shape"):
        prob.check_particles(np.ones((4, 2)))
