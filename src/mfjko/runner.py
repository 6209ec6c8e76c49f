r"""One run: every configured method against gradient descent, on one mean-field time axis.

All methods start from the same initial law (``init``): particle methods from the m
particles drawn from it with the run's seed, the JKO grid from its discretization
(``mfjko.grids.discretize``); both are stored under ``init/`` in trajectories.zarr.
Time is mean-field time t (MATH.md): GD with step h advances t by h (lr = m·h), a JKO
step by τ, the gradient flow is the exact ODE. Records are at t_i = i·record_every,
i = 0..T/record_every, for every method; GD (the reference) runs first, so each other
method's record i is compared with GD's record i.

Segments: a method is driven one recording interval at a time — the dynamics are called
with T = record_every from the last saved state, t0 = t_i — and the run folder is
updated after every segment (see :mod:`mfjko.io`). A killed run loses at most the last
interval; ``resume=True`` continues from the checkpoints and, the dynamics being
deterministic given the seed (Langevin's noise is keyed by the global step), reaches
the same metrics.csv as an uninterrupted run. For tests, the environment variable
``MFJKO_INTERRUPT_AFTER`` = k raises :class:`RunInterrupted` after k segments.

Metrics per record (mfjko.metrics): loss F, data and test loss; for non-GD methods
loss_gap, pred_gap (train / test) and measure_gap (debiased Sinkhorn divergence to GD's
particles, ε = metrics.sinkhorn_eps fixed for the run; geodesic cost on S^{d−1} × ℝ for
``sphere``); F* (mfjko.optimum.reference_value) and F − F* where F* applies.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from mfjko import grids, initial, metrics, parametrizations
from mfjko.config import ConfigError, RunConfig, check_grid
from mfjko.io import RunStore

__all__ = [
    "RunExistsError",
    "RunInterrupted",
    "Setup",
    "prepare",
    "build_geometry",
    "run",
    "provenance",
    "INTERRUPT_ENV",
]

INTERRUPT_ENV = "MFJKO_INTERRUPT_AFTER"
#: JKO mass fraction on the grid boundary above which a run warns (box too small)
EDGE_MASS_WARN = 0.01
#: parametrizations whose global optimum is the TV-regularized problem of mfjko.optimum
FSTAR_PARAMS = ("neuron", "pm", "sphere")


class RunExistsError(FileExistsError):
    """The output folder holds a run and neither resume nor overwrite was asked for."""


class RunInterrupted(RuntimeError):
    """Raised on purpose after ``MFJKO_INTERRUPT_AFTER`` segments (resume tests)."""


@dataclass
class Setup:
    """Everything a run needs, built and checked before any dynamics run."""

    cfg: RunConfig
    dataset: object
    param: parametrizations.Parametrization
    law: object
    theta0: np.ndarray  # (m, D) initial particles
    geom: object | None = None  # JKO grid
    p0: np.ndarray | None = None  # (N,) initial grid weights
    mass_outside: float = 0.0
    F_star: float = math.nan
    F_star_note: str = ""
    keys: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return int(self.dataset.X.shape[1])


# ------------------------------------------------------------------------- preparation


def _make_dataset(cfg: RunConfig):
    from mfjko import data as data_mod

    kwargs = dict(cfg.data.kwargs)
    try:
        if cfg.data.name == "file":
            return data_mod.make_dataset("file", path=cfg.data.path, **kwargs)
        return data_mod.make_dataset(cfg.data.name, **kwargs)
    except TypeError as e:
        raise ConfigError(f"data.kwargs: {e} (check the keyword names of the {cfg.data.name} "
                          "data set)") from None


def _make_law(cfg: RunConfig):
    ic = cfg.init
    if ic.law == "gaussian":
        return initial.GaussianLaw(ic.scale)
    if ic.law == "balanced":
        return initial.BalancedLaw(ic.scale)
    return initial.FileLaw(ic.path)

def build_geometry(cfg: RunConfig, param, d: int):
    """The JKO grid of ``methods.jko.grid`` for input dimension d (bias included)."""

    spec = cfg.methods.jko.grid
    D = param.dim(d)
    if spec.kind == "cartesian":
        if len(spec.ranges) != D:
            raise ConfigError(
                f"methods.jko.grid.ranges has {len(spec.ranges)} axes; the neuron "
                f"parametrization with d = {d} inputs (bias included) needs {D} "
                "(w_1..w_d, alpha)"
            )
        geom = grids.cartesian_grid(spec.ranges, spec.sizes)
    elif spec.kind in ("signed", "pm"):
        if len(spec.ranges) != d:
            raise ConfigError(f"methods.jko.grid.ranges has {len(spec.ranges)} axes; a "
                              f"{spec.kind} grid over w needs d = {d}")
        make = grids.signed_grid if spec.kind == "signed" else grids.pm_grid
        geom = make(spec.ranges, spec.sizes)
    else:
        geom = grids.sphere_line_grid(d, spec.n_dirs, spec.beta_range, spec.n_beta)
    if spec.scales is not None:
        geom = grids.multiscale(geom, spec.scales,
                                which="last" if param.name == "sphere" else "all")
    return geom


def prepare(cfg: RunConfig) -> Setup:
    """Build data, law, particles, grid and p0, and run every check that needs them
    (grid mass, ε vs spacing). Raises :class:`ConfigError` before any dynamics run."""
    dataset = _make_dataset(cfg)
    param = parametrizations.get(cfg.model.parametrization)
    law = _make_law(cfg)
    root = jax.random.PRNGKey(cfg.seed)
    k_particles, k_grid, k_langevin, k_peers = jax.random.split(root, 4)
    d = int(dataset.X.shape[1])
    try:
        theta0 = np.asarray(initial.sample_particles(law, param, k_particles, cfg.init.m, d))
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"init: {e}") from None
    setup = Setup(cfg=cfg, dataset=dataset, param=param, law=law, theta0=theta0,
                  keys={"langevin": k_langevin, "peers": k_peers})
    if cfg.methods.jko is not None:
        from mfjko import grids

        geom = build_geometry(cfg, param, d)
        try:
            p0, outside = grids.discretize(law, param, geom, k_grid,
                                           n_samples=cfg.methods.jko.grid.discretize_samples)
        except ValueError as e:
            key = ("jko.grid.beta_range" if cfg.methods.jko.grid.kind == "sphere_line"
                   else "jko.grid.ranges")
            raise ConfigError(f"methods.{key}: {e}") from None
        check_grid(cfg, float(geom.spacing), float(outside))
        # p0 sums to 1, except for `signed` where the grid points carry |α| = 1 and p0
        # sums to E|α| (grids.discretize); the JKO step preserves that mass.
        p0 = np.asarray(p0, dtype=np.float64)
        setup.geom, setup.p0, setup.mass_outside = geom, p0, float(outside)
    setup.F_star, setup.F_star_note = _reference_value(cfg, dataset)
    return setup


def _reference_value(cfg: RunConfig, dataset) -> tuple[float, str]:
    if cfg.model.parametrization not in FSTAR_PARAMS:
        return math.nan, (f"F* not reported: the {cfg.model.parametrization} weight decay is "
                          "not the TV-regularized problem mfjko.optimum solves")
    try:
        from mfjko import optimum
    except ImportError:
        return math.nan, "F* not reported: mfjko.optimum is not available"
    try:
        ref = optimum.reference_value(dataset, cfg.model.lam)
    except Exception as e:  # noqa: BLE001 — F* is an optional reference line; say why
        return math.nan, f"F* not reported: reference_value failed ({type(e).__name__}: {e})"
    return float(ref.value), f"F* = {ref.value:.10g} by mfjko.optimum ({ref.method}: {ref.reason})"


# ------------------------------------------------------------------------- drivers


class _ParticleDriver:
    """A particle method advanced one recording interval per call."""

    def __init__(self, name: str, setup: Setup):
        self.name = name
        self.setup = setup
        cfg = setup.cfg
        self.mc = getattr(cfg.methods, name)
        self.steps = cfg.steps_per_record(name)
        ds = setup.dataset
        self.common = dict(param=setup.param, X=np.asarray(ds.X), y=np.asarray(ds.y),
                           lam=cfg.model.lam)

    def initial_state(self) -> dict:
        return {"theta": np.asarray(self.setup.theta0)}

    def _fn(self):
        from mfjko import particles

        if self.name == "gd":
            return particles.gradient_descent, {}
        if self.name == "implicit":
            return particles.implicit_steps, {"tol": self.mc.tol}
        if self.name == "flow":
            return particles.gradient_flow, {"rtol": self.mc.rtol, "atol": self.mc.atol,
                                             "n_records": 2}
        if self.name == "langevin":
            return particles.langevin, {"diffusion": self.setup.cfg.langevin_D(),
                                        "key": self.setup.keys["langevin"]}
        from mfjko import peers

        if self.name == "frobenius":
            return peers.frobenius_prox, {"tol": self.mc.tol}
        if self.name == "w2":
            return peers.w2_prox, {"tol": self.mc.tol}
        if self.name == "sliced":
            return peers.sliced_prox, {"tol": self.mc.tol,
                                       "n_projections": self.mc.n_projections,
                                       "key": self.setup.keys["peers"]}
        raise ValueError(f"unknown particle method {self.name!r}")

    def advance(self, state: dict, t0: float, dt: float):
        fn, extra = self._fn()
        kwargs = dict(self.common, theta0=state["theta"], T=dt, t0=t0, **extra)
        if self.name != "flow":  # the adaptive ODE solve has no step and records n_records
            kwargs.update(h=self.mc.h, record_every=self.steps)
        traj = fn(**kwargs)
        theta = np.asarray(traj.support[-1])
        if not np.all(np.isfinite(theta)):
            raise FloatingPointError(f"{self.name}: non-finite particles at t = {t0 + dt:g}")
        diag = {k: np.asarray(v)[-1] for k, v in traj.diagnostics.items()}
        weights = np.full(theta.shape[0], 1.0 / theta.shape[0])
        return {"theta": theta}, theta, weights, diag, []


class _JKODriver:
    """Entropic JKO on the grid, warm-started across segments (state = weights + solver
    potentials, stored in the checkpoint so a resumed run restarts from the same g)."""

    name = "jko"

    def __init__(self, setup: Setup):
        from mfjko import jko

        self.jko = jko
        self.setup = setup
        jc = setup.cfg.methods.jko
        self.jc = jc
        self.steps = setup.cfg.steps_per_record("jko")
        self.options = jko.JKOSolverOptions(tol=jc.tol, max_iter=jc.max_iter,
                                            eps_scaling=jc.eps_scaling)

    def initial_state(self) -> dict:
        return {"p": np.asarray(self.setup.p0)}

    def advance(self, state: dict, t0: float, dt: float):
        s, ds = self.setup, self.setup.dataset
        solver_state = None
        if "g" in state:
            solver_state = self.jko.JKOState(g=state["g"], f=state["f"], h=state["h"])
        steps: list[dict] = []

        def callback(k, t, p, diag):
            steps.append({"t": t, **diag})

        traj = self.jko.run_jko(s.geom, s.param, state["p"], np.asarray(ds.X), np.asarray(ds.y),
                                s.cfg.model.lam, self.jc.tau, self.jc.eps, dt,
                                record_every=self.steps, options=self.options,
                                callback=callback, state=solver_state, t0=t0)
        p = np.asarray(traj.weights[-1])
        new_state = traj.meta["state"]
        out_state = {"p": p, "g": np.asarray(new_state.g), "f": np.asarray(new_state.f),
                     "h": np.asarray(new_state.h)}
        diag = {k: np.asarray(v)[-1] for k, v in traj.diagnostics.items()}
        return out_state, np.asarray(s.geom.points), p, diag, steps


def _driver(name: str, setup: Setup):
    return _JKODriver(setup) if name == "jko" else _ParticleDriver(name, setup)


# ------------------------------------------------------------------------- provenance


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(cfg: RunConfig) -> dict:
    """Seed, package versions, git revision, timestamp and platform of this run."""
    versions = {}
    for pkg in ("mfjko", "jax", "jaxlib", "ott-jax", "numpy", "scipy", "pot", "zarr",
                "pydantic", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "seed": cfg.seed,
        "versions": versions,
        "git_revision": _git_revision(),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax_devices": [str(d) for d in jax.devices()],
        "command": " ".join(sys.argv),
    }


# ------------------------------------------------------------------------- the run


def _cartesian_axes(geom) -> list[np.ndarray] | None:
    """The 1-D axes of a plain Cartesian box in Θ (identity embedding, squared Euclidean
    cost per axis), for the uncompressed grid measure gap; None for any other geometry."""
    if not isinstance(geom, grids.ProductGeometry) or not isinstance(geom.embed, grids.Identity):
        return None
    axes = []
    for f in geom.factors:
        pts = np.asarray(f.points)
        if f.kind != "line" or pts.shape[1] != 1 or not np.allclose(
                np.asarray(f.cost), (pts - pts.T) ** 2):
            return None
        axes.append(pts[:, 0])
    return axes


class _Recorder:
    """Turns a method's measure at record i into a metrics row and zarr frames."""

    def __init__(self, setup: Setup, store: RunStore):
        self.setup = setup
        self.store = store
        self.cost = "sphere_line" if setup.param.name == "sphere" else "sqeuclidean"
        self.gd: dict | None = None  # GD's reference arrays, loaded once GD is done
        self.edge = None if setup.geom is None else grids.boundary_mask(setup.geom)
        self.grid_axes = _cartesian_axes(setup.geom) if self.cost == "sqeuclidean" else None

    def load_gd(self) -> None:
        st = self.store
        self.gd = {
            "loss": st.get("gd/loss"),
            "pred_train": st.get("gd/pred_train"),
            "pred_test": st.get("gd/pred_test"),
            "support": st.get("gd/support_full"),
        }

    def record(self, name: str, i: int, t: float, points, weights, diag: dict,
               steps: list[dict]) -> dict:
        s, ds, mc = self.setup, self.setup.dataset, self.setup.cfg.metrics
        res = metrics.measure_losses(s.param, points, weights, ds.X, ds.y, ds.X_test,
                                     ds.y_test, s.cfg.model.lam)
        for key in ("loss", "data_loss", "test_loss"):
            if not math.isfinite(res[key]):
                raise FloatingPointError(f"{name}: {key} is {res[key]} at t = {t:g}")
        row = {"method": name, "t": t, "loss": res["loss"], "data_loss": res["data_loss"],
               "test_loss": res["test_loss"], "F_star": s.F_star,
               "loss_minus_F_star": res["loss"] - s.F_star}
        st = self.store
        if name != "gd":
            gd = self.gd
            row["loss_gap"] = abs(res["loss"] - float(gd["loss"][i]))
            row["pred_gap"] = metrics.pred_gap(res["pred_train"], gd["pred_train"][i])
            row["pred_gap_test"] = metrics.pred_gap(res["pred_test"], gd["pred_test"][i])
            gd_pts = gd["support"][i][: mc.max_support]
            gd_w = np.full(len(gd_pts), 1.0 / len(gd_pts))
            solver = {"threshold": mc.sinkhorn_threshold,
                      "max_iterations": mc.sinkhorn_max_iterations}
            if name == "jko" and self.grid_axes is not None and len(weights) > mc.max_grid_support:
                # a large Cartesian box: exact, its self-term on OTT's separable Grid
                row["measure_gap"], dropped = metrics.grid_sinkhorn_divergence(
                    self.grid_axes, weights, gd_pts, gd_w, mc.sinkhorn_eps, **solver)
            else:
                if name == "jko":
                    pts, w, dropped = metrics.compress_measure(points, weights,
                                                               mc.max_grid_support)
                else:  # uniform particles: the first max_support are an iid subsample
                    pts, dropped = points[: mc.max_support], None
                    w = np.full(len(pts), 1.0 / len(pts))
                row["measure_gap"] = metrics.sinkhorn_divergence(
                    pts, w, gd_pts, gd_w, mc.sinkhorn_eps, self.cost, **solver)
            row["measure_gap_grid_tv"] = dropped
            if name == "jko":
                w_all = np.asarray(weights)
                row["edge_mass"] = float(w_all[self.edge].sum() / w_all.sum())
                if row["edge_mass"] > EDGE_MASS_WARN:
                    warnings.warn(
                        f"{row['edge_mass']:.1%} of the JKO mass sits on the grid's boundary "
                        f"at t = {t:g}: the box clips the dynamics; widen jko.grid.ranges "
                        f"(or beta_range)", RuntimeWarning, stacklevel=2)
        st.append(f"{name}/t", np.float64(t))
        st.append(f"{name}/loss", np.float64(res["loss"]))
        st.append(f"{name}/pred_train", res["pred_train"])
        st.append(f"{name}/pred_test", res["pred_test"])
        if name == "jko":
            st.append(f"{name}/weights", np.asarray(weights))
        else:
            st.append(f"{name}/particles", np.asarray(points)[: mc.particles_saved])
            if name == "gd":
                st.append("gd/support_full", np.asarray(points))
        for k, v in diag.items():
            st.append(f"{name}/diag/{k}", np.asarray(v, dtype=np.float64))
        for step in steps:
            for k, v in step.items():
                st.append(f"{name}/steps/{k}", np.asarray(v, dtype=np.float64))
        return row


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
    current = _config_doc(cfg)
    if stored != current:
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        raise ConfigError(f"cannot resume {out}: its config differs in {diff}; use "
                          "--overwrite (or the stored config) instead")
    return True


