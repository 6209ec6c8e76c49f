"""Sweeps: expansion and derived keys, a tiny sweep on a local Dask cluster (batched and
shared references equal one-by-one runs), resume, a failed point, the scheduler-address path,
and the quick study rendered from it."""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mfjko.sweep import expand, load_sweep, resolve_point, run_sweep
from mfjko.sweep.execute import run_group
from mfjko.sweep.run import plan

# the shapes of support.tiny_raw (m = 60, the 7³ grid, the metrics' sizes): programs depend
# on shapes only, so the runs here reuse what tests/runner compiled (test_batched_group_...:
# 12.7 → ≈ 4 CPU-s). sinkhorn_eps 0.2, not tiny_raw's 0.1 (a value, not a shape): at 0.1 the
# final measure gap of the second point's Langevin stops unconverged after 5,000 Sinkhorn
# iterations (1.3-2.4 CPU-s each time, with a warning no test here reads)
BASE = {
    "data": {"name": "regression_1d", "kwargs": {"n_train": 8, "n_test": 30, "seed": 1}},
    "model": {"parametrization": "neuron", "lam": 0.01},
    "init": {"law": "gaussian", "scale": 0.5, "m": 60},
    "methods": {"gd": {"h": 0.05}, "langevin": {"h": 0.05, "match_jko": True, "m": 400, "seeds": 2},
                "jko": {"tau": 0.1, "eps": 0.05,
                        "grid": {"kind": "cartesian", "ranges": [[-2, 2]] * 3,
                                 "sizes": [7, 7, 7]}}},
    "T": 0.4, "record_every": 0.2,
    "metrics": {"sinkhorn_eps": 0.2, "max_support": 60, "max_grid_support": 200,
                "particles_saved": 20, "measure_gap": "final"},
}


