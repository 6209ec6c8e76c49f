r"""One run: every configured method against gradient descent, on one mean-field time axis.

Methods run in the registry's order (GD first: every other method's record i is compared
with GD's record i), each from the same initial law, driven by :func:`mfjko.driver.drive`
one recording interval at a time. After every interval the zarr frames, then the
checkpoint (the commit point: state arrays, rows, committed array lengths), then
metrics.csv are written (:mod:`mfjko.io`), so a killed run loses at most one interval and
``resume=True`` continues to the same metrics.csv and arrays. SIGINT/SIGTERM stop at the
next record, after its checkpoint (:class:`RunStopped`). One method failing is reported
and the others go on; GD failing stops the run (:class:`SolverError`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from pathlib import Path

from mfjko import methods
from mfjko.config import ConfigError, RunConfig
from mfjko.driver import Record, drive
from mfjko.errors import (  # re-exported: their historical home
    RunExistsError,
    RunFolderError,
    RunInterrupted,
    RunStopped,
    SolverError,
)
from mfjko.faults import CRASH
from mfjko.io import RUN_MARKER, RunStore, is_run_folder
from mfjko.progress import progress_bar
from mfjko.runner.provenance import provenance
from mfjko.runner.recorder import Recorder, record_time
from mfjko.runner.setup import Setup, prepare

__all__ = ["run", "RunFolderError", "RunExistsError", "RunInterrupted", "RunStopped",
           "SolverError", "INTERRUPT_ENV", "config_doc", "setup_doc", "write_initial",
           "check_not_precious", "probe_writable"]

#: environment variable: raise :class:`RunInterrupted` after this many intervals (tests)
INTERRUPT_ENV = "MFJKO_INTERRUPT_AFTER"


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


class _StopFlag:
    """The stop request of SIGINT/SIGTERM.

    Set by SIGINT/SIGTERM; the record hook stops the run at the next record. A second
    signal ends the process at once (exit 130): the folder is crash-consistent.
    """

    def __init__(self, hint: str):
        self.signum: int | None = None
        self.hint = hint

    def __call__(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            os.write(2, f"\n{name} again: stopped now; the run folder keeps its last "
                        f"checkpoint. {self.hint}\n".encode())
            os._exit(130)
        self.signum = signum
        # os.write, not print: the handler may run while the main thread is writing
        os.write(2, f"\n{name}: stopping after the current recording interval "
                    "(send it again to stop at once)\n".encode())


@contextlib.contextmanager
def _stop_on_signals(flag: _StopFlag, enabled: bool):
    """Route SIGINT and SIGTERM to ``flag`` (main thread only) and restore them after."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
        self.committed: dict[str, int] = {}  # the array lengths of the last checkpoint
        self.mark = time.perf_counter()

    def start(self):
        """The state to drive from.

        Restored from the checkpoint, or None (initial). What was written after the
        checkpoint is cut back first.
        """
        ck = self.store.load_checkpoint(self.name)
        if ck is None:
            self.store.truncate_to(self.name, {})
            return None
        self.rows, self.notes = ck["rows"], ck["notes"]
        self.seconds, self.n_steps, self.segments = ck["seconds"], ck["n_steps"], ck["segments"]
        self.saved = ck["state"]
        if ck["lengths"] is None:  # a checkpoint written before lengths were committed
            self.store.truncate(self.name, self.segments + 1, self.n_steps)
        else:
            self.store.truncate_to(self.name, ck["lengths"])
        self.committed = self.store.lengths_under(self.name)
        return self.stepper.restore(self.problem, ck["state"])

    @property
    def t(self) -> float:
        """The last committed mean-field time."""
        return record_time(self.segments, self.setup.cfg.record_every)

    def on_record(self, rec: Record, caught: list) -> None:
        """Frames, row, warnings, then the checkpoint (commit) of one record.

        A non-finite F raises FloatingPointError before anything is committed.
        """
        now = time.perf_counter()
        segments = self.segments + (1 if rec.index > 0 else 0)
        row = self.recorder.record(self.name, self.info.kind, segments, rec)
        t = record_time(segments, self.setup.cfg.record_every)
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"F is not finite ({row['loss']}) at t = {t:g}")
        if rec.index > 0:
            self.seconds += now - self.mark
        self.segments = segments
        self.rows.append(row)
        for w in caught:  # solver warnings stay visible, and go into the report
            msg = f"t = {t:g}: {w.category.__name__}: {w.message}"
            self.notes.append(msg)
            self.console.print(f"[yellow]{self.name}[/yellow] {msg}", highlight=False)
        caught.clear()
        self.n_steps += len(next(iter(rec.steps.values()), ()))
        self.saved = self.stepper.save(rec.state)
        self.committed = self.store.lengths_under(self.name)
        self.checkpoint()
        self.mark = time.perf_counter()

    def checkpoint(self) -> None:
        self.store.save_checkpoint(self.name, segments=self.segments, state=self.saved,
                                   rows=self.rows, seconds=self.seconds,
                                   n_steps=self.n_steps, notes=self.notes,
                                   lengths=self.committed)

    def fail(self, error: Exception, show: bool = True) -> str:
        """Report a failed interval; keep what was committed.

        Report a failed interval (on the console if ``show``); keep what was committed.
        Returns the message.
        """
        cfg = self.setup.cfg
        t0 = record_time(self.segments, cfg.record_every)
        t1 = record_time(self.segments + 1, cfg.record_every)
        msg = f"FAILED on [{t0:g}, {t1:g}]: {type(error).__name__}: {error}"
        self.notes.append(msg)
        self.checkpoint()
        if show:
            self.console.print(f"[red]{self.name}[/red] {msg}", highlight=False)
        return msg


