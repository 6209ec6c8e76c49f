r"""Stable functional API of the grid methods (the steppers live in :mod:`mfjko.methods`).

The analogue of :mod:`mfjko.particles` for measures on a fixed grid: :func:`run_jko` runs
the entropic JKO stepper (:class:`~mfjko.methods.jko.EntropicJKO`, solver
:mod:`mfjko.jko`) under :func:`mfjko.driver.drive`. It sits above both the solver package
and the methods: the solver package cannot import the stepper that imports it, so
``run_jko`` moved here from ``mfjko.jko`` (same signature).
"""

from __future__ import annotations

from collections.abc import Callable

from mfjko.driver import drive
from mfjko.jko.solver import JKOSolverOptions, JKOState
from mfjko.methods.jko import EntropicJKO, JKOStepperState
from mfjko.problem import GridProblem, MeanFieldProblem
from mfjko.trajectory import Trajectory

__all__ = ["run_jko"]


def run_jko(geom, param, p0, X, y, lam: float, tau: float, eps: float, T: float,
            record_every: int = 1, options: JKOSolverOptions | None = None,
            callback: Callable | None = None, state: JKOState | None = None,
            t0: float = 0.0) -> Trajectory:
    r"""Entropic JKO from p0 for mean-field time T in K = T/τ steps (stable functional API).

    Args:
      geom: geometry (support ``geom.points`` (N, D)).
      param: a Parametrization or its name.
      p0: (N,) initial weights.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      tau: JKO step τ (mean-field time).
      eps: entropic ε (units of the cost, θ-distance²).
      T: final mean-field time; T/τ must be an integer (else ValueError).
      record_every: record weights and diagnostics every this many steps (and always
        the first and last time).
      options: :class:`JKOSolverOptions` (None: defaults).
      callback: ``callback(k, t, p, diag_dict)`` after every step (k ≥ 1, t = t0 + kτ).
      state: solver state of a previous run to resume from (None: cold start).
      t0: mean-field time at which the run (or the resumed run) starts.

    Returns:
      Trajectory(method="jko", support (N, D), weights (T_rec, N), t = t0 + kτ).
      diagnostics hold the per-step figures of :class:`JKODiagnostics` at recorded steps
      (NaN at the initial frame, which no step produced); meta["state"] is the final
      :class:`JKOState` for resuming.
    """
    problem = MeanFieldProblem.create(param, X, y, lam)
    grid = GridProblem.create(problem, geom)
    stepper = EntropicJKO(tau=tau, eps=eps, options=options or JKOSolverOptions(),
                          on_step=callback)
    start = stepper.init(grid, p0)
    if state is not None:
        start = JKOStepperState(grid, start.p, state, int(round(t0 / tau)))
    traj = drive(stepper, grid, T=T, record_every=record_every, t0=t0, state=start)
    final = traj.meta["state"]
    return Trajectory(method=traj.method, param=traj.param, t=traj.t, support=traj.support,
                      weights=traj.weights, diagnostics=traj.diagnostics,
                      meta={"lam": float(lam), "tau": tau, "eps": eps, "state": final.solver,
                            "options": stepper.options})
