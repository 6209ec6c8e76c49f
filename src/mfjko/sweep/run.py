r"""``mfjko sweep``: run every point of a sweep on Dask distributed, resumably.

The client expands and resolves the points, groups those that differ only in the JKO's ε
(:mod:`mfjko.sweep.execute` runs a group with shared references, its JKO runs vmapped
on an accelerator),
submits one task per group to a ``LocalCluster`` of worker processes (or to an existing
scheduler), and writes each finished point to DIR/points/<id>/ (``metrics.csv``,
``point.json``; ``error.txt`` for a failed point, which does not stop the sweep). With
``resume``, finished points are skipped. At the end :func:`mfjko.sweep.results.collect`
writes the tidy table (Parquet) and the xarray Dataset (zarr).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import yaml

from mfjko.columns import METRIC_COLUMNS
from mfjko.errors import (  # SweepExistsError, SchedulerError: re-exported, their old home
    ConfigError,
    SchedulerError,
    SweepExistsError,
)
from mfjko.io import _TMP, atomic_write_text, durable_delete
from mfjko.memory import check_memory
from mfjko.methods import REGISTRY
from mfjko.methods.base import GridMethodConfig
from mfjko.progress import progress_bar
from mfjko.runner.run import check_not_precious, probe_writable
from mfjko.sweep.execute import BATCHED, run_group
from mfjko.sweep.results import collect
from mfjko.sweep.spec import (
    Point,
    SweepSpec,
    check_keys,
    expand,
    load_sweep,
    resolve_point,
    stored_spec,
)

__all__ = ["run_sweep", "SweepExistsError", "SchedulerError", "plan", "balance", "MAX_BATCH",
           "SWEEP_MARKER", "SWEEP_ENTRIES", "SCHEDULER_TIMEOUT_ENV", "foreign_entries"]

#: most points in one group (one Dask task; one vmapped JKO program on an accelerator)
MAX_BATCH = 8
#: the marker file of a sweep folder (written first): --overwrite replaces only such folders
SWEEP_MARKER = ".mfjko-sweep"
#: every entry a sweep and ``mfjko study`` write at the top of a sweep folder
SWEEP_ENTRIES = (SWEEP_MARKER, "sweep.yaml", "points", "results.parquet", "results.zarr",
                 "failures.json", "study")
#: a point's folder under points/ (:attr:`mfjko.sweep.spec.Point.id`)
_POINT_DIR = re.compile(r"^\d{4,}-[0-9a-f]{8}$")
#: environment variable: seconds to wait for --scheduler (default 5)
SCHEDULER_TIMEOUT_ENV = "MFJKO_SCHEDULER_TIMEOUT"


def _group_key(cfg_doc: dict) -> str:
    doc = json.loads(json.dumps(cfg_doc))
    sections = doc.get("methods", {})
    jko = sections.get(BATCHED)
    if jko is not None:  # batched over ε (mfjko.sweep.execute)
        jko.pop("eps", None)
    # the other grid methods run per point inside a group (mfjko.sweep.execute): any
    # settings, except those of the initial measure the references start from without a grid
    # over Θ (wfr_jko's ν₀: Setup.reference_grid), which the group shares
    theta_grid = any(n in REGISTRY and REGISTRY[n].kind == "grid" and sections[n] is not None
                     for n in sections)
    for name, info in REGISTRY.items():
        if name != BATCHED and info.config is not None and issubclass(info.config,
                                                                      GridMethodConfig):
            section = sections.pop(name, None)
            fields = info.config.initial_measure_fields
            if section is not None and fields and not theta_grid:
                sections[name] = {k: section.get(k) for k in fields}
    return json.dumps(doc, sort_keys=True)


def plan(spec: SweepSpec, points: list[Point], batch: bool,
         configs: dict | None = None) -> tuple[list, dict]:
    """Resolve every point's config and group them into tasks.

    Args:
      spec: the sweep.
      points: the points to run.
      batch: group points that differ only in the JKO's ε.
      configs: point id → its config already resolved (:func:`_resolve_all`).

    Returns:
      (tasks, failures): tasks are lists of (point, config dict); failures map a point id to
      the error of a point whose config could not be resolved.
    """
    groups: dict[str, list] = defaultdict(list)
    failures = {}
    for p in points:
        try:
            cfg = configs[p.id] if configs and p.id in configs else resolve_point(spec, p)
        except (ConfigError, ValueError) as e:
            failures[p.id] = f"{type(e).__name__}: {e}"
            continue
        doc = cfg.model_dump(mode="json", exclude_none=True)  # null would enable a method
        key = _group_key(doc) if batch else p.id
        groups[key].append((p, doc))
    tasks = []
    for members in groups.values():
        for i in range(0, len(members), MAX_BATCH if batch else 1):
            tasks.append(members[i:i + (MAX_BATCH if batch else 1)])
    return tasks, failures


def balance(tasks: list[list], slots: int) -> list[list]:
    """Split the largest tasks in halves until there are 2 × ``slots`` tasks.

    Or until no task has two points. A sweep of few big groups would otherwise leave
    workers idle. A split group computes its shared references once per half. With one
    slot nothing is split (a vmapped group stays whole).
    """
    tasks = [list(t) for t in tasks]
    if slots <= 1:
        return tasks
    while len(tasks) < 2 * slots:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i]), default=None)
        if largest is None or len(tasks[largest]) < 2:
            break
        members = tasks.pop(largest)
        half = (len(members) + 1) // 2
        tasks[largest:largest] = [members[:half], members[half:]]
    return tasks


def _client(workers: int | None, scheduler: str | None):
    """A Dask client: of the scheduler at ``scheduler`` (fails fast), or of a LocalCluster."""
    import logging

    # dask: heavy, loaded when a sweep computes (start-up cost), not for a circle
    from dask.distributed import Client, LocalCluster

    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    if scheduler:
        timeout = float(os.environ.get(SCHEDULER_TIMEOUT_ENV, "5"))
        # distributed logs every failed attempt; the one line below says it all
        logger = logging.getLogger("distributed")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            return Client(scheduler, timeout=timeout), None
        except (OSError, TimeoutError, ValueError) as e:
            raise SchedulerError(f"cannot reach the Dask scheduler {scheduler} within "
                                 f"{timeout:g} s ({type(e).__name__}); check --scheduler "
                                 "(tcp://HOST:PORT) and that the scheduler runs, or drop it "
                                 "for local workers") from None
        finally:
            logger.setLevel(level)
    n = workers or 1
    # one thread per worker process: JAX parallelizes inside a process, Dask across them;
    # the dashboard on a free port: Dask warns when its default 8787 is taken (and
    # dashboard_address=None still starts it there)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    return Client(cluster), cluster


def _write_point(out: Path, point: Point, result: dict) -> None:
    folder = out / "points" / point.id
    folder.mkdir(parents=True, exist_ok=True)
    if result.get("error"):
        atomic_write_text(folder / "error.txt",
                          result["error"] + "\n\n" + result.get("traceback", ""))
        return
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(METRIC_COLUMNS)
    for r in result["rows"]:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in METRIC_COLUMNS])
    atomic_write_text(folder / "metrics.csv", buf.getvalue())
    doc = {"id": point.id, "coords": point.coords, "resolved": point.resolved,
           "facts": result["facts"], "drift": result["drift"],
           "drift_methods": result.get("drift_methods", {}), "seconds": result["seconds"],
           "warnings": result["warnings"][:50]}
    atomic_write_text(folder / "point.json", json.dumps(doc, default=float))
    (folder / "error.txt").unlink(missing_ok=True)


def _done(out: Path, point: Point) -> bool:
    return (out / "points" / point.id / "point.json").exists()


def _is_sweep_folder(out: Path) -> bool:
    """Whether ``out`` holds a sweep.

    It does with the marker, or (sweeps written before the marker existed) a sweep.yaml
    with the ``base_config`` a sweep stored and a points/ folder.
    """
    if (out / SWEEP_MARKER).is_file():
        return True
    try:
        doc = yaml.safe_load((out / "sweep.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and "base_config" in doc and (out / "points").is_dir()


def foreign_entries(out: Path) -> list[str]:
    """What a sweep (and ``mfjko study``) does not write in ``out``: --overwrite refuses it."""
    if not out.is_dir():
        return []
    names = [p.name for p in out.iterdir()
             if p.name not in SWEEP_ENTRIES and not _TMP.match(p.name)]
    points = out / "points"
    if points.is_dir() and not points.is_symlink():
        names += [f"points/{p.name}" for p in points.iterdir()
                  if not (p.is_dir() and _POINT_DIR.match(p.name)) and not _TMP.match(p.name)]
    elif points.exists():
        names.append("points")
    return sorted(names)


def _folder_plan(out: Path, resume: bool, overwrite: bool) -> str:
    """What to do with the sweep folder: "new", "resume" or "overwrite"; writes nothing.

    --overwrite replaces only a sweep folder (marker :data:`SWEEP_MARKER`) holding
    nothing but what a sweep writes, and never ``/``, the home folder, the working folder
    or one containing it (:class:`SweepExistsError`, exit status 3).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pass one of them")
    if out.exists() and not out.is_dir():
        raise SweepExistsError(f"--out {out} is a file, not a folder: choose a folder path "
                               "for the sweep")
    if out.is_dir() and any(not _TMP.match(p.name) for p in out.iterdir()):
        if resume:
            if not _is_sweep_folder(out):
                raise SweepExistsError(f"{out} holds no sweep to resume (no {SWEEP_MARKER} "
                                       "or sweep.yaml); check --out, or drop --resume")
            plan = "resume"
        elif overwrite:
            check_not_precious(out)
            if not (out / SWEEP_MARKER).is_file():
                raise SweepExistsError(
                    f"--overwrite refuses {out}: it is not a sweep folder written by mfjko "
                    f"(no {SWEEP_MARKER}); choose another --out, or delete it yourself")
            foreign = foreign_entries(out)
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                                  if len(foreign) > 5 else "")
                raise SweepExistsError(f"--overwrite refuses {out}: it holds files a sweep "
                                       f"does not write ({shown}); move them out or choose "
                                       "another --out")
            plan = "overwrite"
        else:
            raise SweepExistsError(f"sweep folder {out} already exists: pass --resume to "
                                   "continue it, --overwrite to replace it, or another --out")
    elif resume:
        raise SweepExistsError(f"nothing to resume: {out} does not exist or is empty "
                               "(check --out, or drop --resume)")
    else:
        plan = "new"
    probe_writable(out)
    return plan


