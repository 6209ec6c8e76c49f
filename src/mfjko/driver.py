r"""The one loop every method runs in: step counting, records, trajectory, checkpoints.

:func:`drive` advances a :class:`~mfjko.methods.base.Stepper` by ``record_every`` steps at a
time for K = T/h steps and records the measure at t0 and after every interval (and at
t0 + T). Each interval is one ``advance`` call of one compiled program, so a horizon run
in one call or in consecutive calls (from the last state, t0 = the previous end) executes
the same computations: resumed runs are bit-identical. A record hook lets the runner
compute metrics and checkpoint after each interval without keeping the frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mfjko.methods.base import Diagnostics, Stepper
from mfjko.trajectory import Trajectory

__all__ = ["Record", "drive", "step_count"]


def step_count(T, h) -> int:
    """K = T/h, an integer up to rounding (relative 1e-9), else ValueError."""
    T = float(T)
    if not math.isfinite(T) or T < 0:
        raise ValueError(f"T (duration in mean-field time) must be finite and >= 0, got {T}")
    K = int(round(T / h))
    if abs(K * h - T) > 1e-9 * max(T, h):
        raise ValueError(f"T = {T} is not a multiple of the step h = {h} (T/h = {T / h})")
    return K


@dataclass
class Record:
    """One recorded time of a drive.

    Attributes:
      index: record number (0: the initial state).  t: mean-field time.
      steps_done: steps made since the drive started.  state: the stepper state.
      points, weights: the measure ((K, D), (K,)).
      diagnostics: interval figures (the stepper's initial values at index 0).
      steps: per-step figures of the interval, with their times under "t".
    """

    index: int
    t: float
    steps_done: int
    state: object
    points: np.ndarray
    weights: np.ndarray
    diagnostics: dict[str, float]
    steps: dict[str, np.ndarray] = field(default_factory=dict)


def _objective(state, points, weights) -> float:
    return float(state.problem.measure_objective(points, weights))


def drive(stepper: Stepper, problem, initial=None, *, T: float, record_every: int = 1,
          t0: float = 0.0, state=None, on_record: Callable[[Record], None] | None = None,
          keep_frames: bool = True, record_initial: bool = True,
          objective: bool = True) -> Trajectory | None:
    """Run ``stepper`` for mean-field time T from ``initial`` (or a saved ``state``).

    Args:
      stepper: the method.
      problem: its problem (MeanFieldProblem or GridProblem).
      initial: initial particles (m, D) or grid weights (N,); ignored if ``state``.
      T: duration in mean-field time (a multiple of ``stepper.step_size``).
      record_every: steps per record.
      t0: start time (resuming).
      state: a state to continue from (None: ``stepper.init(problem, initial)``).
      on_record: called with each :class:`Record` (the initial one if ``record_initial``).
      keep_frames: build and return the :class:`Trajectory` (False: return None).
      record_initial: record (and report) the starting state.
      objective: record F of every frame as diagnostics["objective"] (unless the stepper
        reports its own).

    Returns:
      The trajectory (times t0 + steps·h), or None without ``keep_frames``.
    """
    h = stepper.step_size
    K = step_count(T, h)
    if isinstance(record_every, bool) or int(record_every) != record_every or record_every < 1:
        raise ValueError(f"record_every must be an integer >= 1, got {record_every!r}")
    record_every = int(record_every)
    state = stepper.init(problem, initial) if state is None else state
    frames: list[Record] = []

    def emit(rec: Record):
        rec.diagnostics.update(stepper.record_diagnostics(rec.state))
        if objective and "objective" not in rec.diagnostics:
            rec.diagnostics["objective"] = _objective(rec.state, rec.points, rec.weights)
        if on_record is not None:
            on_record(rec)
        if keep_frames:
            frames.append(rec)

    index = 0
    if record_initial:
        pts, w = stepper.measure(state)
        emit(Record(0, float(t0), 0, state, pts, w, dict(stepper.diagnostics)))
    done = 0
    while done < K:
        n = min(record_every, K - done)
        state, diag = stepper.advance(state, n)
        diag = diag if isinstance(diag, Diagnostics) else Diagnostics(dict(diag))
        steps = dict(diag.steps)
        if steps:
            steps = {"t": t0 + (done + 1 + np.arange(n)) * h, **steps}
        done += n
        index += 1
        pts, w = stepper.measure(state)
        emit(Record(index, t0 + done * h, done, state, pts, w, dict(diag.interval), steps))
    if not keep_frames:
        return None
    return _trajectory(stepper, problem, frames, state)


def _trajectory(stepper: Stepper, problem, frames: list[Record], state) -> Trajectory:
    names = list(dict.fromkeys(k for r in frames for k in r.diagnostics))
    diags = {k: np.asarray([r.diagnostics.get(k, np.nan) for r in frames], dtype=np.float64)
             for k in names}
    t = np.asarray([r.t for r in frames], dtype=np.float64)
    param = getattr(problem, "param", None) or getattr(problem.problem, "param", None)
    if stepper.kind == "grid":
        support = frames[0].points if frames else stepper.measure(state)[0]
        weights = np.stack([r.weights for r in frames])
    else:
        support = np.stack([r.points for r in frames])
        weights = frames[0].weights if frames else stepper.measure(state)[1]
    return Trajectory(method=stepper.name, param=param.name if param is not None else "",
                      t=t, support=np.asarray(support, dtype=np.float64),
                      weights=np.asarray(weights, dtype=np.float64), diagnostics=diags,
                      meta={**stepper.meta(), "state": state,
                            "n_steps": int(frames[-1].steps_done) if frames else 0})
