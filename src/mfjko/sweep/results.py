r"""A sweep's results: one tidy table and one xarray Dataset.

``results.parquet``: one row per (point, method, t) with the point's axis coordinates, its
facts (δ, τ, ε, D, ε/δ², V₀, c), the metrics.csv columns and, for the JKO, the mean drift
ratio of the steps ending at that record (the pinning diagnostic). ``results.zarr``: the
same as an xarray Dataset with dimensions (sweep axes..., method, t); a zipped axis is
indexed by position, with one coordinate per key.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mfjko.io import read_metrics

__all__ = ["collect", "load_table", "read_results", "axis_columns", "write_zarr", "fact_prefix",
           "RENAMED", "current_name", "upgrade_spec"]

#: names of columns, facts and sweep keys renamed since results were first stored, old →
#: new (issue 19: δ is the grid spacing, h and τ name time steps). Stored results and
#: sweep files with an old name are read under the new one: :func:`read_results` (tables),
#: :func:`_point_rows` (point.json), :func:`upgrade_spec` (sweep files, with a warning)
RENAMED = {"eps_over_h2": "eps_over_delta2"}


def fact_prefix(method: str) -> str:
    """The prefix of a grid method's facts and resolved keys: none for jko, else ``<method>_``.

    (jko's names predate the other grid methods and stay unprefixed.)
    """
    return "" if method == "jko" else f"{method}_"


def current_name(name: str, renamed: dict[str, str] = RENAMED) -> str:
    """``name`` with an old name of ``renamed`` replaced by the new one.

    The old name alone, after a prefix (``jko.eps_over_h2``, ``wfr_jko_eps_over_h2``), or
    as such in a part of a zip axis name ``a+b``.
    """
    parts = name.split("+")
    for i, part in enumerate(parts):
        for old, new in renamed.items():
            if part == old or part.endswith(("." + old, "_" + old)):
                parts[i] = part[: len(part) - len(old)] + new
                break
    return "+".join(parts)


def _current(doc: dict) -> dict:
    """point.json's coordinates or facts with their keys (a zip group's too) as now named."""
    return {current_name(k): {current_name(kk): vv for kk, vv in v.items()}
            if isinstance(v, dict) else v for k, v in doc.items()}


def upgrade_spec(doc: dict) -> dict:
    """A raw sweep document with the old names of :data:`RENAMED` replaced by the new ones.

    Axis keys (``product``, ``zip``) and the column names of ``study`` (keys such as
    ``where:``'s, values such as ``phase.y``'s); one FutureWarning names the old keys (a
    DeprecationWarning would be hidden from ``mfjko sweep`` users).
    """
    found = []

    def name(v):
        new = current_name(v) if isinstance(v, str) else v
        if new != v:
            found.append(v)
        return new

    def walk(v):
        if isinstance(v, dict):
            return {name(k): walk(x) for k, x in v.items()}
        return [walk(x) for x in v] if isinstance(v, list) else name(v)

    out = dict(doc)
    if isinstance(doc.get("product"), dict):
        out["product"] = {name(k): v for k, v in doc["product"].items()}
    if isinstance(doc.get("zip"), list):
        out["zip"] = [{name(k): v for k, v in g.items()} if isinstance(g, dict) else g
                      for g in doc["zip"]]
    if isinstance(doc.get("study"), dict):
        out["study"] = walk(doc["study"])
    if found:
        pairs = ", ".join(f"{k} → {current_name(k)}" for k in dict.fromkeys(found))
        warnings.warn(f"sweep {doc.get('name', 'sweep')}: renamed keys {pairs} (ε/δ², δ the "
                      "grid spacing); the old names are deprecated", FutureWarning,
                      stacklevel=2)
    return out


def _cell(value):
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def axis_columns(spec) -> dict[str, list[str]]:
    """Axis name → the table columns holding its coordinates."""
    out = {}
    for name, values in spec.axes():
        out[name] = list(values[0]) if isinstance(values[0], dict) else [name]
    return out


def _point_rows(folder: Path, spec, index_of: dict) -> list[dict]:
    doc = json.loads((folder / "point.json").read_text())
    # points of sweeps run before a rename (RENAMED): coordinates and facts as now named
    doc["coords"], doc["facts"] = _current(doc["coords"]), _current(doc["facts"])
    base = {"point": doc["id"], **doc["facts"]}
    for name, value in doc["coords"].items():
        if isinstance(value, dict):
            base.update({k: _cell(v) for k, v in value.items()})
            base[name] = index_of[name][json.dumps(value, sort_keys=True)]
        else:
            base[name] = _cell(value)
    # per-step drift ratios: the batched jko's, and those of shared grid methods (wfr_jko)
    drifts = {"jko": np.asarray(doc.get("drift", []), dtype=float),
              **{m: np.asarray(v, dtype=float) for m, v in doc.get("drift_methods", {}).items()}}
    rows = []
    for r in read_metrics(folder / "metrics.csv"):
        row = {**base, **r}
        row["drift_ratio"] = math.nan
        drift = drifts.get(r["method"], np.zeros(0))
        if drift.size and r["t"] > 0:
            # steps (k0, k1] of the interval ending at t: K = T/τ steps in all
            facts = doc["facts"]
            tau = facts[fact_prefix(r["method"]) + "tau"]
            k1 = int(round(r["t"] / tau))
            k0 = int(round((r["t"] - facts["record_every"]) / tau))
            window = drift[max(0, k0): k1]
            row["drift_ratio"] = float(np.mean(window)) if window.size else math.nan
        rows.append(row)
    return rows


def collect(out, spec, points) -> pd.DataFrame:
    """Write results.parquet and results.zarr from the finished points; return the table."""
    out = Path(out)
    index_of = {name: {json.dumps(v, sort_keys=True): i for i, v in enumerate(values)}
                for name, values in spec.axes() if isinstance(values[0], dict)}
    rows = []
    for p in points:
        folder = out / "points" / p.id
        if (folder / "point.json").exists():
            rows += _point_rows(folder, spec, index_of)
    table = pd.DataFrame(rows)
    errors = {p.id: (out / "points" / p.id / "error.txt").read_text().splitlines()[0]
              for p in points if (out / "points" / p.id / "error.txt").exists()}
    (out / "failures.json").write_text(json.dumps(errors, indent=1))
    if table.empty:
        return table
    table.to_parquet(out / "results.parquet", index=False)
    write_zarr(_dataset(table, spec), out / "results.zarr")
    return table


def write_zarr(ds, path) -> None:
    """Write an xarray Dataset to a zarr store with consolidated metadata, quietly.

    Consolidated metadata (a fast ``xr.open_zarr``) is not in the zarr v3 specification
    yet: zarr warns about it on every write.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata")
        ds.to_zarr(path, mode="w")


def _dataset(table: pd.DataFrame, spec):
    axes = [name for name, _ in spec.axes()]
    frame = table.copy()
    for name in axes:
        if frame[name].dtype == object:
            frame[name] = frame[name].astype(str)
    numeric = [c for c in frame.columns
               if c not in axes + ["method", "t", "point"] and frame[c].dtype != object]
    ds = frame.set_index(axes + ["method", "t"])[numeric].to_xarray()
    return ds


def read_results(path) -> pd.DataFrame:
    """A stored results table (results.parquet, study/points.csv), columns as now named.

    The one reader of stored tables: a column of an older version under an old name
    (:data:`RENAMED`) comes back under the new one.
    """
    path = Path(path)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return table.rename(columns=current_name)


def load_table(out) -> pd.DataFrame:
    """The tidy table of a finished sweep folder (:func:`read_results`)."""
    return read_results(Path(out) / "results.parquet")