def _run_method(mr: _MethodRun, rows_by_method: dict, timings: dict, order: list[str],
                bar, task, budget: _Budget, stop: _StopFlag) -> None:
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
            if stop.signum is not None:  # a safe point: everything up to t is committed
                done = tuple(order[: order.index(mr.name)])
                raise RunStopped(
                    f"{signal.Signals(stop.signum).name}: stopped at t = {mr.t:g} of "
                    f"{mr.name} (committed)", out=store.root, method=mr.name, t=mr.t,
                    written=True, done=done)
            if rec.index > 0:
                budget.tick()

        mr.mark = time.perf_counter()
        try:
            drive(mr.stepper, mr.problem, mr.setup.initial_of(mr.name),
                  T=(cfg.n_segments - mr.segments) * cfg.record_every,
                  record_every=cfg.steps_per_record(mr.name),
                  t0=record_time(mr.segments, cfg.record_every), state=state,
                  on_record=hook, keep_frames=False, record_initial=state is None,
                  objective=False)
        except (RuntimeError, FloatingPointError, ValueError) as e:
            if isinstance(e, RunInterrupted):
                raise
            # one method failing (e.g. an ODE solver stuck at a kink) must not lose the
            # others: report it, keep what it computed, go on
            msg = mr.fail(e, show=mr.name != "gd")
            if mr.name == "gd":  # GD is every other method's reference
                raise SolverError(f"gd (the reference method) {msg}; reduce methods.gd.h "
                                  "or rescale the data") from e
    timings[mr.name] = mr.seconds
    store.write_timings(timings)


def _folder_plan(out: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> str:
    """What to do with the run folder ``out``.

    What to do with ``out``: "new", "overwrite", "resume" or "restart" (resume of a
    folder killed before its config was written). Never overwrites silently.
    """
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder: choose a folder path "
                             "for the run")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"--out {out}: {parent} is a file, not a folder; choose "
                                     "a folder path for the run")
            break
    plan = _plan(out, cfg, resume, overwrite)
    probe_writable(out)
    return plan


