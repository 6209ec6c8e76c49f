r"""The GPU section of docs/FINDINGS.md: the finest grids, run by scripts/gpu_refine.sh.

A 2-core CPU cannot sweep δ → 0 in 3-D; the sweeps of studies/gpu/*.yaml ran on a GPU
worker of a Dask scheduler (the same code) and their outputs are kept in the repository,
under studies/gpu/results/<name>/ (study/summary.json, study/points.csv, the figures,
results.parquet, one point.json per point with its timings) with device.txt naming the
device. Every number of the section is read from there; the 41³ points shared with the
CPU study regression_refine are compared with it when that study has been run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from mfjko.sweep.results import read_results

__all__ = ["section", "brief_lines", "cpu_agreement", "RESULTS"]

#: where the GPU sweeps' outputs are kept (relative to the repository root)
RESULTS = Path(__file__).resolve().parents[3] / "studies" / "gpu" / "results"
_REFINE, _MOBILITY = "regression_refine_fine", "regression_mobility"


def _pct(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}g}"


def _points(root: Path, name: str) -> pd.DataFrame | None:
    f = root / name / "study" / "points.csv"
    return read_results(f) if f.exists() else None


def device(root: Path = RESULTS) -> str:
    """The device line of device.txt: GPU, memory, driver; JAX version and devices."""
    f = root / "device.txt"
    return " · ".join(f.read_text().split("\n")).strip(" ·") if f.exists() else "unknown"


def _seconds(root: Path, name: str) -> dict[int, float]:
    """JKO wall seconds per grid size n (a point's batch shares them: taken once)."""
    out: dict[int, float] = {}
    for f in sorted((root / name / "points").glob("*.json")):
        p = json.loads(f.read_text())
        out[int(p["resolved"]["grid_n"])] = float(p["seconds"]["jko"])
    return out


def cpu_agreement(root: Path = RESULTS, cpu_root: Path = Path("runs/studies")) -> dict | None:
    """Max relative difference GPU vs CPU on the grid sizes both refinement sweeps ran.

    Over the JKO rows (every record) of the JKO's own figures, loss and
    drift_ratio; None when the CPU study has no results.
    """
    cpu_f = Path(cpu_root) / "regression_refine" / "results.parquet"
    gpu_f = root / _REFINE / "results.parquet"
    if not (cpu_f.exists() and gpu_f.exists()):
        return None
    cpu, gpu = read_results(cpu_f), read_results(gpu_f)
    keys = ["jko.grid_n", "jko.eps_over_delta2", "jko.D", "t"]
    both = gpu[gpu.method == "jko"].merge(cpu[cpu.method == "jko"], on=keys,
                                          suffixes=("_gpu", "_cpu"))
    if both.empty:
        return None
    out = {"grids": sorted(int(n) for n in both["jko.grid_n"].unique()), "rows": len(both)}
    # the gaps are against references that differ (the GPU sweeps' sampled GD, the CPU
    # study's matched GD): only the JKO's own figures are comparable
    for col in ("loss", "drift_ratio"):
        a, b = both[f"{col}_gpu"].to_numpy(float), both[f"{col}_cpu"].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        out[col] = float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)))
    return out


def brief_lines(root: Path = RESULTS) -> list[str]:
    """The brief's lines from the GPU sweeps (empty when their results are absent)."""
    lines = []
    ref = _points(root, _REFINE)
    if ref is not None:
        path = ref[np.isclose(ref["eps_over_delta2"], 0.5)].sort_values("delta")
        if len(path) >= 2:
            fine, coarse = path.iloc[0], path.iloc[-1]
            lines.append(
                f"- **Fixed ε/δ² is not a path to GD** (GPU, grids up to "
                f"{round(fine['grid_size'] ** (1 / 3))}³): along c ≈ 0.25, ε/δ² = 0.5 (so "
                f"D = ε/(4τ) ∝ δ → 0) the sup loss gap to GD grows from "
                f"{_pct(coarse['gap_gd'])} at δ = {_num(coarse['delta'])} to "
                f"{_pct(fine['gap_gd'])} at δ = {_num(fine['delta'])}, and the drift ratio "
                f"settles at {_num(fine['drift_ratio'])} (predicted by the lattice model: "
                f"{_num(fine['drift_predicted'])}): at fixed (c, ε/δ²) the grid moves the "
                "mass at a fixed fraction of GD's speed on every grid, so it converges to a "
                "slowed flow, not to GD.")
    mob = _points(root, _MOBILITY)
    if mob is not None and mob["gap_gd"].notna().any():
        mob = mob.sort_values("eps_over_delta2")
        best = mob.loc[mob["gap_gd"].idxmin()]
        top = mob.iloc[-1]
        lines.append(
            f"- **ε/δ² ≈ 1 is the sweet spot** (GPU, {round(best['grid_size'] ** (1 / 3))}³, "
            f"c ≈ 0.25): gap to GD {', '.join(_pct(v) for v in mob['gap_gd'])} at ε/δ² = "
            f"{', '.join(_num(v, 2) for v in mob['eps_over_delta2'])}; the smallest, "
            f"{_pct(best['gap_gd'])}, at ε/δ² = {_num(best['eps_over_delta2'], 2)} (drift ratio "
            f"{_num(best['drift_ratio'])}). Below it the lattice slows the mass; above it the "
            f"diffusion D = ε/(4τ) takes over (at ε/δ² = {_num(top['eps_over_delta2'], 2)}: "
            f"{_pct(top['gap_langevin'])} from Langevin, {_pct(top['gap_gd'])} from GD). A "
            "refinement path to GD therefore keeps ε/δ² at or slowly above 1 while "
            "D = (ε/δ²)·δ²/(4τ) → 0 (τ ∝ δ).")
    return lines


