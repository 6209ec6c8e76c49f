"""Crash consistency, tested the way storage engines test themselves: a small run is
killed at each of its write points in turn (every file write just before its rename, every
delete: :data:`mfjko.io.CRASH`), the report is rendered on what is left, the run is
resumed, and metrics.csv and every zarr array must equal the uninterrupted run's exactly.
The kill is in-process (:class:`mfjko.io.SimulatedCrash`, a BaseException nothing cleans
up after; queued writes are refused) except in ``test_real_kill_at_a_write_point``, which
ends a process with ``os._exit`` (``MFJKO_CRASH_AT``). The full sweep is ``slow``."""

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from runs_support import assert_same_results, crash_raw, view_fingerprint, write_config
from zarr.errors import ZarrUserWarning

from mfjko import io, report
from mfjko.config import parse_config
from mfjko.io import CRASH, SimulatedCrash, is_run_folder
from mfjko.runner import INTERRUPT_ENV, RunInterrupted, run


def crash_and_resume(k: int, folder: Path, reference: Path, rendered: dict) -> str:
    """Kill the run at write point k, render the report of what is left (once per distinct
    committed view: the report reads nothing else), resume, compare. Returns the label."""
    cfg = parse_config(crash_raw())
    shutil.rmtree(folder, ignore_errors=True)
    CRASH.arm(k)
    try:
        with pytest.raises(SimulatedCrash) as info:
            run(cfg, folder, progress=False, render=False)
    finally:
        CRASH.arm(None)
    if is_run_folder(folder):
        key = view_fingerprint(folder)
        if key not in rendered:
            page = report.render(folder).read_text()
            assert "<h1>mfjko run" in page
            rendered[key] = k
        with warnings.catch_warnings():  # no leftover zarr cannot read
            warnings.filterwarnings("error", category=ZarrUserWarning)
            run(cfg, folder, resume=True, progress=False, render=False)
    else:  # killed before the marker's rename: only a temporary file, the folder is empty
        run(cfg, folder, progress=False, render=False)
    assert_same_results(folder, reference)
    return str(info.value)


def sample(trace: list[str]) -> list[int]:
    """1-based write points.

    The marker (only a temporary file is left); config.yaml (the folder has its arrays but
    no config); GD's first checkpoint, just before its rename, and just after it; a JKO
    diagnostics chunk after JKO's first checkpoint (a frame without a t = 0 twin, issue
    10.2); between two per-step arrays (10.3). Not JKO's last checkpoint: that committed
    view (GD and two JKO records) costs one more full report, ≈ 3.5 CPU-s, and is
    test_resume_cuts_every_uncommitted_frame's; test_crash_at_every_write_point kills
    there too.
    """
    def first(pred, start=0):
        return next(i for i in range(start, len(trace)) if pred(trace[i])) + 1

    ck_gd = first(lambda s: s.endswith("state/gd.npz"))
    ck_jko = first(lambda s: s.endswith("state/jko.npz"))
    return [1, first(lambda s: s.endswith("config.yaml")), ck_gd, ck_gd + 1,
            first(lambda s: "/jko/diag/" in s and "/c/" in s, ck_jko),
            first(lambda s: "/jko/steps/" in s and "zarr.json" in s, ck_jko) + 3]


def test_resume_removes_what_a_killed_write_left(tmp_path):
    """Temporary files and folders, and array folders killed before their metadata."""
    store = io.RunStore(tmp_path / "run")
    store.create()
    half = store.zarr_path / "jko" / "steps" / "t"
    half.mkdir(parents=True)
    (half / ".zarr.json.123.tmp").write_text("{")
    (store.root / ".metrics.csv.9.tmp").write_text("x")
    (store.zarr_path / ".gone.77.tmp").mkdir()
    (store.root / "keep.txt").write_text("x")
    store.remove_temporaries()
    assert not (store.zarr_path / "jko").exists()
    assert not (store.zarr_path / ".gone.77.tmp").exists()
    assert sorted(p.name for p in store.root.iterdir()) == [
        ".mfjko-run", "figures", "keep.txt", "state", "trajectories.zarr"]
    assert (store.zarr_path / "zarr.json").exists()


def test_resume_removes_a_group_killed_before_its_metadata(tmp_path):
    """zarr writes a new array's metadata and its new parent group's concurrently: a kill
    can leave jko/diag/x/zarr.json without jko/diag/zarr.json. The orphan goes; committed
    arrays and their chunks stay, and zarr lists the tree without a warning."""
    store = io.RunStore(tmp_path / "run")
    store.create()
    store.append("jko/t", np.float64(0.0))
    orphan = store.zarr_path / "jko" / "diag" / "x"
    orphan.mkdir(parents=True)
    (orphan / "zarr.json").write_text(
        (store.zarr_path / "jko" / "t" / "zarr.json").read_text())
    store.remove_temporaries()
    assert not (store.zarr_path / "jko" / "diag").exists()
    assert (store.zarr_path / "jko" / "t" / "zarr.json").exists()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=ZarrUserWarning)
        assert sorted(store.appended_arrays("jko")) == ["jko/t"]