def _plan(out: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> str:
    exists = out.is_dir()
    empty = exists and RunStore(out).is_empty()
    if resume:
        if not exists:
            raise RunFolderError(f"nothing to resume: {out} does not exist; check --out, or "
                                 "drop --resume to start a new run")
        if empty or not is_run_folder(out):
            raise RunFolderError(f"nothing to resume: {out} holds no run (no {RUN_MARKER} or "
                                 "config.yaml); check --out, or drop --resume")
        if not (out / "config.yaml").exists():
            return "restart"
        stored = RunStore(out).read_config().get("config", {})
        current = config_doc(cfg)
        if stored != current:
            diff = sorted(k for k in set(stored) | set(current)
                          if stored.get(k) != current.get(k))
            raise ConfigError(f"cannot resume {out}: its config differs in {diff}; use "
                              "--overwrite (or the stored config) instead")
        return "resume"
    if not exists or empty:
        return "new"
    if not is_run_folder(out):
        raise RunExistsError(f"{out} already exists and is not a run folder: choose another "
                             "--out (--overwrite only replaces run folders)")
    if not overwrite:
        raise RunExistsError(
            f"run folder {out} already exists: pass --resume to continue it or --overwrite "
            "to replace it (or choose another --out)"
        )
    _check_overwritable(out)
    return "overwrite"


def probe_writable(out: Path) -> None:
    """Fail now if the run folder cannot be written.

    Raise the OSError (permission, read-only disk, ...) now, before any computation, if
    the run folder cannot be written: create and remove a probe file, or the missing
    folders.
    """
    if out.is_dir():
        probe = out / f".probe.{os.getpid()}.tmp"
        try:
            os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
        except OSError as e:
            raise type(e)(e.errno, e.strerror, str(out)) from None
        os.unlink(probe)
        return
    missing = [p for p in (out, *out.parents) if not p.exists()]
    created = []
    try:
        for p in reversed(missing):
            os.mkdir(p)
            created.append(p)
    finally:
        for p in reversed(created):
            os.rmdir(p)


def check_not_precious(out: Path, flag: str = "--overwrite") -> None:
    """Refuse to delete ``/``, the home folder, the working folder or a folder containing it.

    Args:
      out: the folder ``flag`` would replace.
      flag: the option named in the message.

    Raises:
      RunFolderError: ``out`` is one of those folders.
    """
    real, cwd = Path(out).resolve(), Path.cwd().resolve()
    what = None
    if real == Path(real.anchor):
        what = "the file-system root"
    elif real == Path.home().resolve():
        what = "your home folder"
    elif real == cwd or real in cwd.parents:
        what = "the working folder or one containing it"
    if what is not None:
        raise RunFolderError(f"{flag} refuses {out}: it is {what}; choose a dedicated "
                             "--out folder")


def _check_overwritable(out: Path) -> None:
    """Refuse --overwrite of anything but a dedicated run folder.

    --overwrite replaces a run folder only: never /, the home folder, the working
    folder or one containing it, nor a folder holding files a run does not write.
    """
    check_not_precious(out)
    foreign = RunStore(out).foreign_entries()
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                          if len(foreign) > 5 else "")
        raise RunFolderError(f"--overwrite refuses {out}: it holds files a run does not "
                             f"write ({shown}); move them out or choose another --out")


def config_doc(cfg: RunConfig) -> dict:
    """The resolved config as stored in config.yaml.

    Without ``out``: where a run lives is not part of what it computes.
    """
    doc = cfg.model_dump(mode="json")
    doc.pop("out", None)
    return doc


def _open_store(out: Path, cfg: RunConfig, setup: Setup, plan: str,
                source: dict | None) -> RunStore:
    """Create the run folder, or reopen it for resuming.

    The run folder, created (marker, initial arrays, then config.yaml: a folder with a
    config.yaml has all its initial arrays) or reopened for resuming.
    """
    store = RunStore(out)
    if plan == "overwrite":
        store.clear()
    store.create()
    store.remove_temporaries()  # of a killed write: never part of the run
    if plan == "resume":
        doc = store.read_config()
        doc.setdefault("resumed", []).append(provenance(cfg)["timestamp"])
        store.write_config(doc)
        return store
    write_initial(store, setup)
    doc = {"config": config_doc(cfg), "out": str(out)}
    if source:
        doc["source"] = source
    doc.update({"provenance": provenance(cfg), "setup": setup_doc(setup)})
    store.write_config(doc)
    return store


