r"""Running a group of sweep points on one worker: shared references, optionally vmapped JKO.

Points that differ only in the JKO's ε (and the Langevin D it implies) and in their
``wfr_jko`` settings share everything else: the data, particles, grid, F* and every
reference method (GD, flow, conic, ...) are computed once per group; their ``wfr_jko`` runs
one after the other, and so do their JKO runs on a CPU. On an accelerator the JKO runs
advance together in one compiled program (:class:`~mfjko.methods.jko.EntropicJKOBatch`,
the solver vmapped over ε). On this project's 2-core CPU the vmapped program was as fast as
the same members one after the other at 13³, 1.5× slower at 27³ and 3.3× slower on S² × β
with 300 × 81 points (benchmarks/README.md): the vmapped while loops run to the slowest
member, and in the drift ratio, a vmap inside the vmap, the kernel's underflow ``lax.cond``
turns into a select that evaluates its exact branch too. Every point's rows are the same
:mod:`mfjko.runner.recorder` rows a plain ``mfjko run`` writes.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
import warnings

import jax
import numpy as np

from mfjko import methods
from mfjko.config import ConfigError, check_grid, parse_config
from mfjko.driver import Record, drive
from mfjko.methods.jko import EntropicJKOBatch
from mfjko.runner.compile_cache import enable_compile_cache
from mfjko.runner.recorder import MemoryFrames, Recorder
from mfjko.runner.setup import Setup, prepare
from mfjko.study.regime import predicted_drift_ratio_field
from mfjko.sweep.results import fact_prefix
from mfjko.sweep.spec import grid_spacing, initial_speed

__all__ = ["run_group", "point_facts", "BATCHED"]

#: the grid method whose runs in a group may advance as one vmapped batch over ε
#: (:class:`EntropicJKOBatch`); every other grid method runs one point at a time
BATCHED = "jko"


def _drive_rows(name: str, setup: Setup, recorder: Recorder) -> tuple[list[dict], list]:
    """Rows of method ``name`` over the whole horizon, and its per-step drift ratios."""
    info = methods.get(name)
    cfg = setup.cfg
    stepper = info.build(getattr(cfg.methods, name), setup)
    rows: list[dict] = []
    drift: list[float] = []

    def hook(rec: Record) -> None:
        rows.append(recorder.record(name, info.kind, rec.index, rec))
        drift.extend(np.asarray(rec.steps.get("drift_ratio", ())).tolist())

    drive(stepper, setup.problem_for(info.kind), setup.initial_of(name),
          T=cfg.n_segments * cfg.record_every, record_every=cfg.steps_per_record(name),
          on_record=hook, keep_frames=False, objective=False)
    return rows, drift


def _member_record(rec: Record, i: int) -> Record:
    """Member i of a batched record (initial diagnostics are scalars shared by all)."""
    steps = {k: (v if k == "t" else v[i]) for k, v in rec.steps.items()}
    diag = {k: float(v[i] if np.ndim(v) else v) for k, v in rec.diagnostics.items()}
    return Record(rec.index, rec.t, rec.steps_done, None, rec.points, rec.weights[i], diag,
                  steps)


def _jko_batch(setups: list[Setup], recorders: list[Recorder]) -> tuple[list, list]:
    """Rows and per-step drift ratios of every member, advanced as one batch."""
    cfg0 = setups[0].cfg
    mc = getattr(cfg0.methods, BATCHED)
    stepper = EntropicJKOBatch(tau=mc.tau, eps=mc.eps, options=mc.solver_options(),
                               eps_batch=tuple(getattr(s.cfg.methods, BATCHED).eps for s in setups))
    rows = [[] for _ in setups]
    drift = [[] for _ in setups]

    def hook(rec: Record) -> None:
        for i, recorder in enumerate(recorders):
            member = _member_record(rec, i)
            rows[i].append(recorder.record(BATCHED, "grid", rec.index, member))
            drift[i].extend(np.asarray(member.steps.get("drift_ratio", ())).tolist())

    drive(stepper, setups[0].grid, setups[0].p0, T=cfg0.n_segments * cfg0.record_every,
          record_every=cfg0.steps_per_record(BATCHED), on_record=hook, keep_frames=False,
          objective=False)
    return rows, drift


def point_facts(setup: Setup) -> dict:
    """The dimensionless numbers of a point (docs/STUDY.md), as a dict.

    V₀ (the initial RMS GD speed), T and record_every; then for every grid method its
    :meth:`~mfjko.methods.base.GridMethodConfig.facts` (spacing δ, τ, ε, D = ε/(4τ),
    ε/δ², its V₀, c = τV₀/δ, grid size), named ``<method>_<fact>`` (jko's unprefixed:
    :func:`~mfjko.sweep.results.fact_prefix`); a method on the run's grid over Θ (kind
    "grid") adds ``drift_predicted_field``, the lattice drift ratio predicted from the
    initial particles' velocities.
    """
    cfg = setup.cfg
    facts = {"speed0": initial_speed(cfg), "T": cfg.T, "record_every": cfg.record_every}
    for name in cfg.methods.grid_methods():
        mc = getattr(cfg.methods, name)
        on_setup_grid = methods.get(name).kind == "grid"  # the grid setup built: no rebuild
        delta = float(setup.geom.spacing) if on_setup_grid else grid_spacing(cfg, name, setup.d)
        size = int(setup.geom.size) if on_setup_grid else mc.grid_size(setup.d,
                                                                        cfg.model.parametrization)
        prefix = fact_prefix(name)
        facts.update({prefix + k: v for k, v in mc.facts(delta, initial_speed(cfg, name),
                                                         size).items()})
        if on_setup_grid:
            v = np.asarray(setup.problem.particle_velocity(setup.theta0))
            facts[prefix + "drift_predicted_field"] = predicted_drift_ratio_field(
                mc.tau * v / delta, mc.eps / delta**2)
    return facts


def vmap_default() -> bool:
    """Whether a group's JKO runs are vmapped when not said: on an accelerator only."""
    return jax.default_backend() != "cpu"


