r"""One run: every configured method against gradient descent, on one mean-field time axis.

Methods run in the registry's order (GD first: every other method's record i is compared
with GD's record i), each from the same initial law, driven by :func:`mfjko.driver.drive`
one recording interval at a time. After every interval the row, the zarr frames and a
checkpoint (the stepper's state arrays, the rows so far) are written, so a killed run loses
at most one interval and ``resume=True`` continues to the same metrics.csv. One method
failing is reported and the others go on; GD failing stops the run.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

from mfjko import methods
from mfjko.config import ConfigError, RunConfig
from mfjko.driver import Record, drive
from mfjko.io import RunStore
from mfjko.runner.provenance import provenance
from mfjko.runner.recorder import Recorder, record_time
from mfjko.runner.setup import Setup, prepare

__all__ = ["run", "RunExistsError", "RunInterrupted", "INTERRUPT_ENV"]

#: environment variable: raise :class:`RunInterrupted` after this many intervals (tests)
INTERRUPT_ENV = "MFJKO_INTERRUPT_AFTER"


class RunExistsError(FileExistsError):
    """The output folder holds a run and neither resume nor overwrite was asked for."""


class RunInterrupted(RuntimeError):
    """Raised on purpose after ``MFJKO_INTERRUPT_AFTER`` intervals (resume tests)."""


class _Budget:
    """Counts finished intervals against ``MFJKO_INTERRUPT_AFTER``."""

    def __init__(self):
        value = os.environ.get(INTERRUPT_ENV)
        self.left = int(value) if value else None
        self.total = self.left

    def tick(self) -> None:
        if self.left is None:
            return
        self.left -= 1
        if self.left <= 0:
            raise RunInterrupted(f"interrupted on purpose after {self.total} segments "
                                 f"({INTERRUPT_ENV}={self.total})")


class _MethodRun:
    """One method of a run: resume or start, drive, record, checkpoint (module docstring)."""

    def __init__(self, name: str, setup: Setup, store: RunStore, recorder: Recorder, console):
        self.name, self.setup, self.store, self.recorder = name, setup, store, recorder
        self.info = methods.get(name)
        self.stepper = self.info.build(getattr(setup.cfg.methods, name), setup)
        self.problem = setup.problem_for(self.info.kind)
        self.console = console
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.seconds, self.n_steps, self.segments = 0.0, 0, 0
        self.saved: dict = {}  # the state arrays of the last checkpoint
        self.mark = time.perf_counter()

    def start(self):
        """The state to drive from: restored from the checkpoint, or None (initial)."""
        ck = self.store.load_checkpoint(self.name)
        if ck is None:
            self.store.truncate(self.name, 0, 0)
            return None
        self.rows, self.notes = ck["rows"], ck["notes"]
        self.seconds, self.n_steps, self.segments = ck["seconds"], ck["n_steps"], ck["segments"]
        self.saved = ck["state"]
        self.store.truncate(self.name, self.segments + 1, self.n_steps)
        return self.stepper.restore(self.problem, ck["state"])

    def on_record(self, rec: Record, caught: list) -> None:
        """Row, frames, warnings and checkpoint of one record."""
        if rec.index > 0:
            self.seconds += time.perf_counter() - self.mark
            self.segments += 1
        self.rows.append(self.recorder.record(self.name, self.info.kind, self.segments, rec))
        t = record_time(self.segments, self.setup.cfg.record_every)
        for w in caught:  # solver warnings stay visible, and go into the report
            msg = f"t = {t:g}: {w.category.__name__}: {w.message}"
            self.notes.append(msg)
            self.console.print(f"[yellow]{self.name}[/yellow] {msg}", highlight=False)
        caught.clear()
        self.n_steps += len(next(iter(rec.steps.values()), ()))
        self.saved = self.stepper.save(rec.state)
        self.checkpoint()
        self.mark = time.perf_counter()

    def checkpoint(self) -> None:
        self.store.save_checkpoint(self.name, segments=self.segments, state=self.saved,
                                   rows=self.rows, seconds=self.seconds,
                                   n_steps=self.n_steps, notes=self.notes)

    def fail(self, error: Exception) -> None:
        """Report a failed interval; keep what was computed."""
        cfg = self.setup.cfg
        t0 = record_time(self.segments, cfg.record_every)
        t1 = record_time(self.segments + 1, cfg.record_every)
        msg = f"FAILED on [{t0:g}, {t1:g}]: {type(error).__name__}: {error}"
        self.notes.append(msg)
        self.checkpoint()
        self.console.print(f"[red]{self.name}[/red] {msg}", highlight=False)


def _run_method(mr: _MethodRun, rows_by_method: dict, timings: dict, order: list[str],
                bar, task, budget: _Budget) -> None:
    cfg, store = mr.setup.cfg, mr.store
    state = mr.start()
    rows_by_method[mr.name] = mr.rows
    store.write_metrics(rows_by_method, order)
    bar.update(task, completed=mr.segments)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def hook(rec: Record) -> None:
            mr.on_record(rec, caught)
            store.write_metrics(rows_by_method, order)
            timings[mr.name] = mr.seconds
            store.write_timings(timings)
            bar.update(task, completed=mr.segments)
            if rec.index > 0:
                budget.tick()

        mr.mark = time.perf_counter()
        try:
            drive(mr.stepper, mr.problem, mr.setup.initial_for(mr.info.kind),
                  T=(cfg.n_segments - mr.segments) * cfg.record_every,
                  record_every=cfg.steps_per_record(mr.name),
                  t0=record_time(mr.segments, cfg.record_every), state=state,
                  on_record=hook, keep_frames=False, record_initial=state is None,
                  objective=False)
        except (RuntimeError, FloatingPointError, ValueError) as e:
            if mr.name == "gd" or isinstance(e, RunInterrupted):
                raise  # GD is every other method's reference
            # one method failing (e.g. an ODE solver stuck at a kink) must not lose the
            # others: report it, keep what it computed, go on
            mr.fail(e)
    timings[mr.name] = mr.seconds
    store.write_timings(timings)


def _check_existing(out: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> bool:
    """Whether to resume. Never overwrites silently."""
    if not out.exists() or not any(out.iterdir()):
        return False
    if overwrite:
        return False
    if not resume:
        raise RunExistsError(
            f"run folder {out} already exists: pass --resume to continue it or --overwrite "
            "to replace it (or choose another --out)"
        )
    store = RunStore(out)
    if not (out / "config.yaml").exists():
        raise RunExistsError(f"{out} exists but holds no config.yaml: not a run folder; "
                             "use --overwrite or another --out")
    stored = store.read_config().get("config", {})
    current = config_doc(cfg)
    if stored != current:
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        raise ConfigError(f"cannot resume {out}: its config differs in {diff}; use "
                          "--overwrite (or the stored config) instead")
    return True


def config_doc(cfg: RunConfig) -> dict:
    """The resolved config as stored in config.yaml (without ``out``: where a run lives is
    not part of what it computes).
    """
    doc = cfg.model_dump(mode="json")
    doc.pop("out", None)
    return doc


def _open_store(out: Path, cfg: RunConfig, setup: Setup, resuming: bool) -> RunStore:
    store = RunStore(out)
    store.create()
    if resuming:
        doc = store.read_config()
        doc.setdefault("resumed", []).append(provenance(cfg)["timestamp"])
        store.write_config(doc)
        return store
    store.write_config({"config": config_doc(cfg), "out": str(out),
                        "provenance": provenance(cfg), "setup": setup_doc(setup)})
    write_initial(store, setup)
    return store


def _progress(progress: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    return Progress(*columns, disable=not progress, transient=False)


def run(cfg: RunConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
        overwrite: bool = False, progress: bool = True, render: bool = True) -> Path:
    """Run every configured method from the same initial law; write the run folder.

    Args:
      cfg: the validated config.  out: the run folder (default ``cfg.out``).
      resume: continue an interrupted run.  overwrite: replace an existing run folder.
      progress: show progress bars.  render: write figures and report.html at the end.

    Returns:
      The run folder. Raises :class:`ConfigError` (before any dynamics) for an infeasible
      config, :class:`RunExistsError` if the folder holds a run and neither ``resume`` nor
      ``overwrite`` is set.
    """
    out = Path(out if out is not None else cfg.out)
    resuming = _check_existing(out, cfg, resume, overwrite)
    setup = prepare(cfg)
    if out.exists() and overwrite and not resuming:
        shutil.rmtree(out)
    store = _open_store(out, cfg, setup, resuming)
    order = cfg.methods.enabled()
    recorder = Recorder(setup, store)
    budget = _Budget()
    checkpoints = store.checkpoints()
    rows_by_method = {m: c["rows"] for m, c in checkpoints.items() if m in order}
    timings = {m: c["seconds"] for m, c in checkpoints.items() if m in order}
    with _progress(progress) as bar:
        tasks = {m: bar.add_task(m, total=cfg.n_segments) for m in order}
        for name in order:
            if name != "gd" and recorder.gd is None:
                recorder.load_gd()
            mr = _MethodRun(name, setup, store, recorder, bar.console)
            _run_method(mr, rows_by_method, timings, order, bar, tasks[name], budget)
    if render:
        from mfjko import report

        report.render(out)
    return out


def setup_doc(setup: Setup) -> dict:
    """The run's setup facts stored in config.yaml (sizes, F*, grid spacing, D)."""
    ds = setup.dataset
    doc = {
        "n_train": int(ds.X.shape[0]),
        "n_test": int(ds.X_test.shape[0]),
        "d": setup.d,
        "m": int(setup.theta0.shape[0]),
        "F_star": None if setup.F_star != setup.F_star else setup.F_star,
        "F_star_note": setup.F_star_note,
        "measure_gap_cost": setup.param.cost_kind,
        "sinkhorn_eps": setup.cfg.metrics.sinkhorn_eps,
    }
    if setup.geom is not None:
        doc.update({
            "grid_size": int(setup.geom.points.shape[0]),
            "grid_spacing": float(setup.geom.spacing),
            "grid_mass_outside": setup.mass_outside,
            "langevin_D": setup.cfg.langevin_D(),
        })
    return doc


def write_initial(store: RunStore, setup: Setup) -> None:
    """Data, initial particles and grid weights, the grid's support (fixed arrays)."""
    ds = setup.dataset
    for key in ("X", "y", "X_test", "y_test"):
        store.put(f"data/{key}", getattr(ds, key))
    store.put("init/particles", setup.theta0)
    if setup.geom is not None:
        store.put("init/p0", setup.p0)
        store.put("jko/support", setup.geom.points)
    g = store.group()
    g.attrs["parametrization"] = setup.param.name
    g.attrs["mass_outside"] = setup.mass_outside