def run(cfg: RunConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
        overwrite: bool = False, progress: bool = True, render: bool = True,
        handle_signals: bool = True, source: dict | None = None,
        resume_hint: str | None = None) -> Path:
    """Run every configured method from the same initial law; write the run folder.

    Args:
      cfg: the validated config.
      out: the run folder (default ``cfg.out``).
      resume: continue an interrupted run.
      overwrite: replace an existing run folder (only a run folder: see
        :func:`_check_overwritable`).
      progress: show progress bars.
      render: write figures and report.html at the end.
      handle_signals: SIGINT/SIGTERM stop the run at the next record (main thread only).
      source: where the config came from (``{"file": ..., "overrides": [...]}``), stored
        in config.yaml for the report's header.
      resume_hint: the command that resumes this run (printed on a second signal).

    Returns:
      The run folder. Raises :class:`ConfigError` (before any dynamics) for an infeasible
      config, :class:`RunFolderError` (:class:`RunExistsError`) for a folder that cannot
      be used as asked, :class:`mfjko.data.DataError` for bad data files,
      :class:`SolverError` if GD fails, :class:`RunStopped` after a signal.
    """
    out = Path(out if out is not None else cfg.out)
    CRASH.arm_from_env()
    stop = _StopFlag(resume_hint or f"resume with run(cfg, {str(out)!r}, resume=True)")
    with _stop_on_signals(stop, handle_signals):
        plan = _folder_plan(out, cfg, resume, overwrite)
        setup = prepare(cfg)
        if stop.signum is not None and plan != "resume":
            raise RunStopped(f"{signal.Signals(stop.signum).name}: stopped before the run "
                             "started; nothing was written", out=out, method=None, t=None,
                             written=False)
        store = _open_store(out, cfg, setup, plan, source)
        order = cfg.methods.enabled()
        recorder = Recorder(setup, store)
        budget = _Budget()
        checkpoints = store.checkpoints()
        rows_by_method = {m: c["rows"] for m, c in checkpoints.items() if m in order}
        timings = {m: c["seconds"] for m, c in checkpoints.items() if m in order}
        with progress_bar(progress) as bar:
            tasks = {m: bar.add_task(m, total=cfg.n_segments) for m in order}
            for name in order:
                if name != "gd" and recorder.gd is None:
                    recorder.load_gd()
                mr = _MethodRun(name, setup, store, recorder, bar.console)
                _run_method(mr, rows_by_method, timings, order, bar, tasks[name], budget,
                            stop)
    if render:
        # imported here for start-up cost (matplotlib), not for a circle: runs with
        # render=False (tests, sweeps) never load it
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
    # where each particle reference starts (docs/STUDY.md "References and their noise")
    starts = {}
    for name in setup.cfg.methods.enabled():
        mc = getattr(setup.cfg.methods, name)
        info = methods.get(name)
        if info.kind == "particles" and hasattr(mc, "init"):
            starts[name] = (f"{setup.sample_source(mc.init)} (sampled)"
                            if info.initial is not None else setup.reference_init(name, mc.init))
    if starts:
        doc["reference_init"] = ", ".join(f"{k}: {v}" for k, v in starts.items())
    if "grid" in starts.values():
        doc.update(grid_reference=setup.reference_grid,
                   grid_reference_dropped_mass=setup.dropped_mass,
                   grid_reference_frozen_mass=setup.frozen_mass)
    return doc


def write_initial(store: RunStore, setup: Setup) -> None:
    """Data, initial particles and grid weights, the grid's support (fixed arrays)."""
    ds = setup.dataset
    for key in ("X", "y", "X_test", "y_test"):
        store.put(f"data/{key}", getattr(ds, key))
    store.put("init/particles", setup.theta0)
    if setup.geom is not None:
        store.put("init/p0", setup.p0)
        for name in setup.cfg.methods.grid_methods():  # each method on the grid over Θ
            if methods.get(name).kind == "grid":
                store.put(f"{name}/support", setup.geom.points)
    g = store.group()
    g.attrs.update({"parametrization": setup.param.name, "mass_outside": setup.mass_outside})