def _in_process_cluster():
    """A Dask cluster of one worker thread in this process: its programs compile once per
    test session (no worker process to start, import and compile in)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                        dashboard_address=None)


def _write(tmp_path, **extra) -> Path:
    spec = {"name": "tiny", "base": BASE, "product": {"jko.eps_over_delta2": [0.3, 1.0]},
            "zip": [{"jko.grid_n": [5, 6], "tag.level": ["coarse", "fine"]}],
            "study": {"phase": {"x": "courant", "y": "eps_over_delta2", "panel": "grid_size"}},
            **extra}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_expansion_and_derived_keys(tmp_path):
    spec = load_sweep(_write(tmp_path, product={"jko.eps_over_delta2": [0.5],
                                                "jko.courant": [0.05, 0.2]}))
    points = expand(spec)
    assert len(points) == 4 and len({p.id for p in points}) == 4
    p = points[-1]  # grid_n = 6, c = 0.2
    cfg = resolve_point(spec, p)
    delta = 4.0 / 5  # [-2, 2] with 6 points
    assert cfg.methods.jko.grid.sizes == [6, 6, 6]
    assert cfg.methods.jko.eps == pytest.approx(0.5 * delta**2)
    # τ = c δ / V₀, snapped so that record_every / τ is an integer
    tau = cfg.methods.jko.tau
    assert abs(0.2 / tau - round(0.2 / tau)) < 1e-9
    assert p.resolved["courant"] == pytest.approx(tau * p.resolved["speed0"] / delta)
    assert "tag.level" not in json.dumps(cfg.model_dump())


def test_the_old_name_eps_over_h2_is_a_deprecated_alias(tmp_path):
    """A spec of before the rename (issue 19: h names time steps): ``jko.eps_over_h2`` and
    ``eps_over_h2`` in ``study`` give the same spec and points (coordinates, configs, ids:
    those of before the rename, so old sweep folders resume) as the new name, and a warning."""
    import hashlib

    kw = {"product": {"jko.courant": [0.2]},
          "zip": [{"jko.grid_n": [5, 6], "jko.eps_over_delta2": [0.5, 1.0]}],
          "study": {"phase": {"x": "courant", "y": "eps_over_delta2"},
                    "refinement": [{"name": "r", "x": "delta", "where": {"eps_over_delta2": 0.5}}]}}
    new = load_sweep(_write(tmp_path, **kw))
    old_kw = json.loads(json.dumps(kw).replace("eps_over_delta2", "eps_over_h2"))
    with pytest.warns(FutureWarning, match=r"jko\.eps_over_h2 → jko\.eps_over_delta2"):
        old = load_sweep(_write(tmp_path, **old_kw))
    assert old == new
    old_points, new_points = expand(old), expand(new)
    assert [(p.id, p.coords) for p in old_points] == [(p.id, p.coords) for p in new_points]
    for p in new_points:  # the id of before the rename: the coordinates under the old name
        text = json.dumps(p.coords, sort_keys=True).replace("eps_over_delta2", "eps_over_h2")
        assert p.id == f"{p.index:04d}-{hashlib.sha1((text + p.context).encode()).hexdigest()[:8]}"
    a, b = resolve_point(old, old_points[-1]), resolve_point(new, new_points[-1])
    assert a == b and a.methods.jko.eps == pytest.approx(1.0 * (4.0 / 5) ** 2)


def test_points_stored_under_the_old_name_are_collected_under_the_new_one(tmp_path):
    """A sweep folder of before the rename, collected (resumed) with the renamed spec."""
    from mfjko.io import METRIC_COLUMNS
    from mfjko.sweep.results import collect

    spec = load_sweep(_write(tmp_path, product={"jko.courant": [0.2]},
                             zip=[{"jko.eps_over_delta2": [0.5, None], "jko.D": [None, 0.02]}]))
    points = expand(spec)
    out = tmp_path / "out"
    for p in points:
        folder = out / "points" / p.id
        folder.mkdir(parents=True)
        coords = json.loads(json.dumps(p.coords).replace("eps_over_delta2", "eps_over_h2"))
        (folder / "point.json").write_text(json.dumps(
            {"id": p.id, "coords": coords, "facts": {"eps_over_h2": 0.5, "tau": 0.1,
                                                     "record_every": 0.2}}))
        (folder / "metrics.csv").write_text(",".join(METRIC_COLUMNS) + "\njko,0.0,1.0"
                                            + "," * (len(METRIC_COLUMNS) - 3) + "\n")
    table = collect(out, spec, points)
    assert len(table) == len(points) and not [c for c in table if "eps_over_h2" in c]
    zipped = spec.axes()[-1][0]  # the zip axis: its keys joined with +
    assert "jko.eps_over_delta2" in zipped.split("+")
    assert {"eps_over_delta2", "jko.eps_over_delta2", zipped} <= set(table)
    assert table["jko.eps_over_delta2"].tolist()[0] == 0.5


def test_an_edited_spec_gets_new_point_ids_and_its_marker(tmp_path):
    """Resume after an edit: changed points are not taken for done, the study reads the edit."""
    from mfjko.sweep.run import _prepare_folder

    ids = {p.id for p in expand(load_sweep(_write(tmp_path)))}
    assert ids == {p.id for p in expand(load_sweep(_write(tmp_path)))}  # stable
    assert not ids & {p.id for p in expand(load_sweep(_write(tmp_path, set=["T=0.6"])))}
    assert not ids & {p.id for p in expand(load_sweep(
        _write(tmp_path, base={**BASE, "seed": 3})))}
    # the same coordinates at other positions: other ids (the index is part of the id)
    trimmed = expand(load_sweep(_write(tmp_path, product={"jko.eps_over_delta2": [1.0]})))
    assert not ids & {p.id for p in trimmed}
    out = tmp_path / "out"
    _prepare_folder(out, load_sweep(_write(tmp_path)), resume=False, overwrite=False)
    (out / "points").mkdir()
    _prepare_folder(out, load_sweep(_write(tmp_path, set=["T=0.6"])), resume=True,
                    overwrite=False)
    assert yaml.safe_load((out / "sweep.yaml").read_text())["set"] == ["T=0.6"]


def test_balance_splits_the_largest_tasks_until_every_worker_has_two():
    from mfjko.sweep.run import balance

    tasks = [list(range(8)), list(range(8, 11))]
    split = balance(tasks, 2)  # 2 workers: 4 tasks, 8 → 4 + 4, then a 4 → 2 + 2
    assert sorted(len(t) for t in split) == [2, 2, 3, 4]
    assert [x for t in split for x in t] == list(range(11))  # every point once, in order
    assert balance(tasks, 1) == tasks  # one worker (a vmapped group): nothing split
    assert balance([[0], [1]], 4) == [[0], [1]]  # single points cannot be split


@pytest.mark.parametrize("methods", [("gd", "jko"), pytest.param(
    ("gd", "langevin", "jko"), marks=pytest.mark.slow)], ids=["gd-jko", "all"])
def test_batched_group_equals_one_by_one(tmp_path, methods):
    """Vmapped and in-turn groups equal one-by-one runs; `make test` leaves Langevin (its
    400 particles × 2 seeds) out of the shared references."""
    base = {**BASE, "methods": {k: BASE["methods"][k] for k in methods}}
    spec = load_sweep(_write(tmp_path, zip=[], base=base))
    tasks, failures = plan(spec, expand(spec), batch=True)
    assert not failures and len(tasks) == 1 and len(tasks[0]) == 2  # one group: ε differs
    configs = [doc for _, doc in tasks[0]]
    ids = [p.id for p, _ in tasks[0]]
    alone = [run_group([c], [i], vmap=False)[0] for c, i in zip(configs, ids, strict=True)]
    vmapped = run_group(configs, ids, vmap=True)
    in_turn = run_group(configs, ids, vmap=False)  # shared references, JKO one by one
    for a, b in [*zip(vmapped, alone, strict=True), *zip(in_turn, alone, strict=True)]:
        assert a["error"] is None and b["error"] is None
        ra = {(r["method"], r["t"]): r for r in a["rows"]}
        rb = {(r["method"], r["t"]): r for r in b["rows"]}
        assert ra.keys() == rb.keys()
        for k in ra:
            for col in ("loss", "loss_gap", "pred_gap", "measure_gap"):
                x, y = ra[k].get(col), rb[k].get(col)
                assert (x is None and y is None) or abs(x - y) <= 1e-9 * max(1, abs(y)), (k, col)
        np.testing.assert_allclose(a["drift"], b["drift"], rtol=1e-9)


@pytest.mark.slow
def test_local_cluster_resume_failure_and_study(tmp_path):
    path = _write(tmp_path)
    out = tmp_path / "out"
    run_sweep(path, out, workers=1, progress=False)
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["method"]) == {"gd", "langevin", "jko"}
    assert table["point"].nunique() == 4 and set(table["tag.level"]) == {"coarse", "fine"}
    jko = table[(table["method"] == "jko") & (table["t"] > 0)]
    assert jko["drift_ratio"].between(0, 3).all()
    import xarray as xr

    ds = xr.open_zarr(out / "results.zarr")
    assert ds["loss"].sizes["jko.eps_over_delta2"] == 2 and ds["loss"].sizes["method"] == 3
    # resume recomputes only what is missing
    victim = sorted((out / "points").iterdir())[1]
    before = {p.name: (p / "point.json").stat().st_mtime_ns for p in (out / "points").iterdir()}
    shutil.rmtree(victim)
    run_sweep(path, out, workers=1, resume=True, progress=False)
    after = {p.name: (p / "point.json").stat().st_mtime_ns for p in (out / "points").iterdir()}
    assert {k for k in after if after[k] != before.get(k)} == {victim.name}
    again = pd.read_parquet(out / "results.parquet")
    key = ["point", "method", "t"]
    pd.testing.assert_frame_equal(again.sort_values(key).reset_index(drop=True),
                                  table.sort_values(key).reset_index(drop=True),
                                  check_exact=False, rtol=1e-12)
    # the study of this sweep
    from mfjko.study.render import render_study

    page = render_study(out)
    summary = json.loads((out / "study" / "summary.json").read_text())
    assert summary["points"] == 4 and sum(summary["regimes"].values()) == 4
    assert "phase.png" in page.read_text() or (out / "study" / "phase.png").exists()


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["in-process", "worker-process"])
def test_a_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path,
                                                          processes):
    """On a worker process (`workers=1`, slow: it imports and compiles everything) and,
    in `make test`, on the in-process cluster."""
    path = _write(tmp_path, product={"jko.eps_over_delta2": [1.0, 0.001]}, zip=[])
    out = tmp_path / "bad"
    if processes:
        run_sweep(path, out, workers=1, progress=False)
    else:
        with _in_process_cluster() as cluster:
            run_sweep(path, out, scheduler=cluster.scheduler_address, progress=False)
    errors = json.loads((out / "failures.json").read_text())
    assert len(errors) == 1 and "eps" in next(iter(errors.values()))
    assert pd.read_parquet(out / "results.parquet")["point"].nunique() == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_on_a_scheduler_address_and_resume_recomputes_only_the_missing_point(
        tmp_path):
    """The cheap version of the two slow tests below: ``scheduler=`` the address of a
    cluster of threads in this process (no worker process to start and compile in), two
    points of one grid size (one compilation), one removed and recomputed on resume."""
    path = _write(tmp_path, zip=[])
    out = tmp_path / "remote"
    with _in_process_cluster() as cluster:
        run_sweep(path, out, scheduler=cluster.scheduler_address, progress=False)
        table = pd.read_parquet(out / "results.parquet")
        assert set(table["method"]) == {"gd", "langevin", "jko"}
        assert table["point"].nunique() == 2
        victim = sorted((out / "points").iterdir())[1]
        before = {p.name: (p / "point.json").stat().st_mtime_ns
                  for p in (out / "points").iterdir()}
        shutil.rmtree(victim)
        run_sweep(path, out, scheduler=cluster.scheduler_address, resume=True,
                  progress=False)
    after = {p.name: (p / "point.json").stat().st_mtime_ns for p in (out / "points").iterdir()}
    assert {k for k in after if after[k] != before.get(k)} == {victim.name}
    key = ["point", "method", "t"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "results.parquet").sort_values(key).reset_index(drop=True),
        table.sort_values(key).reset_index(drop=True), check_exact=False, rtol=1e-12)


@pytest.mark.slow
def test_scheduler_address_path(tmp_path):
    """A scheduler and a worker started by the `dask` CLI on 127.0.0.1."""
    port = _free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    addr = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", addr, "--nworkers", "1", "--nthreads", "1",
                               "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        path = _write(tmp_path, product={"jko.eps_over_delta2": [1.0]}, zip=[])
        out = run_sweep(path, tmp_path / "remote", scheduler=addr, progress=False)
        table = pd.read_parquet(out / "results.parquet")
        assert table["point"].nunique() == 1 and (table["method"] == "jko").any()
    finally:
        worker.terminate()
        sched.terminate()
        worker.wait(20)
        sched.wait(20)


def test_cli_sweep_and_study_errors_are_one_line_with_the_folder_status(tmp_path):
    """A folder that is no finished sweep, and a sweep folder that exists: exit 3, one line."""
    from typer.testing import CliRunner

    from mfjko.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["study", str(tmp_path)])
    assert res.exit_code == 3
    assert "no results.parquet" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["sweep", str(tmp_path / "none.yaml"), "--out", str(tmp_path),
                              "--resume"])
    assert res.exit_code in (2, 3, 4) and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
