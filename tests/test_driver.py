"""The driver: records, step counting, per-step diagnostics, resume from a saved state."""

import jax
import numpy as np
import pytest

from mfjko import data, grids, initial
from mfjko.driver import drive
from mfjko.methods.gd import GradientDescent
from mfjko.methods.jko import EntropicJKO
from mfjko.problem import GridProblem, MeanFieldProblem

DS = data.regression_1d(n_train=10, seed=0)
PROB = MeanFieldProblem.create("neuron", DS.X, DS.y, 0.01)
THETA0 = initial.sample_particles(initial.GaussianLaw(0.5), PROB.param, jax.random.PRNGKey(0),
                                  20, DS.d)


def test_records_and_hook_and_state_resume_are_bitwise():
    seen = []
    whole = drive(GradientDescent(h=0.02), PROB, THETA0, T=0.2, record_every=3,
                  on_record=lambda r: seen.append((r.index, r.steps_done)))
    # records after 3, 6, 9 and the final 10 steps
    assert seen == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 10)]
    np.testing.assert_allclose(whole.t, [0, 0.06, 0.12, 0.18, 0.2], atol=1e-15)
    assert np.all(np.diff(whole.diagnostics["objective"]) < 0)
    half = drive(GradientDescent(h=0.02), PROB, THETA0, T=0.12, record_every=3)
    rest = drive(GradientDescent(h=0.02), PROB, T=0.08, record_every=3, t0=0.12,
                 state=half.meta["state"])
    np.testing.assert_array_equal(rest.support[-1], whole.support[-1])


def test_grid_records_per_step_diagnostics_with_times():
    # the grid of tests/jko/test_pinning.py (the same problem: one compiled step)
    geom = grids.cartesian_grid([(-2, 2)] * 3, [7, 8, 9])
    p0, _ = grids.discretize(initial.GaussianLaw(0.5), "neuron", geom, jax.random.PRNGKey(1))
    grid = GridProblem.create(PROB, geom)
    recs = []
    traj = drive(EntropicJKO(tau=0.1, eps=0.1), grid, p0, T=0.4, record_every=2,
                 on_record=recs.append)
    assert traj.weights.shape == (3, geom.size) and traj.support.shape == (geom.size, 3)
    np.testing.assert_allclose(recs[2].steps["t"], [0.3, 0.4], atol=1e-15)
    assert np.isnan(traj.diagnostics["objective"][0])  # no step produced the first frame
    np.testing.assert_allclose(traj.diagnostics["objective"][1:],
                               [float(grid.objective(w)) for w in traj.weights[1:]], rtol=1e-12)


def test_bad_schedules_are_errors():
    with pytest.raises(ValueError, match="not a multiple"):
        drive(GradientDescent(h=0.03), PROB, THETA0, T=0.1)
    with pytest.raises(ValueError, match="record_every"):
        drive(GradientDescent(h=0.02), PROB, THETA0, T=0.1, record_every=0)