def _open_folder(out: Path, spec: SweepSpec, plan: str) -> None:
    """Create (or clear, for "overwrite") the sweep folder; write the marker and sweep.yaml."""
    if plan == "overwrite":  # only the sweep's own entries (checked by _folder_plan)
        for p in sorted(out.iterdir()):
            if p.name in SWEEP_ENTRIES and p.name != SWEEP_MARKER or _TMP.match(p.name):
                durable_delete(p)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / SWEEP_MARKER).exists():
        atomic_write_text(out / SWEEP_MARKER,
                          json.dumps({"format": 1, "what": "mfjko sweep folder"}))
    marker = out / "sweep.yaml"
    text = yaml.safe_dump(stored_spec(spec), sort_keys=False, allow_unicode=True)
    # resumed after an edit: its points have new ids (Point.id), and the study reads this
    if not marker.exists() or marker.read_text() != text:
        atomic_write_text(marker, text)


def _prepare_folder(out: Path, spec: SweepSpec, resume: bool, overwrite: bool) -> None:
    """Check and open the sweep folder (:func:`_folder_plan`, :func:`_open_folder`)."""
    _open_folder(out, spec, _folder_plan(out, resume, overwrite))


def _resolve_all(spec: SweepSpec, points: list[Point]) -> dict:
    """Every point's validated config, before any work (:class:`ConfigError` otherwise)."""
    configs, bad = {}, []
    for p in points:
        try:
            configs[p.id] = resolve_point(spec, p)
        except (ConfigError, ValueError) as e:
            bad.append((p, " ".join(str(e).split())))
    if bad:
        p, msg = bad[0]
        coords = ", ".join(f"{k}={json.dumps(v)}" for k, v in p.coords.items())
        more = f" (and {len(bad) - 1} more of {len(points)} points)" if len(bad) > 1 else ""
        raise ConfigError(f"sweep point {p.index} ({coords}){more}: {msg}")
    return configs