def test_trace_covers_every_kind_of_write(crash_reference):
    _, trace = crash_reference
    text = "\n".join(trace)
    for what in (".mfjko-run", "config.yaml", "metrics.csv", "timings.json", "gd.npz",
                 "jko.npz", "jko/diag/", "jko/steps/", "gd/support_full/", "jko/weights/",
                 "data/X/"):
        assert what in text, what
    # every record commits once: 3 records of GD and of JKO; metrics.csv is rewritten at
    # each method's start and after each record, timings.json after each record and at
    # each method's end
    count = {k: sum(s.endswith(k) for s in trace)
             for k in ("state/gd.npz", "state/jko.npz", "metrics.csv", "timings.json")}
    assert count == {"state/gd.npz": 3, "state/jko.npz": 3, "metrics.csv": 8,
                     "timings.json": 8}


def test_crash_at_sampled_write_points(crash_reference, tmp_path):
    ref, trace = crash_reference
    rendered: dict = {}
    for k in sample(trace):
        crash_and_resume(k, tmp_path / "run", ref, rendered)
    # distinct committed states rendered (the marker-only folder is not a run): at least
    # arrays without a config, the config without a record, GD's first record, JKO's first
    assert len(rendered) >= 4


@pytest.mark.slow
def test_crash_at_every_write_point(crash_reference, tmp_path):
    ref, trace = crash_reference
    rendered: dict = {}
    for k in range(1, len(trace) + 1):
        crash_and_resume(k, tmp_path / "run", ref, rendered)
    print(f"\n{len(trace)} write points crashed and resumed; report rendered on "
          f"{len(rendered)} distinct committed views")


def test_resume_cuts_every_uncommitted_frame(crash_reference, tmp_path, monkeypatch):
    """Issues 10.2 and 10.3 as reported: JKO's interval diagnostics have no t = 0 frame and
    its per-step arrays were appended to different lengths when the process died. Stop after
    JKO's first interval (committed), then append what a kill after the next interval's
    appends leaves (one more frame on every JKO array, two on jko/steps/t): the report
    renders the committed part, and resume gives the uninterrupted arrays exactly."""
    ref, _ = crash_reference
    out = tmp_path / "run"
    cfg = parse_config(crash_raw())
    monkeypatch.setenv(INTERRUPT_ENV, "3")  # GD's two intervals, then JKO's first
    with pytest.raises(RunInterrupted):
        run(cfg, out, progress=False, render=False)
    monkeypatch.delenv(INTERRUPT_ENV)
    g = zarr.open_group(str(out / "trajectories.zarr"), mode="a")
    appended = {f"jko/{k}" for k in ("t", "loss", "pred_train", "pred_test", "weights")}
    appended |= {f"jko/diag/{k}" for k in g["jko/diag"].array_keys()}
    appended |= {f"jko/steps/{k}" for k in g["jko/steps"].array_keys()}
    assert len([p for p in appended if "/diag/" in p]) >= 5
    for path in appended:
        arr = g[path]
        arr.append(np.asarray(arr[-1:]) + 1.0, axis=0)
    g["jko/steps/t"].append(np.asarray([9.0]), axis=0)
    assert g["jko/steps/t"].shape[0] != g["jko/steps/sinkhorn_iterations"].shape[0]
    page = report.render(out).read_text()
    assert "jko_diagnostics.png" in page and "measure.png" in page
    run(cfg, out, resume=True, progress=False, render=False)
    assert_same_results(out, ref)


@pytest.mark.slow
def test_real_kill_at_a_write_point(crash_reference, tmp_path):
    """MFJKO_CRASH_AT ends a real process (exit 137, no cleanup) just after GD's first
    checkpoint; `mfjko run --resume` then completes it to the same results."""
    ref, trace = crash_reference
    k = sample(trace)[3]
    config = write_config(tmp_path, crash_raw())
    folder = tmp_path / "run"
    cmd = [sys.executable, "-m", "mfjko.cli", "run", str(config), "--out", str(folder),
           "--no-progress"]
    res = subprocess.run(cmd, env={**os.environ, io.CRASH_ENV: str(k)}, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == io.CRASH_EXIT_CODE, res.stderr[-2000:]
    assert not (folder / "report.html").exists()
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_same_results(folder, ref)
