r"""Turns a method's record into a metrics.csv row and trajectories.zarr frames.

The row's columns are :data:`mfjko.metrics.ROW_METRICS`.

Per record i of method M, zarr holds ``M/t``, ``M/loss``, ``M/pred_train``, ``M/pred_test``,
the measure (``M/weights`` for grids, the first ``particles_saved`` particles for particle
methods, and all of GD's as the reference), ``M/diag/<name>`` (the interval's solver figures;
the initial record holds the stepper's initial values) and ``M/steps/<name>`` per step.
"""

from __future__ import annotations

import warnings

import numpy as np

from mfjko import metrics
from mfjko.driver import Record
from mfjko.io import RunStore
from mfjko.runner.setup import Setup
from mfjko.study.regime import PIN_RATIO

__all__ = ["Recorder", "record_time"]


def record_time(i: int, record_every: float) -> float:
    """t_i = i·record_every, rounded to 12 digits so every method shares the same floats."""
    return float(round(i * record_every, 12))


class Recorder:
    """Rows and frames of one run folder (module docstring)."""

    def __init__(self, setup: Setup, store: RunStore):
        self.setup = setup
        self.store = store
        self.gd: dict | None = None  # GD's reference arrays, loaded once GD is done
        self._reference: dict[int, dict] = {}  # record index -> GD's record
        self.pin_warned: set[str] = set()

    def load_gd(self) -> None:
        """Read GD's stored records: the reference of every other method.

        With its noise: 0 for the deterministic grid-matched GD, NaN (unknown) for one
        draw of sampled particles.
        """
        st = self.store
        self.gd = {k: st.get(f"gd/{k}") for k in ("loss", "pred_train", "pred_test")}
        self.gd["support"] = st.get("gd/support_full")
        n = len(self.gd["loss"])
        self.gd["weights"] = (st.get("gd/weights_full") if st.has("gd/weights_full")
                              else [None] * n)
        se = 0.0 if self.setup.starts_on_grid("gd") else np.nan
        self.gd["loss_se"] = np.full(n, se)
        self.gd["pred_se"] = np.full(n, se)

    def record(self, name: str, kind: str, i: int, rec: Record) -> dict:
        """The metrics row of record ``i`` of method ``name``; appends its zarr frames."""
        s = self.setup
        t = record_time(i, s.cfg.record_every)
        losses = s.problem.losses(rec.points, rec.weights, s.dataset.X_test, s.dataset.y_test)
        reference = None
        if name != "gd":
            # one dict per record, shared by every method (metrics cache its compression)
            reference = self._reference.setdefault(i, {k: v[i] for k, v in self.gd.items()})
        ctx = metrics.RowContext(method=name, kind=kind, index=i, t=t, points=rec.points,
                                 weights=rec.weights, losses=losses, reference=reference,
                                 settings=s.cfg.metrics, cost=s.param.cost_kind,
                                 geom=s.geom if kind == "grid" else None, F_star=s.F_star,
                                 final=i == s.cfg.n_segments, param=s.param.name,
                                 noise=self._own_noise(name, rec))
        row = metrics.row_metrics(ctx)
        self._frames(name, kind, t, losses, rec)
        self._pinning(name, t, rec)
        return row

    def _own_noise(self, name: str, rec: Record) -> dict:
        """A method's own standard errors of F and f at this record.

        Seed ensembles (Langevin) report theirs; methods started deterministically from
        the grid's measure, and measures with unequal masses (wfr_jko's directions grid),
        have 0; one draw of uniform sampled particles has NaN (unknown from one draw).
        """
        d = rec.diagnostics
        if "loss_se" in d:
            return {"loss_se": float(d["loss_se"]), "pred_se": float(d.get("pred_se", np.nan))}
        w = np.asarray(rec.weights)
        unequal = w.size > 0 and not np.all(w == w.flat[0])
        se = 0.0 if self.setup.starts_on_grid(name) or unequal else np.nan
        return {"loss_se": se, "pred_se": se}

    def _pinning(self, name: str, t: float, rec: Record) -> None:
        """Warn once per method whose steps move mass under half as far as GD's would.

        "As far as GD's would": the distance GD's velocity field would move the mass; a
        mean drift ratio below PIN_RATIO is the pinned regime (docs/STUDY.md).
        """
        drift = np.asarray(rec.steps.get("drift_ratio", ()), dtype=np.float64)
        if name in self.pin_warned or drift.size == 0 or not np.isfinite(drift).any():
            return
        rho = float(np.nanmean(drift))
        if rho < PIN_RATIO:
            self.pin_warned.add(name)
            warnings.warn(
                f"{name} looks pinned by its grid: its steps up to t = {t:g} move the mass "
                f"{rho:.0%} as far as GD's velocity field would (drift ratio < {PIN_RATIO}); "
                "refine the grid or raise ε/δ² (docs/STUDY.md)", RuntimeWarning, stacklevel=2)

    def _frames(self, name: str, kind: str, t: float, losses: dict, rec: Record) -> None:
        st = self.store
        st.append(f"{name}/t", np.float64(t))
        st.append(f"{name}/loss", np.float64(losses["loss"]))
        st.append(f"{name}/pred_train", losses["pred_train"])
        st.append(f"{name}/pred_test", losses["pred_test"])
        if kind == "grid":
            st.append(f"{name}/weights", np.asarray(rec.weights))
        else:
            st.append(f"{name}/particles",
                      np.asarray(rec.points)[: self.setup.cfg.metrics.particles_saved])
            if name == "gd":
                st.append("gd/support_full", np.asarray(rec.points))
                st.append("gd/weights_full", np.asarray(rec.weights))
        for k, v in rec.diagnostics.items():
            st.append(f"{name}/diag/{k}", np.asarray(v, dtype=np.float64))
        for k, v in rec.steps.items():
            st.extend(f"{name}/steps/{k}", np.asarray(v, dtype=np.float64))


class MemoryFrames:
    """An in-memory stand-in for :class:`~mfjko.io.RunStore`'s frame API.

    Implements ``append``, ``extend``, ``get`` and ``has``, for runs that keep only their
    metrics rows (sweeps).
    """

    def __init__(self):
        self.arrays: dict[str, list] = {}

    def extend(self, path: str, frames) -> None:
        self.arrays.setdefault(path, []).extend(np.asarray(frames))

    def append(self, path: str, frame) -> None:
        self.arrays.setdefault(path, []).append(np.asarray(frame))

    def get(self, path: str) -> np.ndarray:
        return np.stack(self.arrays[path])

    def has(self, path: str) -> bool:
        return path in self.arrays