def run_sweep(path, out=None, *, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, overwrite: bool = False, progress: bool = True,
              batch: bool | None = None, console=None) -> Path:
    """Run a sweep file (module docstring).

    Everything is checked before any work or any write: the spec, its keys, every point's
    config, the memory of its grids, the folder and the scheduler.

    Args:
      path: the sweep YAML.
      out: the sweep folder (default runs/sweeps/<name>).
      workers: local worker processes (default 1).
      scheduler: an existing Dask scheduler's address (then ``workers`` is ignored).
      resume: skip finished points.
      overwrite: replace an existing sweep folder (a sweep folder only: see
        :func:`_folder_plan`).
      progress: show a progress bar.
      batch: override the spec's ``batch`` (groups of points sharing their references).
      console: a rich Console for the memory line (None: not printed).

    Returns:
      The sweep folder (with results.parquet and results.zarr).
    """
    spec = load_sweep(path)
    check_keys(spec)
    out = Path(out) if out is not None else Path("runs/sweeps") / spec.name
    folder_plan = _folder_plan(out, resume, overwrite)
    points = expand(spec)
    configs = _resolve_all(spec, points)
    line = check_memory(list(configs.values()),
                        copies=1 if scheduler else min(workers or 1, len(points)),
                        remote=bool(scheduler))
    todo = [p for p in points if not (folder_plan == "resume" and _done(out, p))]
    tasks, failures = plan(spec, todo, spec.batch if batch is None else batch, configs)
    client = cluster = None
    if tasks:
        client, cluster = _client(workers, scheduler)
    if console is not None and line:  # after the scheduler answered: its error is one line
        console.print(line, highlight=False)
    try:
        _open_folder(out, spec, folder_plan)
        for pid, err in failures.items():
            _write_point(out, next(p for p in todo if p.id == pid), {"error": err})
        if tasks:
            _execute(out, tasks, client, progress, len(points), len(points) - len(todo),
                     spec.vmap_jko)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    collect(out, spec, points)
    return out


