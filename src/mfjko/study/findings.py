r"""docs/FINDINGS.md from the shipped studies (``make study``).

Every number in it is read from the studies' outputs (runs/studies/<name>/study/
summary.json and points.csv), every figure copied from them to docs/findings/.
Usage: ``python -m mfjko.study.findings [STUDIES_DIR] [OUT.md]``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from mfjko.study import findings_changes, findings_gpu, findings_wfr
from mfjko.study.findings_parts import (
    PATH_STUDIES,
    figure,
    load_study,
    num,
    path_points,
    path_rates,
    pct,
    phase_section,
    span,
)
from mfjko.study.regime import GAP_TOL, PIN_RATIO, pinning_boundary

__all__ = ["write_findings"]


def _rates_section(root: Path, name: str, figdir: Path) -> str:
    summary, _ = load_study(root, name)
    if summary is None:
        return "## Refinement paths\n\n(not run)\n\n"
    lines = ["## Refinement paths (δ → 0, τ ∝ δ)\n",
             "| path | gap | rate p in gap ∝ δ^p | ± s.e. | 95 % CI | n | values (coarse → fine) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary["rates"]:
        vals = ", ".join(num(v, 2) for v in reversed(r["values"]))
        lines.append(f"| {r['path']} | {r['metric']} | {num(r['rate'])} | "
                     f"{num(r['stderr'], 2)} | [{num(r['ci_low'])}, {num(r['ci_high'])}] | "
                     f"{r['n']} | {vals} |")
    lines.append("")
    _, points = load_study(root, name)
    cols = [c for c in ("grid_size", "delta", "tau", "eps", "D", "eps_over_delta2", "courant",
                        "gap_gd", "gap_gd_T", "gap_langevin", "pred_gap_T", "measure_gap_T",
                        "drift_ratio", "regime") if c in points]
    lines.append("The runs along the paths (τ is snapped to record_every/k, so c is only "
                 "approximately constant):\n")
    lines.append("| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols))
    for r in points.sort_values(["eps_over_delta2", "delta"]).to_dict("records"):
        lines.append("| " + " | ".join(
            pct(r[c]) if c.startswith("gap") else
            (str(r[c]) if isinstance(r[c], str) else num(r[c])) for c in cols) + " |")
    lines.append("")
    lines.append(figure(root, name, "refinement.png", figdir, "gaps along the refinement paths"))
    return "\n".join(lines) + "\n"


def _groups_reading(points: pd.DataFrame, x: str, hue: str) -> str:
    """For each value of ``x``: the ``hue`` closest to GD; a 2-valued hue is compared head on."""
    if not {x, hue, "gap_gd"} <= set(points) or points["gap_gd"].isna().all():
        return ""
    out = []
    hues = sorted(points[hue].dropna().unique(), key=str)
    wins = {h: 0 for h in hues}
    for xv, sub in points.groupby(x, sort=True):
        sub = sub.dropna(subset=["gap_gd"])
        if sub.empty:
            continue
        best = sub.loc[sub["gap_gd"].idxmin()]
        wins[best[hue]] = wins.get(best[hue], 0) + 1
        rest = ", ".join(f"{r[hue]}: {pct(r['gap_gd'])}" for _, r in sub.iterrows())
        out.append(f"- {x} = {xv}: closest to GD with {hue} = {best[hue]} ({rest}).")
    if len(hues) == 2:
        n = sum(wins.values())
        out.append(f"- {hue} = {hues[0]} is closer to GD at {wins[hues[0]]} of {n} values of "
                   f"{x}, {hue} = {hues[1]} at {wins[hues[1]]}.")
    return "Sup-in-time loss gap to GD:\n\n" + "\n".join(out) + "\n\n"


def _groups_section(root: Path, name: str, title: str, by: list[str], figdir: Path) -> str:
    summary, points = load_study(root, name)
    if summary is None:
        return f"## {title}\n\n(not run)\n\n"
    cols = [c for c in (*by, "gap_gd", "gap_langevin", "pred_gap_T", "F_gd_T", "F_jko_T",
                        "drift_ratio", "regime") if c in points]
    head = "| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols) + "\n"
    body = ""
    for d in points.sort_values(by).to_dict("records"):
        body += "| " + " | ".join(
            pct(d[c]) if c.startswith("gap") else
            (str(d[c]) if isinstance(d[c], str) else num(d[c])) for c in cols) + " |\n"
    return (f"## {title}\n\n" + _groups_reading(points, *by[:2]) + head + body + "\n"
            + figure(root, name, "groups.png", figdir, title) + "\n")


def _measured_boundary_text(summary: dict) -> str:
    rows = [r for r in summary.get("boundary", []) if r.get("measured") is not None
            and math.isfinite(r["measured"])]
    by_c: dict = {}
    for r in rows:
        by_c.setdefault(float(f"{r['courant']:.1g}"), []).append(r)
    parts = []
    for c, rs in sorted(by_c.items()):
        meas = pd.Series([r["measured"] for r in rs])
        pred = pd.Series([r["predicted"] for r in rs])
        field = pd.Series([r.get("predicted_field", math.nan) for r in rs]).dropna()
        fmt = (lambda v: num(v, 3))  # noqa: E731
        parts.append(f"c ≈ {c:g}: measured r* = {span(meas, fmt)} against "
                     f"{span(pred, fmt)} predicted"
                     + (f" ({span(field, fmt)} from the velocity field)" if len(field) else ""))
    return "; ".join(parts)


def _brief(root: Path, boundary) -> str:
    """The answer in brief: the model, then what the default problem's studies measured."""
    text = [
        "A grid JKO step of length τ with entropy ε on a grid of spacing δ is governed by two "
        "dimensionless numbers: c = τ|∇F′|/δ (cells per step) and r = ε/δ². (1) **Pinned** "
        "(mass does not move) when the drift ratio ρ(c, r) < 1/2, an exact formula for a "
        "linear potential: below half a cell per step, the grid needs ε/δ² above r*(c) "
        f"= {', '.join(num(b, 2) for b in boundary)} at c = 0.05, 0.1, 0.2, 0.3, 0.4. "
        "(2) Otherwise it is an implicit step of **mean-field Langevin at D = ε/(4τ)**, plus "
        "the grid's and the time step's discretization errors: Peyré's step carries the "
        "entropy εH(p) of its plan's first marginal, a diffusion (docs/MATH.md). (3) It "
        "follows **GD** only as D → 0 (the lattice's slow-down 1 − ρ is O(e^{−π²ε/δ²}), "
        "0.2 % at ε/δ² = 1, so along τ ∝ δ with ε/δ² fixed the gap to GD is the diffusion "
        "bias), or with the **debiased step**, which removes the first-order entropy "
        "(−(ε/2)H(p)) and leaves an O(ε²) Fisher-type residual. "
        "The regime rule: "
        f"pinned if the mean drift ratio < {PIN_RATIO}; else neither if the sup-in-time "
        f"relative loss gap to both GD and Langevin at D = ε/(4τ) exceeds {GAP_TOL:.0%}; "
        f"else GD-like or Langevin-like by the nearer reference when the two references "
        f"are resolvably apart (their own gap > {GAP_TOL:.0%} + twice its noise), and "
        "indistinguishable when they are not. References are matched: GD of the grid's own "
        "initial measure (deterministic) and Langevin seeds drawn from it (docs/STUDY.md).\n",
    ]
    summary, points = load_study(root, "regression")
    if summary is not None:
        reg = summary["regimes"]
        text.append(f"Measured on the default problem ({summary['points']} runs: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(reg.items())) + "):\n")
        bound = _measured_boundary_text(summary)
        if bound:
            text.append(f"- The pinning boundary is where the model puts it: {bound}.")
        moving = points[(points["regime"] != "pinned") & points["gap_langevin"].notna()]
        wide = moving[moving["eps_over_delta2"] >= 1]
        if len(wide):
            closer = int((wide["gap_langevin"] < wide["gap_gd"]).sum())
            text.append(f"- With ε/δ² ≥ 1, {closer} of {len(wide)} moving runs are closer to "
                        f"Langevin at D = ε/(4τ) than to GD (median sup gap "
                        f"{pct(wide['gap_langevin'].median())} to Langevin, "
                        f"{pct(wide['gap_gd'].median())} to GD).")
        gd_like = points[points["regime"] == "GD-like"]
        text.append(f"- {len(gd_like)} of {len(points)} runs are GD-like"
                    + (f", all on the {span(gd_like['grid_size'], lambda v: str(int(v)))}"
                       f"-point grid with D ≤ {num(gd_like['D'].max(), 2)}" if len(gd_like)
                       else "") + ".")
    refine, _ = load_study(root, "regression_refine")
    if refine is not None:
        for r in refine["rates"]:
            if r["path"].startswith("to GD"):
                sig = r["ci_low"] > 0
                text.append(f"- Refinement towards GD ({r['path'].split(': ', 1)[-1]}): "
                            f"{r['metric']} ∝ δ^p with p = {num(r['rate'], 2)} ± "
                            f"{num(r['stderr'], 2)} (95 % CI [{num(r['ci_low'], 2)}, "
                            f"{num(r['ci_high'], 2)}]"
                            + ("" if sig else ": not resolved") + ")"
                            + ("; two errors cancelling on these grids, not a path to GD "
                               "(section \"What changed\")" if r["path"].startswith(
                                   "to GD: ε/δ² = 0.5") else "") + ".")
    text.extend(_path_lines(root))
    return "\n".join(text) + "\n"


