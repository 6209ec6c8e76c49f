"""The per-step pinning diagnostic (drift ratio) against the dense plan: the barycentric
displacement of the step's plan beyond the bare kernel's (the blur), over τ·|∇F′|."""

import jax
import jax.numpy as jnp
import numpy as np

from mfjko import data, grids, initial
from mfjko.jko import JKOSolverOptions
from mfjko.jko.solver import solve_step
from mfjko.problem import GridProblem, MeanFieldProblem


def test_drift_ratio_equals_the_dense_plans_barycentric_displacement():
    ds = data.regression_1d(n_train=10, seed=0)
    prob = MeanFieldProblem.create("neuron", ds.X, ds.y, 0.01)
    geom = grids.cartesian_grid([(-2, 2)] * 3, [7, 8, 9])
    grid = GridProblem.create(prob, geom)
    q, _ = grids.discretize(initial.GaussianLaw(0.6), "neuron", geom, jax.random.PRNGKey(0))
    tau, eps = 0.3, 0.15
    _, state, diag = solve_step(grid, q, tau, eps, options=JKOSolverOptions(tol=1e-12))
    P = np.asarray(geom.points)
    C = ((P[:, None] - P[None]) ** 2).sum(-1)
    plan = np.exp(np.asarray(state.f) / eps)[:, None] * np.exp(-C / eps) \
        * np.exp(np.asarray(state.psi) / eps)[None, :]
    q = np.asarray(q)
    bary = plan.T @ P / plan.sum(0)[:, None]
    K = np.exp(-C / eps)
    blur = K.T @ P / K.sum(0)[:, None]  # the bare kernel's barycentres (box truncation)
    drift = np.sqrt(np.sum(q * ((bary - blur) ** 2).sum(1)) / q.sum())
    # ∇F′(q) at the grid points, in one program (eagerly, each operation compiles alone)
    grad = jax.jit(lambda pr, pts, w: pr.first_variation_grad(pts, w, pts))
    v = np.asarray(grad(prob, geom.points, jnp.asarray(q)))
    speed = np.sqrt(np.sum(q * (v * v).sum(1)) / q.sum())
    assert abs(float(diag.drift_ratio) - drift / (tau * speed)) < 1e-8
    assert 0.3 < float(diag.drift_ratio) < 1.5



def test_drift_ratio_is_nan_without_a_velocity_field():
    """All mass at θ = 0 with y = 0: ∇F′ = 0 there, so the ratio is undefined (NaN), not
    a huge number (a scale-0.01 initialization once read 2.5e48)."""
    ds = data.regression_1d(n_train=10, seed=0)
    prob = MeanFieldProblem.create("neuron", ds.X, np.zeros_like(ds.y), 0.01)
    # the shapes and spacing of the test above (one compiled program), each axis through 0
    geom = grids.cartesian_grid([(-2, 2), (-12 / 7, 16 / 7), (-2, 2)], [7, 8, 9])
    q = np.zeros(geom.points.shape[0])
    q[np.argmin(np.linalg.norm(np.asarray(geom.points), axis=1))] = 1.0
    _, _, diag = solve_step(GridProblem.create(prob, geom), jnp.asarray(q), 0.1, 0.05)
    assert np.isnan(float(diag.drift_ratio))
