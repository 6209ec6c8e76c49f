"""Crash consistency, tested the way storage engines test themselves: a small run is
killed at each of its write points in turn (every file write just before its rename, and
every delete; :data:`mfjko.io.CRASH`), the report is rendered on the interrupted folder,
the run is resumed, and metrics.csv and every zarr array must equal those of the
uninterrupted run exactly. The kill is in-process (:class:`mfjko.io.SimulatedCrash`, a
BaseException no handler cleans up after; queued writes are refused) except in
``test_real_kill_at_a_write_point``, which ends a subprocess with ``os._exit`` via
``MFJKO_CRASH_AT``. The full sweep is ``slow``; the default suite crashes at a sample."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from mfjko import io, report
from mfjko.config import parse_config
from mfjko.io import CRASH, RunStore, SimulatedCrash, is_run_folder
from mfjko.runner import run
from support import tiny_raw


def crash_raw() -> dict:
    """GD and JKO (particles, grid weights, interval diagnostics without a t = 0 frame,
    per-step arrays), three records each."""
    raw = tiny_raw()
    raw["methods"] = {"gd": {"h": 0.1}, "jko": raw["methods"]["jko"]}
    return raw


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(folder / "trajectories.zarr"), mode="r")
    out = {}

    def visit(node, prefix):
        for name, arr in node.arrays():
            out[f"{prefix}{name}"] = np.asarray(arr[...])
        for name, sub in node.groups():
            visit(sub, f"{prefix}{name}/")

    visit(g, "")
    return out


def assert_same_results(folder: Path, reference: Path) -> None:
    """metrics.csv byte for byte, and every zarr array (same paths, dtypes, values)."""
    assert (folder / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    got, want = _arrays(folder), _arrays(reference)
    assert sorted(got) == sorted(want)
    for path, a in want.items():
        b = got[path]
        assert b.dtype == a.dtype and b.shape == a.shape, path
        np.testing.assert_array_equal(b, a, err_msg=path)
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def view_fingerprint(folder: Path) -> str:
    """Everything :func:`mfjko.report.render` reads of a folder, as a hash: config.yaml
    without its timestamps, metrics.csv, which methods have timings, the checkpoints'
    committed facts and every array of the committed view. Wall-clock values (timings,
    provenance) are left out: render only prints them."""
    h = hashlib.sha256()
    cfg = folder / "config.yaml"
    doc = yaml.safe_load(cfg.read_text()) if cfg.exists() else None
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in ("provenance", "resumed")}
    h.update(json.dumps(doc, sort_keys=True, default=str).encode())
    m = folder / "metrics.csv"
    h.update(m.read_bytes() if m.exists() else b"<none>")
    store = RunStore(folder)
    h.update(json.dumps(sorted(store.read_timings())).encode())
    for name, ck in store.checkpoints().items():
        h.update(json.dumps([name, ck["segments"], ck["n_steps"], ck["rows"], ck["notes"],
                             ck["lengths"]], sort_keys=True).encode())
    if store.zarr_path.exists():
        view = store.committed_view()
        for path in sorted(_arrays(folder)):
            if view.has(path):
                a = view.get(path)
                h.update(f"{path}{a.dtype}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and the labels of its write points in order."""
    folder = tmp_path_factory.mktemp("crash") / "reference"
    CRASH.arm(None, trace=True)
    try:
        run(parse_config(crash_raw()), folder, progress=False, render=False)
        trace = list(CRASH.trace)
    finally:
        CRASH.disarm()
    return folder, trace


def crash_and_resume(k: int, folder: Path, reference: Path, rendered: dict) -> str:
    """Kill the run at write point k, render the report of what is left (once per
    distinct committed view), resume, compare. Returns the label of point k."""
    cfg = parse_config(crash_raw())
    shutil.rmtree(folder, ignore_errors=True)
    CRASH.arm(k)
    try:
        with pytest.raises(SimulatedCrash) as info:
            run(cfg, folder, progress=False, render=False)
    finally:
        CRASH.arm(None)
    label = str(info.value)
    if is_run_folder(folder):
        key = view_fingerprint(folder)
        if key not in rendered:
            page = report.render(folder).read_text()
            assert "<h1>mfjko run" in page
            rendered[key] = k
        run(cfg, folder, resume=True, progress=False, render=False)
    else:  # killed before the marker: the folder holds a temporary file only
        run(cfg, folder, progress=False, render=False)
    assert_same_results(folder, reference)
    return label


def test_uninterrupted_trace_covers_every_kind_of_write(reference):
    _, trace = reference
    text = "\n".join(trace)
    for what in (".mfjko-run", "config.yaml", "metrics.csv", "timings.json", "gd.npz",
                 "jko.npz", "jko/diag/", "jko/steps/", "gd/support_full/", "jko/weights/"):
        assert what in text, what
    assert len(trace) > 150


def _sample(trace: list[str]) -> list[int]:
    """1-based points: the marker; config.yaml; GD's first checkpoint; a JKO diagnostics
    write after JKO's first checkpoint (the frame without a t = 0 twin, issue 10.2);
    between two per-step arrays (10.3); a checkpoint just before its rename; metrics.csv
    after the last checkpoint; the last point."""
    def first(pred, start=0):
        return next(i for i in range(start, len(trace)) if pred(trace[i])) + 1

    ck_jko = first(lambda s: s.endswith("state/jko.npz"))
    return sorted({
        1,
        first(lambda s: s.endswith("config.yaml")),
        first(lambda s: s.endswith("state/gd.npz")),
        first(lambda s: "/jko/diag/" in s and "/c/" in s, ck_jko),
        first(lambda s: "/jko/steps/" in s and "zarr.json" in s, ck_jko) + 3,
        len(trace) - 1 - [s.endswith("state/jko.npz") for s in trace][::-1].index(True),
        len(trace),
    })


def test_crash_at_sampled_write_points(reference, tmp_path):
    ref, trace = reference
    rendered: dict = {}
    for k in _sample(trace):
        crash_and_resume(k, tmp_path / "run", ref, rendered)
    assert len(rendered) >= 3


@pytest.mark.slow
def test_crash_at_every_write_point(reference, tmp_path):
    ref, trace = reference
    rendered: dict = {}
    labels = [crash_and_resume(k, tmp_path / "run", ref, rendered)
              for k in range(1, len(trace) + 1)]
    assert len(labels) == len(trace)
    print(f"\n{len(trace)} write points crashed and resumed; report rendered on "
          f"{len(rendered)} distinct committed views")


def test_real_kill_at_a_write_point(reference, tmp_path):
    """MFJKO_CRASH_AT ends a real process (exit 137, no cleanup) between the JKO
    diagnostics writes; `mfjko run --resume` then completes it to the same results."""
    ref, trace = reference
    k = _sample(trace)[3]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(crash_raw()))
    folder = tmp_path / "run"
    cmd = [sys.executable, "-m", "mfjko.cli", "run", str(config), "--out", str(folder),
           "--no-progress"]
    env = {**os.environ, io.CRASH_ENV: str(k)}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == io.CRASH_EXIT_CODE, res.stderr[-2000:]
    assert not (folder / "report.html").exists()
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_same_results(folder, ref)
