r"""Stable functional API of the grid methods (the steppers live in :mod:`mfjko.methods`).

The analogue of :mod:`mfjko.particles` for measures on a fixed grid: :func:`run_jko` runs
the entropic JKO stepper (:class:`~mfjko.methods.jko.EntropicJKO`, solver
:mod:`mfjko.jko`) and :func:`run_wfr_jko` the WFR one (:class:`~mfjko.methods.wfr_jko.WFRJKO`,
solver :mod:`mfjko.wfr`) under :func:`mfjko.driver.drive`. They sit above both the solver
packages and the methods: a solver package cannot import the stepper that imports it, so
``run_jko`` and ``run_wfr_jko`` moved here from ``mfjko.jko`` and ``mfjko.wfr`` (same
signatures).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import numpy as np

from mfjko.driver import Record, drive, step_count
from mfjko.jko.solver import JKOSolverOptions, JKOState
from mfjko.methods.jko import EntropicJKO, JKOStepperState
from mfjko.methods.wfr_jko import WFR_PARAMETRIZATIONS, WFRJKO, WFRStepperState
from mfjko.problem import GridProblem, MeanFieldProblem
from mfjko.trajectory import Trajectory
from mfjko.wfr import directions as _dirs
from mfjko.wfr.solver import (
    WFRDiagnostics,
    WFRKernel,
    WFRSolverOptions,
    WFRState,
    as_masses,
    wfr_kernel,
)

__all__ = ["run_jko", "run_wfr_jko"]


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


def _wfr_kernel(kernel: WFRKernel | None, S, eps, rho, omega) -> WFRKernel:
    """The given kernel, checked against (directions, ε, ρ), or a new one built for them."""
    if kernel is None:
        return wfr_kernel(S, eps, rho, omega=omega)
    if not (np.isclose(float(kernel.eps), eps) and np.isclose(float(kernel.rho), rho)):
        raise ValueError("the given kernel was built for another (eps, rho)")
    if kernel.size != S.shape[0]:
        raise ValueError(f"kernel has N = {kernel.size}, directions have {S.shape[0]}")
    return kernel


class _WFRRecords:
    """What :func:`run_wfr_jko` records: times, masses (2N,) and the solver's diagnostics.

    ``on_step`` keeps the last step's :class:`~mfjko.wfr.WFRDiagnostics` (and calls the
    user's callback with t = t0 + kτ); ``on_record`` appends a frame. The initial frame's
    objective and masses are those of q0, its solver fields NaN.
    """

    def __init__(self, callback, t0, tau, phi, y, lam, potential):
        self.callback, self.t0, self.tau = callback, t0, tau
        self.phi, self.y, self.lam, self.potential = phi, y, lam, potential
        self.times, self.frames, self.last, self.state = [], [], {}, None
        self.diagnostics: dict[str, list] = {f.name: [] for f in fields(WFRDiagnostics)}

    def on_step(self, k, t, nu, d):
        self.last = d
        if self.callback is not None:
            self.callback(k, self.t0 + k * self.tau, nu, d)

    def on_record(self, rec: Record):
        nu = np.asarray(rec.state.nu)
        if rec.index == 0:
            d = {k: np.nan for k in self.diagnostics}
            d["objective"] = _dirs.lifted_objective(nu, self.phi, self.y, self.lam,
                                                    self.potential)
            d.update(mass_plus=nu[0].sum(), mass_minus=nu[1].sum(), mass_change=0.0)
        else:
            d = self.last
        for key, values in self.diagnostics.items():
            values.append(d[key])
        self.times.append(rec.t)
        self.frames.append(nu.reshape(-1))
        self.state = rec.state.solver

    def trajectory(self, param: str, S, nu0, meta: dict) -> Trajectory:
        """The recorded run; its support is the point set (s_k, ±1) of the directions S."""
        pts, _ = _dirs.as_neuron_measure(S, np.asarray(nu0))
        return Trajectory(
            method="wfr_jko", param=param, t=np.asarray(self.times), support=pts,
            weights=np.stack(self.frames),
            diagnostics={k: np.asarray(v, dtype=float) for k, v in self.diagnostics.items()},
            meta=meta)


def run_wfr_jko(directions, q0, X, y, lam: float, tau: float, eps: float, T: float,
                rho: float = 2.0, *, rho_old: float | None = None, record_every: int = 1,
                options: WFRSolverOptions | None = None, omega=None, potential=None,
                kernel: WFRKernel | None = None, callback: Callable | None = None,
                state: WFRState | None = None, t0: float = 0.0,
                param: str = "neuron") -> Trajectory:
    r"""Entropic WFR JKO from masses q0 for mean-field time T in K = T/τ steps.

    Runs :class:`~mfjko.methods.wfr_jko.WFRJKO` on the given directions under
    :func:`mfjko.driver.drive` (without its drift ratio).

    Args:
      directions: (N, d) unit directions (d includes the bias coordinate).
      q0: (2, N) initial masses (ν₊, ν₋).
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: λ ≥ 0.
      tau: JKO step τ (mean-field time).
      eps: entropic ε.
      T: duration, a multiple of τ.
      rho: marginal weight ρ (2: GD on balanced neurons).
      rho_old: weight of the old-marginal KL term (default ρ; see
        :func:`~mfjko.wfr.wfr_jko_step`).
      record_every: steps between records (the last step is always recorded).
      options: :class:`~mfjko.wfr.WFRSolverOptions`.
      omega: (N,) cell weights.
      potential: optional (2, N) linear potential.
      kernel: a prebuilt :func:`~mfjko.wfr.wfr_kernel` for these (directions, ε, ρ, ω)
        (reuse across runs), else built here.
      callback: ``callback(k, t, nu, diag_dict)`` after each step (k ≥ 1, t = t0 + kτ).
      state: resume from a previous run's final :class:`~mfjko.wfr.WFRState`.
      t0: start time (resuming).
      param: "neuron" or "sphere": the parametrization the support is read in (the
        point set (s_k, ±1) is the same for both).

    Returns:
      Trajectory(method="wfr_jko", support (2N, d + 1) = (s_k, +1) then (s_k, −1),
      weights (T_rec, 2N)). Diagnostics: the :class:`~mfjko.wfr.WFRDiagnostics` fields per
      record; at the initial frame objective and masses are those of q0, solver fields
      NaN. meta["state"] is the final :class:`~mfjko.wfr.WFRState`.
    """
    if param not in WFR_PARAMETRIZATIONS:
        raise ValueError(f"param must be 'neuron' or 'sphere', got {param!r}")
    options = WFRSolverOptions() if options is None else options
    S = np.asarray(directions, np.float64)
    phi = _dirs.direction_features(S, np.asarray(X, np.float64))
    rec = _WFRRecords(callback, t0, tau, phi, y, lam, potential)
    stepper = WFRJKO(tau=tau, eps=eps, n_dirs=S.shape[0], rho=rho,
                     rho_old=rho if rho_old is None else rho_old, options=options,
                     on_step=rec.on_step, drift=False)
    step_count(T, stepper.step_size)  # checked before the kernel is built
    kernel = _wfr_kernel(kernel, S, eps, rho, omega)
    problem = MeanFieldProblem.create(param, X, y, lam)
    start = WFRStepperState(problem, as_masses(q0, S.shape[0]), state, 0, S, kernel, phi,
                            potential)
    drive(stepper, problem, T=T, record_every=record_every, t0=t0, state=start,
          on_record=rec.on_record, keep_frames=False, objective=False)
    return rec.trajectory(param, S, start.nu, {
        "lam": lam, "tau": tau, "eps": eps, "rho": rho, "rho_old": rho_old, "state": rec.state,
        "options": options, "directions": S})