def run_group(configs: list[dict], ids: list[str], vmap: bool | None = None) -> list[dict]:
    """Run the points of one group (same config up to the JKO's ε); one result per point.

    The setup and references are shared; ``vmap`` (None: :func:`vmap_default`) advances
    the JKO runs in one vmapped program instead of one after the other.

    Each result is ``{"id", "rows": [...], "drift": [...], "facts": {...}, "seconds":
    {...}, "warnings", "error"}``. A failing point is returned with its error; the others
    go on.
    """
    enable_compile_cache()  # a worker process: compile once between workers and sweeps
    cfgs = [parse_config(c, f"point {i}") for c, i in zip(configs, ids, strict=True)]
    out = [{"id": i, "rows": [], "drift": [], "facts": {}, "seconds": {}, "warnings": [],
            "error": None} for i in ids]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ok = _run_group(cfgs, out, vmap_default() if vmap is None else vmap)
        for o in ok:
            o["warnings"] += [f"{w.category.__name__}: {w.message}" for w in caught]
    except Exception as e:  # noqa: BLE001 — a failed group is reported, the sweep goes on
        msg = f"{type(e).__name__}: {e}"
        for o in out:
            o["error"] = o["error"] or msg
            o["traceback"] = traceback.format_exc(limit=8)
    return out


def _members_checked(base: Setup, cfgs, out) -> tuple[list, list]:
    """The members whose own config passes the grid checks; the others get their error.

    :func:`prepare` checked only the first member's ε against the shared grid.
    """
    keep_cfgs, keep_out = [], []
    for c, o in zip(cfgs, out, strict=True):
        try:
            if base.geom is not None:
                check_grid(c, float(base.geom.spacing), float(base.mass_outside))
        except ConfigError as e:
            o["error"] = f"{type(e).__name__}: {e}"
            continue
        keep_cfgs.append(c)
        keep_out.append(o)
    return keep_cfgs, keep_out


def _run_group(cfgs, out, vmap: bool) -> list[dict]:
    base = prepare(cfgs[0])
    cfgs, out = _members_checked(base, cfgs, out)
    setups = [dataclasses.replace(base, cfg=c) for c in cfgs]
    shared_store = MemoryFrames()
    shared = Recorder(base, shared_store)
    per_point = {"langevin"} if _matched(cfgs[0]) else set()
    per_point |= set(cfgs[0].methods.grid_methods())
    shared_rows, shared_seconds, shared_drift = {}, {}, {}
    for name in cfgs[0].methods.enabled():
        if name in per_point:
            continue
        tic = time.perf_counter()
        shared_rows[name], drift = _drive_rows(name, base, shared)
        shared_seconds[name] = time.perf_counter() - tic
        if drift:  # a shared grid method with a pinning figure (wfr_jko)
            shared_drift[name] = drift
        if name == "gd":
            shared.load_gd()
    recorders = []
    for o, s in zip(out, setups, strict=True):
        r = Recorder(s, MemoryFrames())
        r.gd = shared.gd
        recorders.append(r)
        o["facts"] = point_facts(s)
        o["seconds"] = dict(shared_seconds)
        o["drift_methods"] = dict(shared_drift)
        o["rows"] = [row for name in shared_rows for row in shared_rows[name]]
        if "langevin" in per_point and s.cfg.methods.langevin is not None:
            tic = time.perf_counter()
            o["rows"] += _drive_rows("langevin", s, r)[0]
            o["seconds"]["langevin"] = time.perf_counter() - tic
        for name in s.cfg.methods.grid_methods():  # not batched: one point at a time
            if name == BATCHED:
                continue
            tic = time.perf_counter()
            rows, drift = _drive_rows(name, s, r)
            o["rows"] += rows
            o["drift_methods"][name] = drift
            o["seconds"][name] = time.perf_counter() - tic
    if BATCHED in cfgs[0].methods.grid_methods():
        _run_jko(setups, recorders, out, vmap)
    return out


def _run_jko(setups, recorders, out, vmap: bool) -> None:
    tic = time.perf_counter()
    if vmap and len(setups) > 1:
        rows, drift = _jko_batch(setups, recorders)
    else:
        pairs = [_drive_rows(BATCHED, s, r) for s, r in zip(setups, recorders, strict=True)]
        rows, drift = [p[0] for p in pairs], [p[1] for p in pairs]
    seconds = (time.perf_counter() - tic) / len(setups)
    for o, rr, dd in zip(out, rows, drift, strict=True):
        o["rows"] += rr
        o["drift"] = dd
        o["seconds"][BATCHED] = seconds


def _matched(cfg) -> bool:
    lc = cfg.methods.langevin
    return lc is not None and lc.match_jko
