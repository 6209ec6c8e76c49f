"""Results storage of one run folder, written incrementally and crash-consistently.

Layout of a run folder DIR::

    config.yaml           resolved config + provenance (versions, git revision, time, platform)
    metrics.csv           tidy metrics, one row per (method, t)
    trajectories.zarr/    per method: t, predictions, grid weights / subsampled particles,
                          per-step solver diagnostics (appended after every segment)
    state/<method>.npz    checkpoint: segments done, dynamical state, metric rows, seconds
    timings.json          wall-clock seconds per method (kept out of metrics.csv so that a
                          resumed run's metrics.csv equals an uninterrupted one byte for byte)
    figures/, report.html written by :mod:`mfjko.report`

Consistency: after a segment, the zarr arrays are appended first and the checkpoint is
then replaced atomically (write a temporary file, ``os.replace``). A run killed in between
leaves zarr arrays longer than the checkpoint says; on resume :meth:`RunStore.truncate`
cuts them back, so at most the last interval is lost.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
from pathlib import Path

import numpy as np
import yaml
import zarr

from mfjko import metrics as _metrics

__all__ = ["RunStore", "METRIC_COLUMNS", "read_metrics", "atomic_write_text"]

#: columns of metrics.csv, in order (the metrics are mfjko.metrics.ROW_METRICS')
METRIC_COLUMNS = ("method", "t", *_metrics.COLUMNS)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v))


def read_metrics(path) -> list[dict]:
    """metrics.csv as a list of dicts (floats; empty cells → NaN)."""
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({k: (v if k == "method" else (float(v) if v != "" else math.nan))
                         for k, v in r.items()})
    return rows


class RunStore:
    """Reads and writes one run folder (see module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.state_dir = self.root / "state"
        self.zarr_path = self.root / "trajectories.zarr"
        self.figures = self.root / "figures"

    # ------------------------------------------------------------------ folder
    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        self.figures.mkdir(exist_ok=True)
        zarr.open_group(str(self.zarr_path), mode="a")

    def group(self, mode: str = "a") -> zarr.Group:
        return zarr.open_group(str(self.zarr_path), mode=mode)

    # ------------------------------------------------------------------ config
    def write_config(self, doc: dict) -> None:
        atomic_write_text(self.root / "config.yaml",
                          yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict:
        return yaml.safe_load((self.root / "config.yaml").read_text())

    # ------------------------------------------------------------------ arrays
    def put(self, path: str, array) -> None:
        """Store a fixed array (overwritten if present)."""
        g = self.group()
        a = np.asarray(array)
        if path in g:
            del g[path]
        arr = g.create_array(path, shape=a.shape, dtype=a.dtype,
                             chunks=a.shape if a.ndim else None)
        arr[...] = a
        arr.attrs["fixed"] = True

    def append(self, path: str, frame) -> None:
        """Append one frame (a record) along a new leading axis."""
        self.extend(path, np.asarray(frame)[None])

    def extend(self, path: str, frames) -> None:
        """Append several frames (n, ...) along the leading axis."""
        a = np.asarray(frames)
        if a.shape[0] == 0:
            return
        g = self.group()
        if path not in g:
            chunks = (max(1, min(64, int(2**22 // max(a[0].size * 8, 1)))),) + a.shape[1:]
            g.create_array(path, shape=(0,) + a.shape[1:], dtype=a.dtype, chunks=chunks)
        g[path].append(a, axis=0)

    def get(self, path: str) -> np.ndarray:
        return np.asarray(self.group("r")[path][...])

    def has(self, path: str) -> bool:
        return self.zarr_path.exists() and path in self.group("r")

    def truncate(self, prefix: str, n_records: int, n_steps: int | None = None) -> None:
        """Cut every appended array under ``prefix`` back to ``n_records`` frames (those under
        ``prefix/steps`` to ``n_steps``): undo a segment written after the last checkpoint.
        """
        g = self.group()
        if prefix not in g:
            return

        def visit(node, path):
            for name, arr in node.arrays():
                full = f"{path}/{name}"
                if arr.attrs.get("fixed", False):
                    continue
                keep = n_steps if "/steps" in full else n_records
                if keep is not None and arr.shape[0] > keep:
                    arr.resize((keep,) + arr.shape[1:])
            for name, sub in node.groups():
                visit(sub, f"{path}/{name}")

        visit(g[prefix], prefix)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, method: str, *, segments: int, state: dict, rows: list[dict],
                        seconds: float, n_steps: int, notes: list[str] = ()) -> None:
        payload = {f"state__{k}": np.asarray(v) for k, v in state.items()}
        payload["segments"] = np.asarray(segments)
        payload["seconds"] = np.asarray(seconds)
        payload["n_steps"] = np.asarray(n_steps)
        payload["rows"] = np.asarray(json.dumps(rows))
        payload["notes"] = np.asarray(json.dumps(list(notes)))
        tmp = self.state_dir / f"{method}.tmp.npz"
        np.savez(tmp, **payload)
        os.replace(tmp, self.state_dir / f"{method}.npz")

    def load_checkpoint(self, method: str) -> dict | None:
        path = self.state_dir / f"{method}.npz"
        if not path.exists():
            return None
        with np.load(path) as z:
            state = {k.removeprefix("state__"): np.array(z[k]) for k in z.files
                     if k.startswith("state__")}
            return {
                "segments": int(z["segments"]),
                "seconds": float(z["seconds"]),
                "n_steps": int(z["n_steps"]),
                "rows": json.loads(str(z["rows"])),
                "notes": json.loads(str(z["notes"])) if "notes" in z.files else [],
                "state": state,
            }

    def checkpoints(self) -> dict[str, dict]:
        out = {}
        if self.state_dir.exists():
            for p in sorted(self.state_dir.glob("*.npz")):
                if p.name.endswith(".tmp.npz"):
                    continue
                out[p.stem] = self.load_checkpoint(p.stem)
        return out

    # ------------------------------------------------------------------ metrics
    def write_metrics(self, rows_by_method: dict[str, list[dict]], order: list[str]) -> None:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(METRIC_COLUMNS)
        for m in order:
            for r in rows_by_method.get(m, []):
                w.writerow([_fmt(r.get(c)) for c in METRIC_COLUMNS])
        atomic_write_text(self.root / "metrics.csv", buf.getvalue())

    def write_timings(self, timings: dict) -> None:
        atomic_write_text(self.root / "timings.json", json.dumps(timings, indent=2))

    def read_timings(self) -> dict:
        p = self.root / "timings.json"
        return json.loads(p.read_text()) if p.exists() else {}