def _mobility_table(points: pd.DataFrame) -> str:
    cols = [c for c in ("eps_over_delta2", "D", "courant", "drift_ratio", "drift_predicted",
                        "gap_gd", "gap_langevin", "langevin_gap_gd", "pred_gap_T",
                        "measure_gap_T", "regime") if c in points]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in points.sort_values("eps_over_delta2").to_dict("records"):
        lines.append("| " + " | ".join(
            _pct(r[c]) if "gap_gd" in c or c == "gap_langevin" else
            (str(r[c]) if isinstance(r[c], str) else _num(r[c])) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def section(figdir: Path, rates_section, root: Path = RESULTS,
            cpu_root: Path = Path("runs/studies")) -> str:
    """The section's markdown; ``rates_section(root, name, figdir)`` renders the rates."""
    if _points(root, _REFINE) is None and _points(root, _MOBILITY) is None:
        return "## Finer grids on a GPU\n\n(not run: scripts/gpu_refine.sh)\n\n"
    text = ["## Finer grids on a GPU (δ down to 0.039: up to 181³ = 5.9 M grid points)\n",
            f"Device: {device(root)}. Run with `bash scripts/gpu_refine.sh "
            "studies/gpu/<name>.yaml`: a Dask scheduler and one worker on the GPU machine, "
            "`mfjko sweep --scheduler`, the same code as on a CPU. The outputs are kept in "
            "`studies/gpu/results/` (`make study` does not rerun them).\n",
            "**These sweeps predate the matched references** (issue 17): their GD and "
            "Langevin references are one draw of 1000 sampled particles (seed 0), off by up to "
            "5 % and the same at every point, and their regimes used the earlier 5 % GD-first "
            "rule. Their JKO losses and drift ratios stand; their gaps to GD and Langevin and "
            "the verdicts below are withdrawn until rerun on a device (section \"What changed "
            "with matched references\").\n"]
    secs = _seconds(root, _REFINE)
    if secs:
        text.append("JKO wall time per grid (T = 4, both ε of a grid batched in one program): "
                    + ", ".join(f"{n}³ {s:.1f} s" for n, s in sorted(secs.items())) + ".\n")
    agree = cpu_agreement(root, cpu_root)
    if agree is not None:
        grids = ", ".join(f"{n}³" for n in agree["grids"])
        text.append(f"On the grids the CPU study also ran ({grids}, "
                    f"{agree['rows']} JKO records), GPU and CPU agree to a relative "
                    + ", ".join(f"{agree[c]:.1e} ({c})" for c in
                                ("loss", "drift_ratio")) + " (the JKO's own figures; the "
                    "gaps are against different references).\n")
    text.extend(brief_lines(root))
    text.append("")
    if _points(root, _REFINE) is not None:
        text.append("### " + rates_section(root, _REFINE, figdir).removeprefix("## "))
    mob = _points(root, _MOBILITY)
    if mob is not None:
        text.append("### One fine grid (128³), c ≈ 0.25, ε/δ² from 0.5 to 8\n")
        text.append(_mobility_table(mob))
        fig = root / _MOBILITY / "study" / "groups.png"
        if fig.exists():
            dst = figdir / f"gpu_{_MOBILITY}_groups.png"
            dst.write_bytes(fig.read_bytes())
            text.append(f"![gaps and drift ratio over ε/δ² on 128³](findings/{dst.name})\n")
    return "\n".join(text) + "\n"