def _path_lines(root: Path) -> list[str]:
    """The brief's lines on the two routes to GD: D → 0, and the debiased step."""
    lines = []
    points = path_points(root / name for name in PATH_STUDIES)
    for r in path_rates(points, ("gap_gd",)) if points is not None else []:
        vals = r["values"]
        lines.append(f"- **Path to GD** ({r['path']}, τ ∝ δ, {r['n']} grids, {r['grids']}): "
                     f"sup gap to GD {pct(vals[0])} → {pct(vals[-1])}, {_rate_text(r)}")
    for debias, step in ((False, "Standard step, T = 10"), (True, "Debiased step")):
        r = _debias_rate(root, debias)
        if r is None:
            continue
        vals = r["values"]
        lines.append(f"- **{step}** ({r['path']}, T = 10, {r['n']} grids, "
                     f"{r['grids']}): sup gap to GD {pct(vals[0])} → {pct(vals[-1])}, "
                     f"{_rate_text(r)}")
    return lines


def _rate_text(r: dict) -> str:
    """"∝ δ^p with p = … (95 % CI […])." of a fitted rate (:func:`fit_rate`'s keys)."""
    return (f"∝ δ^p with p = {r['rate']:.2f} (95 % CI [{r['ci_low']:.2f}, "
            f"{r['ci_high']:.2f}]" + ("" if r["ci_low"] > 0 else ": not resolved") + ").")


