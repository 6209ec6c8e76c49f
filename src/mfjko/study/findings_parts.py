r"""The building blocks of docs/FINDINGS.md shared by its sections.

Used by :mod:`.findings` (the page) and :mod:`.findings_wfr` (its WFR section).

Reading a study's outputs (runs/studies/<name>/study/summary.json and points.csv), number
formats, copied figures, regime and pinning-boundary tables, and the phase-diagram
section. A module of its own so that the sections import it and not each other.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from mfjko.study.analysis import fit_rate
from mfjko.study.regime import REGIMES
from mfjko.sweep.results import read_results

__all__ = ["load_study", "pct", "num", "figure", "regime_table", "boundary_table", "span",
           "phase_reading", "phase_section", "PATH_STUDIES", "path_points", "path_rates"]

#: The studies of the refinement paths to GD (τ ∝ δ, ε/δ² fixed): the CPU grids, and their
#: 129³ ends in studies of their own (a sweep's point ids carry their index).
PATH_STUDIES = ("path_to_gd", "path_to_gd_fine", "path_to_gd_fast", "path_to_gd_fast_fine")


def load_study(root: Path, name: str):
    """(summary, points) of study ``name`` under ``root``; (None, None) if not run."""
    folder = root / name / "study"
    if not (folder / "summary.json").exists():
        return None, None
    return (json.loads((folder / "summary.json").read_text()),
            read_results(folder / "points.csv"))


def path_points(folders) -> pd.DataFrame | None:
    """The points of the studies in ``folders`` (those run) as one table.

    A refinement path's grids may be split over several studies (path_to_gd*, debias*).

    Args:
      folders: study folders (runs/studies/<name>); a folder without a finished study is
        skipped.

    Returns:
      Their points.csv rows with ``study`` (the folder's name) and ``c`` (``tag.c`` to two
      decimals), or None when none was run.
    """
    frames = []
    for folder in map(Path, folders):
        table = folder / "study" / "points.csv"
        if table.exists():
            frames.append(read_results(table).assign(study=folder.name))
    if not frames:
        return None
    points = pd.concat(frames, ignore_index=True)
    points["c"] = points["tag.c"].astype(float).round(2)
    return points


def path_rates(points: pd.DataFrame,
               metrics=("gap_gd", "gap_langevin", "langevin_gap_gd")) -> list[dict]:
    """Per path (c, ε/δ²) and metric: the rate in δ fitted over every grid of the path.

    Args:
      points: :func:`path_points`' table.
      metrics: the point columns to fit (sup gaps over the records).

    Returns:
      One dict per (path, metric), paths by increasing c then ε/δ²: :func:`fit_rate`'s keys
      plus ``path`` ("c = 0.18, ε/δ² = 1"), ``metric``, ``values`` (coarsest grid first)
      and ``grids`` ("17³–129³").
    """
    out = []
    for (c, r), grp in points.groupby(["c", "eps_over_delta2"], sort=True):
        grp = grp.sort_values("delta", ascending=False)
        sizes = [round(7 / d) + 1 for d in grp["delta"]]
        for metric in metrics:
            out.append({**fit_rate(grp["delta"], grp[metric]), "path": f"c = {c:g}, ε/δ² = {r:g}",
                        "metric": metric, "values": grp[metric].tolist(),
                        "grids": f"{sizes[0]}³–{sizes[-1]}³"})
    return out


def pct(v) -> str:
    """``v`` as a percentage with one decimal ("n/a" if missing or not finite)."""
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def num(v, digits: int = 3) -> str:
    """``v`` with ``digits`` significant digits ("n/a" if missing or not finite)."""
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}g}"


def figure(root: Path, name: str, fig: str, figdir: Path, caption: str) -> str:
    """Copy figure ``fig`` of study ``name`` to ``figdir``; its Markdown ("" if absent)."""
    src = root / name / "study" / fig
    if not src.exists():
        return ""
    dst = figdir / f"{name}_{fig}"
    shutil.copyfile(src, dst)
    return f"![{caption}](findings/{dst.name})\n\n*{caption}*\n"


def regime_table(points: pd.DataFrame, by: str) -> str:
    """Markdown table: the number of runs in each regime, by the column ``by``."""
    tab = pd.crosstab(points[by], points["regime"])
    head = "| " + by + " | " + " | ".join(tab.columns) + " |\n"
    head += "|" + " --- |" * (len(tab.columns) + 1) + "\n"
    return head + "".join(f"| {num(i)} | " + " | ".join(str(v) for v in row) + " |\n"
                          for i, row in zip(tab.index, tab.to_numpy(), strict=True))


def boundary_table(summary: dict) -> str:
    """Markdown table: measured vs predicted pinning boundary at each (grid, c < 1/2)."""
    rows = [r for r in summary.get("boundary", []) if r["courant"] < 0.5]
    if not rows:
        return ""
    out = ("| grid (points) | c | measured r* (bracket) | predicted r*, scalar c | "
           "predicted r*, velocity field |\n| --- | --- | --- | --- | --- |\n")
    for r in rows:
        if r["pinned_everywhere"]:
            meas = "pinned at every ε/δ² swept"
        elif r["free_everywhere"]:
            meas = "moves at every ε/δ² swept"
        else:
            meas = f"{num(r['measured'])} ({num(r['y_below'])}–{num(r['y_above'])})"
        out += (f"| {r['panel']} | {num(r['courant'])} | {meas} | "
                f"{num(r['predicted'])} | {num(r.get('predicted_field', math.nan))} |\n")
    return out


def span(values: pd.Series, fmt=None) -> str:
    """"lo–hi" of ``values`` formatted by ``fmt`` (one value if they are all equal)."""
    fmt = fmt or (lambda v: num(v, 2))
    lo, hi = float(values.min()), float(values.max())
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def phase_reading(points: pd.DataFrame) -> str:
    """Where each regime lives in (grid, c, ε/δ², D), and what the moving runs track.

    Sentences computed from the points (no number typed in).
    """
    out = []
    for regime in REGIMES:
        sub = points[points["regime"] == regime]
        if sub.empty:
            continue
        out.append(f"- **{regime}** ({len(sub)} runs): grids of "
                   f"{span(sub['grid_size'], lambda v: str(int(v)))} points, c = "
                   f"{span(sub['courant'])}, ε/δ² = {span(sub['eps_over_delta2'])}, D = "
                   f"{span(sub['D'])}; sup gap to GD {span(sub['gap_gd'], pct)} "
                   f"(median {pct(sub['gap_gd'].median())})"
                   + ("" if sub["gap_langevin"].isna().all() else
                      f", to Langevin {span(sub['gap_langevin'].dropna(), pct)} "
                      f"(median {pct(sub['gap_langevin'].median())})") + ".")
    moving = points[(points["regime"] != "pinned") & points["gap_langevin"].notna()]
    if len(moving):
        closer = moving["gap_langevin"] < moving["gap_gd"]
        wide = moving["eps_over_delta2"] >= 1
        out.append(f"- Of the {len(moving)} runs that move, {int(closer.sum())} are closer to "
                   "mean-field Langevin at D = ε/(4τ) than to GD; among those with ε/δ² ≥ 1, "
                   f"{int(closer[wide].sum())} of {int(wide.sum())}.")
    return "\n".join(out) + "\n"


def phase_section(root: Path, name: str, title: str, figdir: Path) -> str:
    """The Markdown section of a phase-diagram study: regimes, pinning, figures, tables."""
    summary, points = load_study(root, name)
    if summary is None:
        return f"## {title}\n\n(not run: `make study` produces it)\n\n"
    n = summary["points"]
    reg = summary["regimes"]
    text = [f"## {title}\n",
            f"{n} runs. Regimes by the rule of docs/STUDY.md: "
            + ", ".join(f"{k} {v}" for k, v in sorted(reg.items())) + ".\n"]
    text.append(phase_reading(points))
    err1 = summary.get("drift_predicted_error")
    errf = summary.get("drift_predicted_field_error")
    if err1 is not None:
        text.append(f"Pinning prediction: the measured mean drift ratio differs from the "
                    f"scalar model ρ(c, ε/δ²) at c = τV₀/δ by {num(err1, 2)} (median absolute "
                    "difference)"
                    + (f", and from the model applied to each coordinate of the initial "
                       f"velocity field by {num(errf, 2)}" if errf is not None else "")
                    + ".\n")
    text.append(figure(root, name, "phase.png", figdir,
                        f"{name}: gaps over (c, ε/δ²); dashed: predicted pinning boundary"))
    text.append(figure(root, name, "drift.png", figdir,
                        f"{name}: measured vs predicted drift ratio"))
    table = boundary_table(summary)
    if table:
        text.append("Pinning boundary along ε/δ² at each (grid, c): where the measured drift "
                    "ratio crosses 1/2, against the prediction ρ(c, r*) = 1/2.\n\n" + table)
    if "grid_size" in points:
        text.append("\nRegimes by grid:\n\n" + regime_table(points, "grid_size"))
    gd_like = points[points["regime"] == "GD-like"]
    if len(gd_like):
        best = gd_like.sort_values("gap_gd").iloc[0]
        text.append(f"\nClosest to GD: grid {int(best['grid_size'])} points, c = "
                    f"{num(best['courant'])}, ε/δ² = {num(best['eps_over_delta2'])}, D = "
                    f"{num(best['D'])}: gap {pct(best['gap_gd'])}.\n")
    return "\n".join(text) + "\n"
