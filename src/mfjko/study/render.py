r"""``mfjko study DIR``: a sweep's figures, numbers and page.

Reads DIR/results.parquet and the ``study`` section of DIR/sweep.yaml, and writes
DIR/study/: ``points.csv`` (one row per point: gaps, drift ratio, regime),
``summary.json`` (regime counts, measured vs predicted pinning boundary, fitted rates),
figures (phase diagrams over (c, ε/δ²) per grid, drift ratio measured vs predicted,
refinement paths with fitted rates, grouped gaps) and ``study.html``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from mfjko.errors import RunFolderError  # noqa: E402
from mfjko.study.analysis import fit_rate, point_summaries  # noqa: E402
from mfjko.study.regime import GAP_TOL, PIN_RATIO, pinning_boundary  # noqa: E402
from mfjko.sweep.results import read_results, upgrade_spec  # noqa: E402

__all__ = ["render_study", "measured_boundary"]

_MARKERS = {"pinned": "x", "GD-like": "o", "Langevin-like": "s", "neither": "^"}
_GAPS = {"gap_gd": "sup relative loss gap to GD",
         "gap_langevin": "sup relative loss gap to Langevin (D = ε/4τ)",
         "pred_gap_T": "predictor gap to GD at T", "measure_gap_T": "measure gap S_ε at T",
         "direction_gap_T": "directional (lift-free) gap S_ε at T"}


def _axes_columns(spec: dict) -> list[str]:
    cols = list(spec.get("product", {}))
    for group in spec.get("zip", []):
        cols += list(group)
    return cols


def _crossing(ys: np.ndarray, rho: np.ndarray) -> tuple[float, float, float]:
    """(y_below, y_above, log-interpolated y) where ``rho`` first rises through 1/2."""
    for i in range(len(ys) - 1):
        if rho[i] < PIN_RATIO <= rho[i + 1]:
            w = (PIN_RATIO - rho[i]) / (rho[i + 1] - rho[i])
            cross = math.exp((1 - w) * math.log(ys[i]) + w * math.log(ys[i + 1]))
            return float(ys[i]), float(ys[i + 1]), float(cross)
    return math.nan, math.nan, math.nan


def measured_boundary(points: pd.DataFrame, x: str = "courant", y: str = "eps_over_delta2",
                      panel: str | None = None,
                      field: str = "drift_predicted_field") -> list[dict]:
    """Where the measured drift ratio crosses 1/2 along y at each (panel, x).

    Gives the bracket [y_below, y_above] of the sweep's values and its log-interpolated
    crossing, beside two predictions: r*(c) of the scalar model at c = τV₀/δ
    (:func:`~mfjko.study.regime.pinning_boundary`) and the crossing of the prediction from
    the initial velocity field (column ``field``), interpolated the same way.
    """
    rows = []
    groups = points.groupby(panel) if panel else [(None, points)]
    for pval, sub in groups:
        for xv, line in sub.groupby(x):
            line = line.sort_values(y)
            ys, rho = line[y].to_numpy(float), line["drift_ratio"].to_numpy(float)
            lo, hi, cross = _crossing(ys, rho)
            predicted_field = math.nan
            if field in line:
                predicted_field = _crossing(ys, line[field].to_numpy(float))[2]
            c_mean = float(line["courant"].mean()) if "courant" in line else float(xv)
            rows.append({"panel": None if pval is None else _plain(pval), x: _plain(xv),
                         "courant": c_mean, "y_below": lo, "y_above": hi, "measured": cross,
                         "predicted": float(pinning_boundary([c_mean])[0]),
                         "predicted_field": predicted_field,
                         "pinned_everywhere": bool(np.all(rho < PIN_RATIO)),
                         "free_everywhere": bool(np.all(rho >= PIN_RATIO))})
    return rows


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _phase_figure(points: pd.DataFrame, cfg: dict, path: Path) -> None:
    x, y = cfg.get("x", "courant"), cfg.get("y", "eps_over_delta2")
    panel = cfg.get("panel")
    panels = sorted(points[panel].unique()) if panel else [None]
    metrics = [m for m in _GAPS if m in points and points[m].notna().any()]
    fig, axes = plt.subplots(len(metrics), len(panels), squeeze=False,
                             figsize=(4.2 * len(panels), 3.4 * len(metrics)))
    cs = np.geomspace(max(points["courant"].min() / 2, 1e-3), 0.499, 60)
    boundary = pinning_boundary(cs)
    for j, pv in enumerate(panels):
        sub = points if pv is None else points[points[panel] == pv]
        delta = sub["delta"].iloc[0] if "delta" in sub else math.nan
        for i, m in enumerate(metrics):
            ax = axes[i][j]
            vals = np.log10(np.clip(sub[m].to_numpy(float), 1e-6, None))
            sc = None
            for regime, mk in _MARKERS.items():
                sel = (sub["regime"] == regime).to_numpy()
                if sel.any():
                    # 'x' is an unfilled marker: coloured strokes, thick enough to be seen
                    # (an edge colour would be ignored with a warning)
                    edge = ({"linewidths": 2.0} if mk == "x"
                            else {"edgecolors": "k", "linewidths": 0.4})
                    if mk == "x":  # a dark outline under the coloured strokes
                        ax.scatter(sub[x][sel], sub[y][sel], color="k", marker=mk, s=90,
                                   linewidths=3.6)
                    sc = ax.scatter(sub[x][sel], sub[y][sel], c=vals[sel], marker=mk, s=70,
                                    cmap="viridis", vmin=np.nanmin(vals), vmax=np.nanmax(vals),
                                    label=regime, **edge)
            if x == "courant" and y == "eps_over_delta2":
                ax.plot(cs, boundary, "r--", lw=1.2, label="predicted pinning (ρ = ½)")
            ax.set(xscale="log", yscale="log", xlabel="c = τV₀/δ" if x == "courant" else x,
                   ylabel="ε/δ²" if y == "eps_over_delta2" else y,
                   title=f"{_GAPS[m]}\n{panel} = {pv}, δ = {delta:.3g}" if pv is not None
                   else _GAPS[m])
            _plain_log_ticks(ax)
            if sc is not None:
                fig.colorbar(sc, ax=ax, label=f"log10 {m}")
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plain_log_ticks(ax) -> None:
    """Decimal labels on log axes, no minor labels (they overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        fmt = ScalarFormatter()
        fmt.set_scientific(False)
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(NullFormatter())


def _drift_figure(points: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    pred = _prediction_column(points)
    for regime, mk in _MARKERS.items():
        sel = points["regime"] == regime
        if sel.any():
            ax.scatter(points.loc[sel, pred], points.loc[sel, "drift_ratio"],
                       marker=mk, label=regime)
    lim = [0, max(1.2, float(np.nanmax(points[[pred, "drift_ratio"]])))]
    ax.plot(lim, lim, "k:", lw=1)
    ax.axhline(PIN_RATIO, color="r", ls="--", lw=1)
    ax.set(xlabel=("predicted drift ratio (initial velocity field)" if pred != "drift_predicted"
                   else "predicted drift ratio ρ(c, ε/δ²) (1-D linear potential)"),
           ylabel="measured mean drift ratio", title="pinning: measured vs predicted")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _prediction_column(points: pd.DataFrame) -> str:
    """The best available drift-ratio prediction's column.

    From the initial velocity field when the sweep recorded it, else the scalar ρ(c, ε/δ²).
    """
    if "drift_predicted_field" in points and points["drift_predicted_field"].notna().any():
        return "drift_predicted_field"
    return "drift_predicted"


def _refinement(points: pd.DataFrame, paths: list[dict], figdir: Path) -> list[dict]:
    fits = []
    if not paths:
        return fits
    fig, axes = plt.subplots(1, len(paths), squeeze=False, figsize=(5.2 * len(paths), 4.2))
    for ax, path in zip(axes[0], paths, strict=True):
        sub = points
        for key, val in path.get("where", {}).items():
            sub = sub[np.isclose(sub[key].astype(float), float(val))]
        xcol = path.get("x", "delta")
        sub = sub.sort_values(xcol)
        for m in path.get("metrics", ["gap_gd", "gap_langevin", "measure_gap_T"]):
            if m not in sub or sub[m].isna().all():
                continue
            fit = fit_rate(sub[xcol], sub[m])
            fits.append({"path": path["name"], "metric": m, "x": xcol, **fit,
                         "values": sub[m].tolist(), "xs": sub[xcol].tolist()})
            label = f"{m}: rate {fit['rate']:.2f}"
            if math.isfinite(fit["stderr"]):
                label += f" ± {fit['stderr']:.2f}"
            ax.loglog(sub[xcol], sub[m], "o-", label=label)
        ax.set(xlabel=xcol, title=path["name"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figdir / "refinement.png", dpi=80)
    plt.close(fig)
    return fits


def _groups_figure(points: pd.DataFrame, cfg: dict, path: Path) -> None:
    x, hue = cfg["x"], cfg.get("hue")
    metrics = [m for m in cfg.get("metrics", ["gap_gd", "pred_gap_T"]) if m in points]
    fig, axes = plt.subplots(1, len(metrics), squeeze=False, figsize=(5 * len(metrics), 4))
    hues = sorted(points[hue].astype(str).unique()) if hue else [None]
    xs = sorted(points[x].unique(), key=lambda v: float(v) if _numeric(v) else str(v))
    width = 0.8 / len(hues)
    for ax, m in zip(axes[0], metrics, strict=True):
        for k, hv in enumerate(hues):
            sub = points if hv is None else points[points[hue].astype(str) == hv]
            vals = [sub[sub[x] == xv][m].mean() for xv in xs]
            ax.bar(np.arange(len(xs)) + k * width, vals, width, label=hv)
        ax.set_xticks(np.arange(len(xs)) + width * (len(hues) - 1) / 2, [str(v) for v in xs])
        ax.set(yscale="log", xlabel=x, title=_GAPS.get(m, m))
        if hue:
            ax.legend(fontsize=8, title=hue)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _numeric(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_study(sweep_dir) -> Path:
    """Write DIR/study/ (module docstring); return the page's path."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "results.parquet").exists():
        raise RunFolderError(f"{sweep_dir} has no results.parquet: not a finished sweep "
                             "folder; run `mfjko sweep` first")
    spec = upgrade_spec(yaml.safe_load((sweep_dir / "sweep.yaml").read_text()))
    study = spec.get("study") or {}
    table = read_results(sweep_dir / "results.parquet")
    axes = [a for a in _axes_columns(spec) if a in table]
    points = point_summaries(table, axes, jko=study.get("method", "jko"))
    out = sweep_dir / "study"
    out.mkdir(exist_ok=True)
    points.to_csv(out / "points.csv", index=False)
    figures: list[tuple[str, str]] = []
    summary = {"name": spec.get("name"), "points": len(points),
               "regimes": points["regime"].value_counts().to_dict(),
               "rule": f"pinned if mean drift ratio < {PIN_RATIO}; else neither if the sup "
                       f"relative loss gap to both GD and Langevin at D = ε/(4τ) exceeds "
                       f"{GAP_TOL:.0%}; else the nearer reference (GD-like, Langevin-like) "
                       f"when the two are resolvably apart (their gap > {GAP_TOL:.0%} + 2 "
                       "noise), indistinguishable when not (docs/STUDY.md)"}
    if "phase" in study:
        _phase_figure(points, study["phase"], out / "phase.png")
        figures.append(("phase.png", "Phase diagrams: gaps over (c, ε/δ²) per grid; marker = "
                        "regime, dashed = predicted pinning boundary ρ(c, ε/δ²) = ½"))
        summary["boundary"] = measured_boundary(points, study["phase"].get("x", "courant"),
                                                study["phase"].get("y", "eps_over_delta2"),
                                                study["phase"].get("panel"))
    if "drift_predicted" in points and points["drift_ratio"].notna().any():
        _drift_figure(points, out / "drift.png")
        figures.append(("drift.png", "Mean drift ratio of each run vs the 1-D prediction"))
        for col in ("drift_predicted", "drift_predicted_field"):
            if col in points:
                ok = points[["drift_ratio", col]].dropna()
                summary[f"{col}_error"] = float(np.median(np.abs(ok.iloc[:, 0] - ok.iloc[:, 1])))
    summary["rates"] = _refinement(points, study.get("refinement", []), out)
    if summary["rates"]:
        figures.append(("refinement.png", "Refinement paths: gaps vs grid spacing, fitted rates"))
    if "groups" in study:
        _groups_figure(points, study["groups"], out / "groups.png")
        figures.append(("groups.png", "Gaps by group"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain))
    return _page(out, spec, points, summary, figures)


def _regimes_table(regimes: dict) -> str:
    """The number of points in each regime, as an HTML table (every regime, 0 included)."""
    total = sum(regimes.values()) or 1
    names = list(_MARKERS) + [r for r in regimes if r not in _MARKERS]
    rows = "".join(f"<tr><td>{html.escape(str(r))}</td><td>{regimes.get(r, 0)}</td>"
                   f"<td>{100 * regimes.get(r, 0) / total:.0f} %</td></tr>" for r in names)
    return ("<table class='regimes'><tr><th>regime</th><th>points</th><th>share</th></tr>"
            f"{rows}</table>")


def _rates_section(rates: list[dict]) -> list[str]:
    """The "Fitted rates" heading and its lines; nothing without refinement paths."""
    if not rates:
        return []
    return ["<h2>Fitted rates</h2><pre>",
            html.escape("\n".join(f"{r['path']}: {r['metric']} ~ {r['x']}^{r['rate']:.3f} "
                                  f"(± {r['stderr']:.3f}, 95% CI [{r['ci_low']:.3f}, "
                                  f"{r['ci_high']:.3f}], n = {r['n']})" for r in rates)),
            "</pre>"]


def _page(out: Path, spec: dict, points: pd.DataFrame, summary: dict, figures) -> Path:
    cols = [c for c in ("point", "method", "grid_size", "delta", "courant", "eps_over_delta2", "D",
                        "drift_ratio", "drift_predicted", "gap_gd", "gap_langevin", "gap_gd_T",
                        "measure_gap_T", "direction_gap_T", "regime") if c in points]
    table = points[cols].to_html(index=False, float_format=lambda v: f"{v:.3g}")
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>mfjko study {html.escape(str(spec.get('name')))}</title>",
             "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}"
             "img{max-width:100%}table{border-collapse:collapse;font-size:85%}"
             "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
             f"<h1>mfjko study: {html.escape(str(spec.get('name')))}</h1>",
             f"<p>{html.escape(str(spec.get('description', '')))}</p>",
             f"<p><b>Regime rule:</b> {html.escape(summary['rule'])}.</p>",
             "<h2>Regimes</h2>", _regimes_table(summary["regimes"]),
             *[_img(out / f, cap) for f, cap in figures],
             *_rates_section(summary["rates"]),
             "<h2>Points</h2>", table, "</body></html>"]
    page = out / "study.html"
    page.write_text("\n".join(parts))
    return page