def _config_doc(cfg: RunConfig) -> dict:
    doc = cfg.model_dump(mode="json")
    doc.pop("out", None)  # where a run lives is not part of what it computes
    return doc


def run(cfg: RunConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
        overwrite: bool = False, progress: bool = True, render: bool = True) -> Path:
    """Run every configured method from the same initial law; write the run folder.

    Returns the run folder. Raises :class:`ConfigError` (before any dynamics) for an
    infeasible config, :class:`RunExistsError` if the folder holds a run and neither
    ``resume`` nor ``overwrite`` is set.
    """
    out = Path(out if out is not None else cfg.out)
    resuming = _check_existing(out, cfg, resume, overwrite)
    setup = prepare(cfg)
    if out.exists() and overwrite and not resuming:
        shutil.rmtree(out)
    store = RunStore(out)
    store.create()
    if not resuming:
        store.write_config({"config": _config_doc(cfg), "out": str(out),
                            "provenance": provenance(cfg),
                            "setup": _setup_doc(setup)})
        _write_initial(store, setup)
    else:
        doc = store.read_config()
        doc.setdefault("resumed", []).append(provenance(cfg)["timestamp"])
        store.write_config(doc)

    order = cfg.methods.enabled()
    recorder = _Recorder(setup, store)
    interrupt_after = os.environ.get(INTERRUPT_ENV)
    budget = int(interrupt_after) if interrupt_after else None
    done_segments = 0
    checkpoints = store.checkpoints()
    rows_by_method = {m: c["rows"] for m, c in checkpoints.items() if m in order}
    timings = {m: c["seconds"] for m, c in checkpoints.items() if m in order}

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
    n_seg = cfg.n_segments
    with Progress(*columns, disable=not progress, transient=False) as bar:
        tasks = {m: bar.add_task(m, total=n_seg) for m in order}
        for name in order:
            if name != "gd" and recorder.gd is None:
                recorder.load_gd()
            driver = _driver(name, setup)
            ck = checkpoints.get(name)
            if ck is None:
                store.truncate(name, 0, 0)
                state = driver.initial_state()
                pts, w = _initial_measure(name, setup)
                row = recorder.record(name, 0, 0.0, pts, w, {}, [])
                rows, seconds, n_steps, start, notes = [row], 0.0, 0, 0, []
                store.save_checkpoint(name, segments=0, state=state, rows=rows, seconds=0.0,
                                      n_steps=0, notes=notes)
            else:
                state, rows, notes = ck["state"], ck["rows"], ck["notes"]
                seconds, n_steps, start = ck["seconds"], ck["n_steps"], ck["segments"]
                store.truncate(name, start + 1, n_steps)
            rows_by_method[name] = rows
            store.write_metrics(rows_by_method, order)
            bar.update(tasks[name], completed=start)
            for seg in range(start, n_seg):
                t0, t1 = _time(seg, cfg), _time(seg + 1, cfg)
                tic = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        state, pts, w, diag, steps = driver.advance(state, t0, t1 - t0)
                    except (RuntimeError, FloatingPointError, ValueError) as e:
                        if name == "gd" or isinstance(e, RunInterrupted):
                            raise  # GD is every other method's reference
                        # one method failing (e.g. an ODE solver stuck at a kink) must not
                        # lose the others: report it, keep what it computed, go on
                        msg = f"FAILED on [{t0:g}, {t1:g}]: {type(e).__name__}: {e}"
                        notes.append(msg)
                        store.save_checkpoint(name, segments=seg, state=state, rows=rows,
                                              seconds=seconds, n_steps=n_steps, notes=notes)
                        bar.console.print(f"[red]{name}[/red] {msg}", highlight=False)
                        break
                    seconds += time.perf_counter() - tic
                    row = recorder.record(name, seg + 1, t1, pts, w, diag, steps)
                for wmsg in caught:  # keep solver warnings visible, and in the report
                    msg = f"t = {t1:g}: {wmsg.category.__name__}: {wmsg.message}"
                    notes.append(msg)
                    bar.console.print(f"[yellow]{name}[/yellow] {msg}", highlight=False)
                rows.append(row)
                n_steps += len(steps)
                store.save_checkpoint(name, segments=seg + 1, state=state, rows=rows,
                                      seconds=seconds, n_steps=n_steps, notes=notes)
                store.write_metrics(rows_by_method, order)
                timings[name] = seconds
                store.write_timings(timings)
                bar.update(tasks[name], completed=seg + 1)
                done_segments += 1
                if budget is not None and done_segments >= budget:
                    raise RunInterrupted(f"interrupted on purpose after {done_segments} "
                                         f"segments ({INTERRUPT_ENV}={budget})")
            timings[name] = seconds
            store.write_timings(timings)
    if render:
        from mfjko import report

        report.render(out)
    return out


