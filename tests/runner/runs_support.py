"""Helpers of the crash, signal and resume tests: the small config, the comparison of two
run folders, the fingerprint of what the report reads."""

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml
import zarr

from mfjko.io import RunStore
from support import tiny_raw


def crash_raw() -> dict:
    """GD and JKO (particles, grid weights, interval diagnostics without a t = 0 frame,
    per-step arrays), three records each (t = 0, 0.2, 0.4); JKO's measure gap at the last
    record only (its Sinkhorn solves were a third of a run's CPU; every record is written
    the same either way)."""
    raw = tiny_raw()
    raw["methods"] = {"gd": {"h": 0.1}, "jko": raw["methods"]["jko"]}
    raw["metrics"]["measure_gap"] = "final"
    return raw


def write_config(folder: Path, raw: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def arrays(folder: Path) -> dict[str, np.ndarray]:
    """Every array of the folder's trajectories.zarr, whole (path → values)."""
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
    """metrics.csv byte for byte, every zarr array (same paths, dtypes, shapes, values),
    and no temporary file left behind."""
    assert (folder / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    got, want = arrays(folder), arrays(reference)
    assert sorted(got) == sorted(want)
    for path, a in want.items():
        b = got[path]
        assert b.dtype == a.dtype and b.shape == a.shape, (path, b.shape, a.shape)
        np.testing.assert_array_equal(b, a, err_msg=path)
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def view_fingerprint(folder: Path) -> str:
    """A hash of everything :func:`mfjko.report.render` reads of a folder: config.yaml
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
    if (store.zarr_path / "zarr.json").exists():
        view = store.committed_view()
        for path in sorted(arrays(folder)):
            if view.has(path):
                a = view.get(path)
                h.update(f"{path}{a.dtype}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()