def _debias_rate(root: Path, debias: bool) -> dict | None:
    """The rate in δ of the sup gap to GD along c = 0.23, ε/δ² = 1 (T = 10).

    Fitted over the grids of studies/debias.yaml and its fine end studies/debias_fine.yaml
    (when run); ``values`` from the coarsest grid to the finest. None when the debias study
    was not run.
    """
    points = path_points(root / name for name in ("debias", "debias_fine"))
    if points is None:
        return None
    sel = points[(points["jko.debias"].astype(str).str.lower() == str(debias).lower())
                 & (points["c"] == 0.23) & (points["eps_over_delta2"] == 1.0)]
    if len(sel) < 2:
        return None
    (rate,) = path_rates(sel, ("gap_gd",))
    return {**rate, "path": f"{rate['path']}, debias = {str(debias).lower()}"}


def write_findings(root="runs/studies", out="docs/FINDINGS.md") -> Path:
    """Assemble FINDINGS.md from the studies under ``root`` (module docstring)."""
    root, out = Path(root), Path(out)
    figdir = out.parent / "findings"
    figdir.mkdir(parents=True, exist_ok=True)
    boundary = pinning_boundary([0.05, 0.1, 0.2, 0.3, 0.4])
    parts = [
        "# Findings: when does entropic JKO on a fixed grid behave like gradient descent?\n",
        "*Generated by `make study` (`python -m mfjko.study.findings`) from the shipped "
        "studies in `studies/`; every number below is read from their outputs. Definitions "
        "(c, ε/δ², drift ratio, gaps, regime rule): docs/STUDY.md.*\n",
        "## The answer in brief\n",
        _brief(root, boundary),
        findings_changes.section(root),
        phase_section(root, "regression", "(a) The default problem: 1-D regression, neuron "
                       "parametrization, (w₁, w₂, α) box grids", figdir),
        _rates_section(root, "regression_refine", figdir),
        findings_gpu.section(figdir, _rates_section, cpu_root=root),
        phase_section(root, "sphere", "(b) The sphere parametrization (S¹ × β grids)",
                       figdir),
        phase_section(root, "teacher", "(c) A ReLU teacher with d = 3 (S² × β grids)", figdir),
        _groups_section(root, "parametrizations", "The four parametrizations on the same data",
                        ["model.parametrization", "jko.eps_over_delta2"], figdir),
        _groups_section(root, "gridscale", "(d) The grid-scale problem: single- vs multi-scale "
                        "grids (default problem)", ["init.scale", "tag.grid"], figdir),
        _groups_section(root, "orthogonal", "(d′) The grid-scale problem on orthogonal inputs",
                        ["init.scale", "tag.grid"], figdir),
        findings_wfr.section(root, figdir),
    ]
    # hand-written sections (docs/findings/*.md, e.g. a method's measured numbers) follow
    for extra in sorted((out.parent / "findings").glob("*.md")):
        parts.append(extra.read_text())
    out.write_text("\n".join(parts))
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    print(write_findings(*args))