def _execute(out: Path, tasks: list, client, progress: bool, total: int,
             done: int, vmap: bool | None = None) -> None:
    from dask.distributed import as_completed  # dask: start-up cost, as in _client

    tasks = balance(tasks, sum(client.nthreads().values()))
    with progress_bar(progress, label_width=6) as bar:
        task_bar = bar.add_task("points", total=total, completed=done)
        futures = {}
        for members in tasks:
            # points whose resolved configs coincide (e.g. a τ snapped to the same
            # value) are computed once
            unique = {json.dumps(doc, sort_keys=True): (p.id, doc) for p, doc in members}
            keys = list(unique)
            fut = client.submit(run_group, [unique[k][1] for k in keys],
                                [unique[k][0] for k in keys], vmap, pure=False)
            futures[fut] = (members, keys)
        for fut in as_completed(futures):
            members, keys = futures[fut]
            try:
                by_key = dict(zip(keys, fut.result(), strict=True))
            except Exception as e:  # noqa: BLE001 — a lost worker fails its group only
                by_key = {k: {"error": f"{type(e).__name__}: {e}"} for k in keys}
            results = [by_key[json.dumps(doc, sort_keys=True)] for _, doc in members]
            for (point, _), result in zip(members, results, strict=True):
                _write_point(out, point, result)
                if result.get("error"):
                    bar.console.print(f"[red]point {point.id}[/red] {result['error']}",
                                      highlight=False)
            bar.update(task_bar, advance=len(members))
