r"""Stable functional API of the particle methods (the steppers live in :mod:`mfjko.methods`).

m particles θ_1..θ_m ∈ Θ define μ_m = (1/m) Σ_i δ_{θ_i} and G(θ) = F(μ_m). Every function
runs on the mean-field time axis (MATH.md): GD with step h is GD on G with lr = m·h. Each
returns a :class:`~mfjko.trajectory.Trajectory` with ``support`` (T, m, D), ``weights``
(m,) = 1/m, times t0 + k·h and ``diagnostics`` (always ``objective``, F(μ_m) per record).
A run continued from its last state with ``t0`` = the previous end is bit-identical to one
run (:mod:`mfjko.driver`).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from mfjko.driver import drive
from mfjko.methods.base import ParticleState, check_positive
from mfjko.methods.classic import ClassicGD
from mfjko.methods.conic import ConicGD
from mfjko.methods.flow import GradientFlow
from mfjko.methods.gd import GradientDescent
from mfjko.methods.gd import particle_velocity as _velocity
from mfjko.methods.implicit import ImplicitSteps
from mfjko.methods.langevin import Langevin
from mfjko.parametrizations import Parametrization
from mfjko.problem import MeanFieldProblem, as_data
from mfjko.trajectory import Trajectory
from mfjko.wfr.conic import check_conic_inputs, conic_objective

__all__ = [
    "gradient_descent",
    "implicit_steps",
    "gradient_flow",
    "langevin",
    "classic_gd",
    "conic_gradient_descent",
    "particle_velocity",
    "run_particles",
]


def particle_velocity(param: Parametrization, thetas, X, y, lam):
    """v_i = −∇F′(μ_m)(θ_i) (tangent on the sphere) for uniform μ_m, shape (m, D).

    Equals −m ∇_{θ_i} G: the velocity of every particle method on mean-field time.
    """
    return _velocity(param, thetas, X, y, lam)


def _global_step(stepper, t0: float) -> int:
    """The global step index at t0 (random draws are keyed by it)."""
    h = stepper.step_size
    k0 = int(round(float(t0) / h))
    keyed = isinstance(stepper, Langevin)
    if keyed and abs(k0 * h - float(t0)) > 1e-9 * max(abs(float(t0)), h):
        raise ValueError(f"t0 = {t0} is not a multiple of h = {h}: cannot index the noise")
    return k0


def run_particles(stepper, param, theta0, X, y, lam, T, record_every: int = 1,
                  t0: float = 0.0) -> Trajectory:
    """Drive a particle ``stepper`` from θ0 for time T (the functions below use it).

    Args:
      stepper: a particle :class:`~mfjko.methods.base.Stepper`.
      param: a Parametrization or its name.
      theta0: (m, D) initial particles.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      T: duration in mean-field time (a multiple of the step).
      record_every: steps per record.
      t0: start time (resuming; the global step index is round(t0/h)).

    Returns:
      The :class:`~mfjko.trajectory.Trajectory`.
    """
    problem = MeanFieldProblem.create(param, X, y, lam)
    theta = problem.check_particles(theta0)
    state = ParticleState(problem, theta, _global_step(stepper, t0))
    return drive(stepper, problem, T=T, record_every=record_every, t0=float(t0), state=state)


def gradient_descent(param, theta0, X, y, lam, h, T, record_every: int = 1,
                     t0: float = 0.0) -> Trajectory:
    """Explicit GD on G with lr = m·h: θ_{k+1} = θ_k + h v(θ_k) (sphere: then retract).

    Args:
      param: a Parametrization or its name.
      theta0: (m, D) initial particles.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      h: step (mean-field time).
      T: duration in mean-field time (a multiple of h).
      record_every: steps between records.
      t0: start time (resuming a run).

    Returns:
      A Trajectory with t = t0 + (steps done)·h.
    """
    return run_particles(GradientDescent(h=h), param, theta0, X, y, lam, T, record_every, t0)


def langevin(param, theta0, X, y, lam, h, T, diffusion, key, record_every: int = 1,
             t0: float = 0.0) -> Trajectory:
    """Mean-field Langevin (Euler–Maruyama): θ ← θ + h v(θ) + √(2Dh) ξ_k.

    Args:
      param: a Parametrization or its name.
      theta0: (m, D) initial particles.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      h: step (mean-field time).
      T: duration in mean-field time (a multiple of h).
      diffusion: D ≥ 0 (Θ-distance² per unit time; D = 0 is exactly GD).
      key: JAX PRNG key or int seed; ξ_k = normal(fold_in(key, k)) with k the global
        step index (resumed runs draw alike).
      record_every: steps between records.
      t0: start time (resuming a run).

    Returns:
      The Trajectory.
    """
    if isinstance(key, numbers.Integral):
        key = jax.random.PRNGKey(int(key))
    return run_particles(Langevin(h=h, diffusion=diffusion, key=key), param, theta0, X, y,
                         lam, T, record_every, t0)


def implicit_steps(param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-10,
                   max_iter: int = 50, t0: float = 0.0) -> Trajectory:
    """Proximal point steps θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²/(2mh) (backward Euler).

    Args:
      param: a Parametrization or its name.
      theta0: (m, D) initial particles.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      h: step (mean-field time).
      T: duration in mean-field time (a multiple of h).
      record_every: steps between records.
      tol: Newton tolerance on the ∞-norm of (θ − θ_k)/h − v(θ) (velocity units).
      max_iter: Newton iterations per step.
      t0: start time (resuming a run).

    Returns:
      The Trajectory; diagnostics per record: ``inner_iterations_max``,
      ``inner_iterations_total``, ``inner_residual``, ``converged``,
      ``particles_converged`` (:class:`mfjko.methods.implicit.ImplicitSteps`).
    """
    return run_particles(ImplicitSteps(h=h, tol=tol, max_iter=max_iter), param, theta0, X, y,
                         lam, T, record_every, t0)


def _record_durations(T: float, t0: float, record_times, n_records) -> list[float]:
    if record_times is not None and n_records is not None:
        raise ValueError("give either record_times or n_records, not both")
    if record_times is None:
        n_records = 11 if n_records is None else n_records
        if isinstance(n_records, bool) or int(n_records) != n_records or n_records < 2:
            raise ValueError(f"n_records must be an integer >= 2, got {n_records!r}")
        # equal durations computed once, so one call and n − 1 calls of T/(n − 1) agree
        return [T / (int(n_records) - 1)] * (int(n_records) - 1) if T > 0 else []
    rt = np.asarray(record_times, dtype=np.float64).ravel()
    if not np.isfinite(rt).all():
        raise ValueError("record_times contain NaN or inf")
    if rt.size and np.any(np.diff(rt) <= 0):
        raise ValueError("record_times must be strictly increasing")
    if rt.size and (rt[0] < t0 or rt[-1] > t0 + T * (1 + 1e-12) + 1e-15):
        raise ValueError(f"record_times must lie in [t0, t0 + T] = [{t0}, {t0 + T}]")
    times = rt
    if times.size == 0 or times[0] > t0:
        times = np.concatenate([[t0], times])
    if times[-1] < t0 + T:
        times = np.concatenate([times, [t0 + T]])
    return list(np.diff(times))


def gradient_flow(param, theta0, X, y, lam, T, record_times=None,
                  n_records: int | None = None, rtol: float = 1e-10, atol: float = 1e-10,
                  t0: float = 0.0, max_steps: int = 100_000) -> Trajectory:
    """The particle gradient flow dθ_i/dt = −∇F′(μ_m)(θ_i) on [t0, t0 + T].

    Args:
      param: a Parametrization or its name.
      theta0: (m, D) initial particles.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      T: duration ≥ 0 in mean-field time.
      record_times: absolute, strictly increasing times in [t0, t0 + T] (t0 and t0 + T
        are added).
      n_records: instead of ``record_times``, n_records ≥ 2 equispaced records
        (default 11).
      rtol: relative tolerance of the Tsit5/PID solver.
      atol: absolute tolerance of the Tsit5/PID solver.
      t0: start time.
      max_steps: solver steps per segment.

    Returns:
      The Trajectory; diagnostics per record (the segment ending there):
      ``solver_steps``, ``accepted_steps``, ``rejected_steps``. A failed segment raises
      RuntimeError (:class:`mfjko.methods.flow.GradientFlow`).
    """
    T, t0 = float(T), float(t0)
    if not np.isfinite(T) or T < 0:
        raise ValueError(f"T (duration in mean-field time) must be finite and >= 0, got {T}")
    durations = _record_durations(T, t0, record_times, n_records)
    problem = MeanFieldProblem.create(param, X, y, lam)
    theta = problem.check_particles(theta0)
    check_positive(rtol, "rtol"), check_positive(atol, "atol")
    if len(set(durations)) <= 1:  # equispaced: one drive
        dt = durations[0] if durations else 1.0
        stepper = GradientFlow(dt=dt, rtol=rtol, atol=atol, max_steps=max_steps)
        return drive(stepper, problem, T=dt * len(durations), t0=t0,
                     state=ParticleState(problem, theta, 0))
    pieces, t = [], t0
    for i, dur in enumerate(durations):
        stepper = GradientFlow(dt=dur, rtol=rtol, atol=atol, max_steps=max_steps)
        pieces.append(drive(stepper, problem, T=dur, t0=t, state=ParticleState(problem, theta),
                            record_initial=(i == 0)))
        theta, t = pieces[-1].support[-1], t + dur
    return Trajectory.concatenate(pieces)


def classic_gd(W, alpha, X, y, lam, lr, steps: int, record_every: int = 1,
               t0: float = 0.0) -> Trajectory:
    """The seed's full-batch GD on L(W, α) = Σ_j (h(x_j) − y_j)² + λ Σ_i (‖w_i‖² + α_i²).

    Args:
      W: (m, d) first-layer weights.
      alpha: (m,) second-layer weights.
      X: (n, d) data (bias column included).
      y: (n,) targets.
      lam: weight decay λ ≥ 0.
      lr: step size (classic time, not mean-field time).
      steps: number of steps.
      record_every: steps per record.
      t0: start time on the classic axis.

    Returns:
      A Trajectory on the classic time axis t = t0 + k·lr whose support are the classic
      neurons as ``neuron`` particles (w_i, α_i); diagnostics ``classic_loss`` L(W, α)
      and ``objective`` (F of their uniform measure, which predicts h/m).
    """
    X, y = as_data(X, y)
    W = jnp.asarray(W, dtype=jnp.float64)
    alpha = jnp.asarray(alpha, dtype=jnp.float64)
    if W.ndim != 2 or W.shape[1] != X.shape[1] or alpha.shape != (W.shape[0],) or W.size == 0:
        raise ValueError(
            f"need W (m, {X.shape[1]}) and alpha (m,), got {W.shape} and {alpha.shape}"
        )
    if not (bool(jnp.isfinite(W).all()) and bool(jnp.isfinite(alpha).all())):
        raise ValueError("W or alpha contain NaN or inf")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    stepper = ClassicGD(lr=lr)
    theta = jnp.concatenate([W, alpha[:, None]], axis=1)
    traj = run_particles(stepper, "neuron", theta, X, y, lam, int(steps) * stepper.lr,
                         record_every, t0)
    return traj


def conic_gradient_descent(theta0, X, y, lam, h, T, record_every: int = 1,
                           t0: float = 0.0) -> Trajectory:
    r"""Explicit Euler of the conic flow: s ← (s − h∇_S G')/‖·‖, β ← β(1 − 2hG').

    One step advances mean-field time by h (:class:`mfjko.methods.conic.ConicGD` under
    :func:`mfjko.driver.drive`, on the ``sphere`` problem). As GD on the particle objective
    Ĝ(s, r) = G(ν): ∇_{s_i}Ĝ = (r_i/m)∇_S G'_i and ∂Ĝ/∂r_i = G'_i/m, so this is GD with
    the per-particle learning rates m h / r_i (position) and 2 m h r_i (mass): the WFR
    metric's mass–position time scaling (docs/MATH.md "WFR §2").

    Args:
      theta0: (m, d + 1) particles (s, β) (e.g. :func:`mfjko.wfr.balanced_to_conic`).
      X: (n, d) data with bias column.
      y: (n,) targets.
      lam: λ ≥ 0.
      h: step of mean-field time.
      T: duration (a multiple of h).
      record_every: steps between records.
      t0: start time.

    Returns:
      Trajectory(method="conic_gd", param="sphere", support (T_rec, m, d + 1),
      weights 1/m, diagnostics["objective"] = G (:func:`mfjko.wfr.conic_objective`)).
      ValueError if a mass factor 1 − 2hG' is ≤ 0 at some step (h too large: a sign
      would flip).
    """
    theta, X, y, lam = check_conic_inputs(theta0, X, y, lam)
    problem = MeanFieldProblem.create("sphere", X, y, lam)
    records = []
    drive(ConicGD(h=h), problem, T=T, record_every=record_every, t0=t0,
          state=ParticleState(problem, theta, 0), on_record=records.append, keep_frames=False,
          objective=False)
    frames = [np.asarray(r.state.theta) for r in records]
    obj = np.array([float(conic_objective(jnp.asarray(f), X, y, lam)) for f in frames])
    m = theta.shape[0]
    return Trajectory(
        method="conic_gd", param="sphere", t=np.asarray([r.t for r in records]),
        support=np.stack(frames), weights=np.full(m, 1.0 / m),
        diagnostics={"objective": obj},
        meta={"h": float(h), "lam": lam, "m": m, "n_steps": records[-1].steps_done, "t0": t0},
    )
