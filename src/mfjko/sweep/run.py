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
import shutil
from collections import defaultdict
from pathlib import Path

import yaml

from mfjko.config import ConfigError
from mfjko.io import METRIC_COLUMNS, atomic_write_text
from mfjko.runner.run import RunFolderError
from mfjko.sweep.execute import run_group
from mfjko.sweep.spec import Point, SweepSpec, expand, load_sweep, resolve_point

__all__ = ["run_sweep", "SweepExistsError", "plan", "balance", "MAX_BATCH"]

#: most points in one group (one Dask task; one vmapped JKO program on an accelerator)
MAX_BATCH = 8


class SweepExistsError(RunFolderError):
    """The sweep folder cannot be used as asked.

    It holds a sweep and neither resume nor overwrite was asked for, or there is nothing
    to resume (exit status 3, like a run folder).
    """


def _group_key(cfg_doc: dict) -> str:
    doc = json.loads(json.dumps(cfg_doc))
    jko = doc.get("methods", {}).get("jko")
    if jko is not None:
        jko.pop("eps", None)
    # wfr_jko runs per point inside a group (mfjko.sweep.execute): any settings
    doc.get("methods", {}).pop("wfr_jko", None)
    return json.dumps(doc, sort_keys=True)


def plan(spec: SweepSpec, points: list[Point], batch: bool) -> tuple[list, dict]:
    """Resolve every point's config and group them into tasks.

    Returns:
      (tasks, failures): tasks are lists of (point, config dict); failures map a point id to
      the error of a point whose config could not be resolved.
    """
    groups: dict[str, list] = defaultdict(list)
    failures = {}
    for p in points:
        try:
            cfg = resolve_point(spec, p)
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
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout=30), None
    n = workers or 1
    # one thread per worker process: JAX parallelizes inside a process, Dask across them
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
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


def _prepare_folder(out: Path, spec: SweepSpec, resume: bool, overwrite: bool) -> None:
    marker = out / "sweep.yaml"
    doc = spec.model_dump(mode="json")
    doc.pop("root")
    doc["base_config"] = spec.base_config()
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if out.exists() and any(out.iterdir()):
        if resume and marker.exists():
            # an edited spec: its points have new ids (Point.id), and the study reads this
            if marker.read_text() != text:
                atomic_write_text(marker, text)
            return
        if overwrite and marker.exists():
            shutil.rmtree(out)
        elif resume:
            raise SweepExistsError(f"{out} holds no sweep to resume (no sweep.yaml)")
        else:
            raise SweepExistsError(f"sweep folder {out} already exists: pass --resume to "
                                   "continue it, --overwrite to replace it, or another --out")
    elif resume:
        raise SweepExistsError(f"nothing to resume: {out} does not exist (check --out)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, text)


def run_sweep(path, out=None, *, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, overwrite: bool = False, progress: bool = True,
              batch: bool | None = None) -> Path:
    """Run a sweep file (module docstring).

    Args:
      path: the sweep YAML.
      out: the sweep folder (default runs/sweeps/<name>).
      workers: local worker processes (default 1).
      scheduler: an existing Dask scheduler's address (then ``workers`` is ignored).
      resume: skip finished points.
      overwrite: replace an existing sweep folder.
      progress: show a progress bar.
      batch: override the spec's ``batch`` (groups of points sharing their references).

    Returns:
      The sweep folder (with results.parquet and results.zarr).
    """
    from mfjko.sweep.results import collect

    spec = load_sweep(path)
    out = Path(out) if out is not None else Path("runs/sweeps") / spec.name
    _prepare_folder(out, spec, resume, overwrite)
    points = expand(spec)
    todo = [p for p in points if not (resume and _done(out, p))]
    tasks, failures = plan(spec, todo, spec.batch if batch is None else batch)
    for pid, err in failures.items():
        _write_point(out, next(p for p in todo if p.id == pid), {"error": err})
    _execute(out, tasks, workers, scheduler, progress, len(points), len(points) - len(todo),
             spec.vmap_jko)
    collect(out, spec, points)
    return out


def _execute(out: Path, tasks: list, workers, scheduler, progress: bool, total: int,
             done: int, vmap: bool | None = None) -> None:
    from dask.distributed import as_completed

    from mfjko.progress import progress_bar

    if not tasks:
        return
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    client, cluster = _client(workers, scheduler)
    tasks = balance(tasks, sum(client.nthreads().values()))
    try:
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
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