def _time(i: int, cfg: RunConfig) -> float:
    """t_i = i·record_every, rounded to 12 digits so every method shares the same floats."""
    return float(round(i * cfg.record_every, 12))


def _initial_measure(name: str, setup: Setup):
    if name == "jko":
        return np.asarray(setup.geom.points), np.asarray(setup.p0)
    th = np.asarray(setup.theta0)
    return th, np.full(th.shape[0], 1.0 / th.shape[0])


def _setup_doc(setup: Setup) -> dict:
    ds = setup.dataset
    doc = {
        "n_train": int(ds.X.shape[0]),
        "n_test": int(ds.X_test.shape[0]),
        "d": setup.d,
        "m": int(setup.theta0.shape[0]),
        "F_star": None if math.isnan(setup.F_star) else setup.F_star,
        "F_star_note": setup.F_star_note,
        "measure_gap_cost": "sphere_line" if setup.param.name == "sphere" else "sqeuclidean",
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


def _write_initial(store: RunStore, setup: Setup) -> None:
    ds = setup.dataset
    store.put("data/X", np.asarray(ds.X))
    store.put("data/y", np.asarray(ds.y))
    store.put("data/X_test", np.asarray(ds.X_test))
    store.put("data/y_test", np.asarray(ds.y_test))
    store.put("init/particles", np.asarray(setup.theta0))
    if setup.geom is not None:
        store.put("init/p0", np.asarray(setup.p0))
        store.put("jko/support", np.asarray(setup.geom.points))
    g = store.group()
    g.attrs["parametrization"] = setup.param.name
    g.attrs["mass_outside"] = setup.mass_outside
