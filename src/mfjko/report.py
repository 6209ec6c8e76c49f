r"""Figures and a self-contained HTML report of a run folder (re-renderable from disk).

:func:`render` reads DIR/config.yaml, DIR/metrics.csv, DIR/timings.json and the committed
part of DIR/trajectories.zarr (:meth:`mfjko.io.RunStore.committed_view`, so a run killed
at any point renders) and writes DIR/figures/*.png, DIR/figures/measure.gif and
DIR/report.html (images embedded as base64: one file). :func:`compare` overlays the F(t)
and gap curves of several run folders. Curves are against mean-field time t (MATH.md).
Heatmaps show a 2-D marginal of the grid measure (:meth:`Parametrization.view2d`) with
GD's particles; for 1-D inputs with a bias, the data-space view draws each neuron at its
kink x = −b/w on the predictor, its area proportional to its mass.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from mfjko import methods as _methods  # noqa: E402
from mfjko import metrics as _metrics  # noqa: E402
from mfjko import parametrizations as _params  # noqa: E402
from mfjko.errors import RunFolderError  # noqa: E402
from mfjko.io import RunStore, atomic_write_text, is_run_folder, read_metrics  # noqa: E402
from mfjko.study.regime import run_verdict  # noqa: E402

__all__ = ["render", "compare", "summary_sentences", "FIGURES"]

#: colour and line style of each method (from the registry, mfjko.methods)
COLORS = {m.name: m.color for m in _methods.REGISTRY.values()}
STYLES = {m.name: m.linestyle for m in _methods.REGISTRY.values()}
#: figure files a report may contain (name → caption); absent ones do not apply to the run
FIGURES = {
    "loss.png": "F(t) of every method (log scale)",
    "loss_minus_fstar.png": "F(t) − F*, F* the global optimum (log scale)",
    "gaps.png": "Gaps to GD at equal mean-field time: |F − F_GD|, predictor L2 gap "
                "(train solid, test dashed), Sinkhorn divergence of the measures",
    "predictor.png": "Predictors against the data at several times (1-D data)",
    "measure.png": "JKO grid measure (2-D marginal heatmap) with GD's particles overlaid",
    "measure.gif": "Animation of the grid measure and GD's particles over time",
    "data_space.png": "Data space (1-D inputs with a bias): the predictor f(x) over the data, "
                      "each neuron (GD particle or JKO grid point) drawn on it at its kink "
                      "x = −b/w, area ∝ its mass (red: output weight > 0, blue: < 0)",
    "jko_diagnostics.png": "JKO solver: Sinkhorn iterations and marginal error per step",
}


def _by_method(rows: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, list]] = {}
    for r in rows:
        d = out.setdefault(r["method"], {})
        for k, v in r.items():
            if k != "method":
                d.setdefault(k, []).append(v)
    return {m: {k: np.asarray(v, dtype=float) for k, v in d.items()} for m, d in out.items()}


def _style(method: str) -> dict:
    return {"color": COLORS.get(method, None), "linestyle": STYLES.get(method, "-"),
            "label": method}


def _positive(v: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive entries are not drawn."""
    return np.where(v > 0, v, np.nan)


def _save(fig, path: Path) -> None:
    """Save a figure atomically (temporary file, then rename) and close it."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=90, format=path.suffix.lstrip("."))
    plt.close(fig)
    os.replace(tmp, path)


def _loss_figures(series, figdir: Path, made: list[str]) -> None:
    if not series:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, s in series.items():
        ax.plot(s["t"], _positive(s["loss"]), **_style(m))
    ax.set(yscale="log", xlabel="mean-field time t", ylabel="F(t)", title="objective")
    ax.legend()
    _save(fig, figdir / "loss.png")
    made.append("loss.png")
    fstar = next(iter(series.values()))["F_star"]
    if len(fstar) and np.all(np.isfinite(fstar)):
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, s in series.items():
            ax.plot(s["t"], _positive(s["loss_minus_F_star"]), **_style(m))
        ax.set(yscale="log", xlabel="mean-field time t", ylabel="F(t) − F*",
               title=f"distance to the optimum, F* = {fstar[0]:.6g}")
        ax.legend()
        _save(fig, figdir / "loss_minus_fstar.png")
        made.append("loss_minus_fstar.png")


def _gap_figure(series, figdir: Path, made: list[str]) -> None:
    others = {m: s for m, s in series.items() if m != "gd"}
    if not others:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for m, s in others.items():
        st = _style(m)
        axes[0].plot(s["t"], _positive(s["loss_gap"]), **st)
        axes[1].plot(s["t"], _positive(s["pred_gap"]), **st)
        axes[1].plot(s["t"], _positive(s["pred_gap_test"]), color=st["color"], linestyle="--",
                     alpha=0.6)
        axes[2].plot(s["t"], _positive(s["measure_gap"]), **st)
        # noise floors (2 standard errors; the compression floor of a weighted GD): a gap
        # below its floor is not resolved
        for ax, col, k in ((axes[0], "loss_gap_floor", 2), (axes[1], "pred_gap_floor", 2),
                           (axes[2], "measure_gap_floor", 1)):
            if col in s and np.any(s[col] > 0):
                ax.plot(s["t"], _positive(k * s[col]), color=st["color"], linestyle=":",
                        linewidth=1, alpha=0.8)
    titles = ("loss gap |F − F_GD| (dotted: 2 s.e. floor)",
              "predictor gap ‖f − f_GD‖ (test dashed)", "measure gap S_ε(μ, μ_GD) (dotted: "
              "floor)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(yscale="log", xlabel="mean-field time t", title=title)
        ax.legend(fontsize=8)
    _save(fig, figdir / "gaps.png")
    made.append("gaps.png")



def _record_indices(n: int, k: int = 4) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))}) if n > 0 else []


def _is_1d(X: np.ndarray) -> bool:
    """1-D inputs: one varying column, plus possibly a constant bias column."""
    varying = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
    return len(varying) == 1


_DATA = ("data/X", "data/y", "data/X_test")


def _has_all(store: RunStore, *paths: str) -> bool:
    return all(store.has(p) for p in paths)


def _predictor_figure(store: RunStore, methods: list[str], figdir: Path, made: list[str]):
    if not _has_all(store, *_DATA, "gd/t"):
        return
    X, y = store.get("data/X"), store.get("data/y")
    Xt = store.get("data/X_test")
    if not _is_1d(X):
        return
    j = next(j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0)
    order = np.argsort(Xt[:, j])
    t = store.get("gd/t")
    idx = _record_indices(len(t))
    if not idx:
        return
    fig, axes = plt.subplots(1, len(idx), figsize=(4 * len(idx), 3.6), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        ax.scatter(X[:, j], y, color="k", s=14, zorder=5, label="data")
        for m in methods:
            if store.has(f"{m}/pred_test"):
                f = store.get(f"{m}/pred_test")
                if i < len(f):
                    ax.plot(Xt[order, j], f[i][order], **_style(m))
        ax.set(title=f"t = {t[i]:.4g}", xlabel=f"x_{j + 1}")
    axes[0][0].legend(fontsize=8)
    _save(fig, figdir / "predictor.png")
    made.append("predictor.png")


def _project(param: str, pts: np.ndarray, w: np.ndarray):
    """2-D view (x, y, signed weight, labels) of a measure on Θ (the parametrization's)."""
    return _params.get(param).view2d(np.asarray(pts), np.asarray(w))


def _edges(v: np.ndarray, max_bins: int = 60) -> np.ndarray:
    u = np.unique(np.round(v, 12))
    if 2 <= len(u) <= max_bins:
        mid = 0.5 * (u[1:] + u[:-1])
        return np.concatenate([[u[0] - (mid[0] - u[0])], mid, [u[-1] + (u[-1] - mid[-1])]])
    lo, hi = (float(v.min()), float(v.max())) if len(u) > 1 else (u[0] - 1, u[0] + 1)
    return np.linspace(lo, hi, max_bins + 1)


def _heatmap(ax, param, support, weights, particles, t):
    """Draw the grid measure's 2-D marginal with a colour bar.

    Draw the grid measure's 2-D marginal (and GD's particles) on ``ax`` with a colour
    bar of the mass per cell.
    """
    x, yv, w, (lx, ly) = _project(param, support, weights)
    ex, ey = _edges(x), _edges(yv)
    H, _, _ = np.histogram2d(x, yv, bins=(ex, ey), weights=w)
    signed = param in ("signed", "pm")
    vmax = np.abs(H).max() or 1.0
    mesh = ax.pcolormesh(ex, ey, H.T, cmap="RdBu_r" if signed else "viridis",
                         vmin=-vmax if signed else 0.0, vmax=vmax, shading="flat")
    ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.03,
                       label="signed mass per cell" if signed else "mass per cell")
    if particles is not None:
        px, py, _, _ = _project(param, particles, np.ones(len(particles)))
        ax.scatter(px, py, s=4, color="white", edgecolor="black", linewidth=0.3, alpha=0.8)
    ax.set(xlabel=lx, ylabel=ly, title=f"t = {t:.4g}", xlim=(ex[0], ex[-1]),
           ylim=(ey[0], ey[-1]))


def _grid_method(store: RunStore) -> str | None:
    """The run's grid method over Θ (kind "grid", first in run order) with frames, or None."""
    for name, info in _methods.REGISTRY.items():
        if info.kind == "grid" and _has_all(store, *(f"{name}/{k}"
                                                     for k in ("weights", "t", "support"))):
            return name
    return None


def _measure_figures(store: RunStore, param: str, figdir: Path, made: list[str]) -> None:
    name = _grid_method(store)
    if name is None:
        return
    support = store.get(f"{name}/support")
    W = store.get(f"{name}/weights")
    t = store.get(f"{name}/t")
    gd_particles = store.get("gd/particles") if store.has("gd/particles") else None
    n = min(len(W), len(t))
    idx = _record_indices(n)
    if not idx:
        return
    fig, axes = plt.subplots(1, len(idx), figsize=(4.6 * len(idx), 3.6), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        gp = gd_particles[i] if gd_particles is not None and i < len(gd_particles) else None
        _heatmap(ax, param, support, W[i], gp, t[i])
    label = "JKO" if name == "jko" else name
    fig.suptitle(f"{label} grid measure (heatmap) and GD particles (dots)")
    _save(fig, figdir / "measure.png")
    made.append("measure.png")

    from PIL import Image  # Pillow: a dependency of matplotlib

    frames = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(4.8, 3.6))
        gp = gd_particles[i] if gd_particles is not None and i < len(gd_particles) else None
        _heatmap(ax, param, support, W[i], gp, t[i])
        fig.tight_layout()
        fig.canvas.draw()
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
        plt.close(fig)
    tmp = figdir / f".measure.gif.{os.getpid()}.tmp"
    # 0.4 s per frame, looping; each frame gets its own palette (as matplotlib's PillowWriter)
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=400,
                   loop=0)
    os.replace(tmp, figdir / "measure.gif")
    made.append("measure.gif")


def _kinks(param: str, points: np.ndarray, weights: np.ndarray, j: int, b: int, c: float):
    """Kinks x = −c·w_b / w_j of a measure's neurons.

    For 1-D inputs with a bias column b of value c: the kinks with their masses and
    output-weight signs; neurons with w_j = 0 have none.
    """
    W, alpha = (np.asarray(a) for a in _params.get(param).to_classic(np.asarray(points)))
    mass = np.asarray(weights, dtype=np.float64)
    if len(alpha) != len(mass):  # pm: two classic neurons (u, +1), (v, −1) per atom
        mass = np.tile(mass, len(alpha) // len(mass))
    keep = (np.abs(W[:, j]) > 1e-12) & (mass > 0) & (np.abs(alpha) > 0)
    x = -c * W[keep, b] / W[keep, j]
    return x, mass[keep], np.sign(alpha[keep])


def _data_space_rows(store: RunStore) -> list[tuple]:
    """The data-space figure's rows: (label, method, i ↦ (points, masses), records)."""
    rows = []
    if store.has("gd/support_full") and store.has("gd/pred_test") and store.has("gd/t"):
        pts = store.get("gd/support_full")
        # the grid-matched GD carries the grid's masses; a sampled GD has uniform ones
        wts = (store.get("gd/weights_full") if store.has("gd/weights_full")
               else np.full(pts.shape[:2], 1.0 / pts.shape[1]))
        rows.append(("gd particles", "gd", lambda i, pts=pts, wts=wts: (pts[i], wts[i]),
                     min(len(pts), len(store.get("gd/t")))))
    grid = _grid_method(store)
    if grid is not None and store.has(f"{grid}/pred_test"):
        W, sup = store.get(f"{grid}/weights"), store.get(f"{grid}/support")
        label = "JKO" if grid == "jko" else grid
        rows.append((f"{label} grid measure", grid, lambda i, W=W, sup=sup: (sup, W[i]),
                     min(len(W), len(store.get(f"{grid}/t")))))
    return [r for r in rows if r[3] > 0]


def _data_space_figure(store: RunStore, param: str, figdir: Path, made: list[str]) -> None:
    """GD's particles and the JKO measure in data space (module docstring), over time."""
    if not _has_all(store, *_DATA):
        return
    X, y, Xt = store.get("data/X"), store.get("data/y"), store.get("data/X_test")
    const = [k for k in range(X.shape[1]) if np.ptp(X[:, k]) == 0 and X[0, k] != 0]
    if not (_is_1d(X) and X.shape[1] == 2 and const):
        return
    j, b = 1 - const[0], const[0]
    c = float(X[0, b])
    rows = _data_space_rows(store)
    if not rows:
        return
    n_cols = max(len(_record_indices(r[3])) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(4 * n_cols, 3.4 * len(rows)),
                             squeeze=False)
    order = np.argsort(Xt[:, j])
    xs = Xt[order, j]
    lo, hi = float(min(xs.min(), X[:, j].min())), float(max(xs.max(), X[:, j].max()))
    for r, (label, m, measure, n) in enumerate(rows):
        t, pred = store.get(f"{m}/t"), store.get(f"{m}/pred_test")
        idx = _record_indices(min(n, len(pred)))
        for col in range(n_cols):
            ax = axes[r][col]
            if col >= len(idx):
                ax.axis("off")
                continue
            i = idx[col]
            f = pred[i][order]
            x, mass, sign = _kinks(param, *measure(i), j, b, c)
            inside = (x >= lo) & (x <= hi)
            out_mass = mass[~inside].sum() / max(mass.sum(), 1e-300)
            x, mass, sign = x[inside], mass[inside], sign[inside]
            big = mass >= 1e-4 * mass.max() if len(mass) else mass > 0
            ax.scatter(X[:, j], y, color="k", s=12, zorder=4, label="data")
            ax.plot(xs, f, color=COLORS.get(m), zorder=3, label=f"{m} predictor")
            ax.scatter(x[big], np.interp(x[big], xs, f), s=np.maximum(3000.0 * mass[big], 0.5),
                       c=np.where(sign[big] > 0, "tab:red", "tab:blue"), alpha=0.5,
                       edgecolors="none", zorder=5)
            ax.set(title=f"{label}, t = {t[i]:.4g}"
                         + (f" ({100 * out_mass:.0f} % of mass kinks off-range)"
                            if out_mass >= 0.005 else ""),
                   xlabel=f"x_{j + 1}", xlim=(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)))
            ax.title.set_fontsize(9)
        axes[r][0].legend(fontsize=7, loc="best")
    _save(fig, figdir / "data_space.png")
    made.append("data_space.png")


def _diagnostics_figure(store: RunStore, figdir: Path, made: list[str]) -> None:
    if not store.has("jko/steps/t"):
        return
    t = store.get("jko/steps/t")
    if len(t) == 0:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if store.has("jko/steps/sinkhorn_iterations"):
        it = store.get("jko/steps/sinkhorn_iterations")
        n = min(len(t), len(it))
        axes[0].plot(t[:n], it[:n], ".-")
    axes[0].set(xlabel="mean-field time t", title="Sinkhorn iterations per JKO step")
    if store.has("jko/steps/marginal_error"):
        e = store.get("jko/steps/marginal_error")
        n = min(len(t), len(e))
        axes[1].semilogy(t[:n], _positive(e[:n]), ".-")
    axes[1].set(xlabel="mean-field time t", title="final marginal error ‖b⊙Kᵀa − q‖₁")
    _save(fig, figdir / "jko_diagnostics.png")
    made.append("jko_diagnostics.png")


def _verdict(store, series: dict, cfg: dict | None = None) -> str:
    """The one-line verdict of the grid methods (the study's rule, regime.classify).

    Grid methods: kind "grid", or reporting a drift ratio (wfr_jko); each is pinned,
    GD-like, Langevin-like or neither by :func:`mfjko.study.regime.classify`. A method
    run with ``debias: true`` (the debiased entropic step) is named so.
    """
    lines = []
    for name, info in _methods.REGISTRY.items():
        path = f"{name}/steps/drift_ratio"
        if name not in series or not (info.kind == "grid" or store.has(path)):
            continue
        drift = store.get(path) if store.has(path) else None
        v = run_verdict(series, drift, name)
        if v is not None:
            section = ((cfg or {}).get("methods") or {}).get(name) or {}
            label = f"{name} (debiased step)" if section.get("debias") else name
            lines.append(f"{label}: {v.sentence()}")
    return " ".join(lines)


def summary_sentences(series: dict, timings: dict, setup: dict) -> list[str]:
    """The automatic reading of a run: final-time comparison of every method with GD."""
    out = []
    if "gd" not in series:
        return ["No GD reference in this run."]
    gd = series["gd"]
    T = gd["t"][-1]
    F_gd = gd["loss"][-1]
    for m, s in series.items():
        if m == "gd":
            continue
        if len(s["t"]) == 0 or s["t"][-1] < T:
            out.append(f"{m} is incomplete (reached t = {s['t'][-1] if len(s['t']) else 0:g} "
                       f"of {T:g}).")
            continue
        rel = 100.0 * abs(s["loss"][-1] - F_gd) / abs(F_gd) if F_gd != 0 else math.inf
        out.append(
            f"At t = {T:g}, {m}'s loss F = {s['loss'][-1]:.6g} is within {rel:.3g} % of GD's "
            f"({F_gd:.6g}); its predictor gap is {s['pred_gap'][-1]:.3g} on the training "
            f"points ({s['pred_gap_test'][-1]:.3g} on the test points) and its measure gap "
            f"(Sinkhorn divergence, ε = {setup.get('sinkhorn_eps')}) is "
            f"{s['measure_gap'][-1]:.3g}."
        )
    fstar = gd["F_star"][-1]
    if np.isfinite(fstar):
        parts = ", ".join(f"{m} {s['loss_minus_F_star'][-1]:.3g}" for m, s in series.items())
        out.append(f"F − F* at t = {T:g} (F* = {fstar:.8g}): {parts}.")
    elif setup.get("F_star_note"):
        out.append(setup["F_star_note"] + ".")
    if timings:
        out.append("Wall-clock time per method: "
                   + ", ".join(f"{m} {sec:.3g} s" for m, sec in timings.items()) + ".")
    return out


def _img_tag(path: Path, caption: str, folder: str = "figures/") -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure id="{html.escape(path.stem)}"><img alt="{html.escape(caption)}" '
            f'data-file="{folder}{html.escape(path.name)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _metrics_table(rows: list[dict], max_times: int = 11) -> str:
    times = sorted({r["t"] for r in rows})
    if len(times) > max_times:
        keep = {times[i] for i in _record_indices(len(times), max_times)}
    else:
        keep = set(times)
    cols = ("method", "t", *(c for m in _metrics.ROW_METRICS for c in m.shown))
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for r in rows:
        if r["t"] not in keep:
            continue
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "method":
                cells.append(f"<td>{html.escape(str(v))}</td>")
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("<td></td>")
            else:
                cells.append(f"<td>{v:.5g}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="metrics"><tr>{head}</tr>{"".join(body)}</table>'


#: significant digits of each setup value in the report (others: 6)
_SETUP_DIGITS = {"F_star": 10, "grid_mass_outside": 3}


def fmt_value(value, digits: int = 6) -> str:
    """A value as a researcher reads it.

    Floats to ``digits`` significant digits (so 0.34999999999999964 reads 0.35), lists
    element-wise, the rest as text.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt_value(v, digits) for v in value) + "]"
    return str(value)


def _grid_summary(grid: dict) -> str:
    kind = grid.get("kind", "?")
    parts = [f"{kind} grid"]
    sizes, ranges = grid.get("sizes"), grid.get("ranges")
    if sizes:
        parts.append("×".join(str(n) for n in sizes))
    if ranges:
        if all(r == ranges[0] for r in ranges):
            parts.append(f"on {fmt_value(ranges[0])}^{len(ranges)}")
        else:
            parts.append("on " + " × ".join(fmt_value(r) for r in ranges))
    for key in ("n_dirs", "n_beta", "beta_range"):
        if grid.get(key) is not None:
            parts.append(f"{key} = {fmt_value(grid[key])}")
    return " ".join(parts)


def describe(cfg: dict) -> str:
    """One paragraph describing a run from its resolved config.

    From config.yaml's ``config``: the data, model, initial law, every method with its
    settings, and the time axis.
    """
    if not cfg:
        return ""
    data, model, init = cfg.get("data", {}), cfg.get("model", {}), cfg.get("init", {})
    kw = ", ".join(f"{k} = {fmt_value(v)}" for k, v in (data.get("kwargs") or {}).items())
    src = data.get("name", "?") + (f" ({data['path']})" if data.get("path") else "")
    parts = [f"Data: {src}" + (f" ({kw})" if kw else "") + ".",
             f"Model: {model.get('parametrization', '?')}, λ = {fmt_value(model.get('lam'))}.",
             f"Initial law: {init.get('law', '?')}, scale {fmt_value(init.get('scale'))}, "
             f"m = {init.get('m')} particles."]
    methods = []
    for name, section in (cfg.get("methods") or {}).items():
        if section is None:
            continue
        items = []
        for k, v in section.items():
            if isinstance(v, dict):
                if k == "grid":
                    items.append(_grid_summary(v))
                continue
            if v is not None:
                items.append(f"{k} = {fmt_value(v)}")
        methods.append(f"{name} ({', '.join(items)})" if items else name)
    parts.append("Methods: " + "; ".join(methods) + ".")
    parts.append(f"Horizon T = {fmt_value(cfg.get('T'))}, records every "
                 f"{fmt_value(cfg.get('record_every'))}, seed {cfg.get('seed')}.")
    return " ".join(parts)


def _header(doc: dict) -> list[str]:
    """The page's title and header, built from the resolved config."""
    cfg = doc.get("config", {}) or {}
    name = html.escape(str(cfg.get("name", "")))
    out = [f"<title>mfjko run {name}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>mfjko run: {name}</h1>",
           f"<p id='description'>{html.escape(describe(cfg))}</p>"]
    text = str(cfg.get("description", "") or "")
    overrides = (doc.get("source") or {}).get("overrides") or []
    if text:
        note = ""
        if overrides:
            note = (" — written for the config file; this run changed "
                    + ", ".join(overrides) + " with --set")
        out.append(f"<p id='config-description'><i>Config description:</i> "
                   f"{html.escape(text + note)}</p>")
    return out


_CSS = """body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}
img{max-width:100%}figure{margin:1em 0}table{border-collapse:collapse;font-size:90%}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}pre{background:#f6f6f6;
padding:1em;overflow:auto}"""


def _not_a_run(run_dir: Path, why: str):
    return RunFolderError(f"{run_dir} {why}: not a run folder; check the path")


def _figures(view, series: dict, param: str, figdir: Path) -> list[str]:
    """Write every figure the stored results allow; return their file names in order."""
    figdir.mkdir(exist_ok=True)
    made: list[str] = []
    _loss_figures(series, figdir, made)
    _gap_figure(series, figdir, made)
    _predictor_figure(view, list(series), figdir, made)
    _data_space_figure(view, param, figdir, made)
    _measure_figures(view, param, figdir, made)
    _diagnostics_figure(view, figdir, made)
    return made


def _warnings_html(store: RunStore, sentences: list[str]) -> list[str]:
    """The 'Solver warnings' section (the checkpoints' notes); adds a reading sentence."""
    notes = {m: c["notes"] for m, c in store.checkpoints().items() if c.get("notes")}
    out = ["<h2>Solver warnings</h2>"]
    if not notes:
        return [*out, "<p>None.</p>"]
    out.append("<ul id='warnings'>")
    for m, msgs in notes.items():
        shown = msgs[:20] + ([f"... and {len(msgs) - 20} more"] if len(msgs) > 20 else [])
        out += [f"<li>{html.escape(m)}: {html.escape(x)}</li>" for x in shown]
    out.append("</ul>")
    sentences.append("Some solvers warned (see 'Solver warnings'): "
                     + ", ".join(f"{m} ({len(v)})" for m, v in notes.items()) + ".")
    return out


def _page(doc, cfg, setup, verdict, sentences, warn_html, figures, rows) -> str:
    """The HTML of report.html: verdict, reading, setup, warnings, figures, metrics, config."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        *_header(doc),
        f"<p id='verdict'><b>Verdict:</b> {html.escape(verdict)}</p>" if verdict else "",
        "<h2>Reading</h2><ul id='reading'>",
        *[f"<li>{html.escape(s)}</li>" for s in sentences],
        "</ul><h2>Setup</h2><ul id='setup'>",
        *[f"<li>{html.escape(str(k))}: "
          f"{html.escape(fmt_value(v, _SETUP_DIGITS.get(k, 6)))}</li>"
          for k, v in setup.items()],
        "</ul>",
        *warn_html,
        "<h2>Figures</h2>",
        *figures,
        "<h2>Metrics (compact; full table in metrics.csv)</h2>",
        _metrics_table(rows),
        "<h2>Config</h2><pre>",
        html.escape(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)),
        "</pre><h2>Provenance</h2><pre>",
        html.escape(yaml.safe_dump(doc.get("provenance", {}), sort_keys=False)),
        "</pre></body></html>",
    ]
    return "\n".join(parts)


def render(run_dir) -> Path:
    """Write DIR/figures/* and DIR/report.html from the stored results.

    Works on a partial or interrupted run: only what its checkpoints committed is shown
    (:meth:`mfjko.io.RunStore.committed_view`).

    Args:
      run_dir: the run folder.

    Returns:
      The path of report.html. Raises :class:`mfjko.runner.RunFolderError` if ``run_dir``
      does not hold a run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _not_a_run(run_dir, "does not exist" if not run_dir.exists() else "is a file")
    if not is_run_folder(run_dir) and not (run_dir / "metrics.csv").exists():
        raise _not_a_run(run_dir, "holds no run (no .mfjko-run, config.yaml or metrics.csv)")
    store = RunStore(run_dir)
    view = store.committed_view() if store.zarr_path.exists() else store
    cfg_path = run_dir / "config.yaml"
    doc = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
    doc = doc if isinstance(doc, dict) else {}
    cfg, setup = doc.get("config", {}) or {}, doc.get("setup", {}) or {}
    metrics_path = run_dir / "metrics.csv"
    rows = read_metrics(metrics_path) if metrics_path.exists() else []
    series = _by_method(rows)
    timings = store.read_timings()
    figdir = store.figures
    made = _figures(view, series, cfg.get("model", {}).get("parametrization", "neuron"),
                    figdir)

    sentences = summary_sentences(series, timings, setup)
    verdict = _verdict(view, series, cfg)
    if not doc:
        sentences = ["This run was stopped while its folder was being created: nothing was "
                     "computed yet (resume it with --resume)."]
    elif not rows:
        sentences = ["No record was committed yet (resume the run with --resume)."]
    body = _page(doc, cfg, setup, verdict, sentences, _warnings_html(store, sentences),
                 [_img_tag(figdir / name, FIGURES[name]) for name in made], rows)
    out = run_dir / "report.html"
    atomic_write_text(out, body)
    return out


def _flatten(doc, prefix: str = "") -> dict:
    """A nested mapping as {dotted key: value} (lists are values)."""
    if not isinstance(doc, dict):
        return {prefix: doc}
    out = {}
    for k, v in doc.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def settings_differences(run_dirs) -> dict[str, list]:
    """The resolved settings (config.yaml's ``config``) that differ between runs.

    Returns:
      {dotted key: [value of each run]} (None where a run lacks the key or its config),
      sorted by key.
    """
    flat = []
    for d in run_dirs:
        try:
            doc = yaml.safe_load((Path(d) / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            doc = {}
        flat.append(_flatten(doc.get("config", {}) if isinstance(doc, dict) else {}))
    keys = sorted(set().union(*flat))
    return {k: [f.get(k) for f in flat] for k in keys
            if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1}


def _settings_table(run_dirs, labels) -> str:
    diff = settings_differences(run_dirs)
    if not diff:
        return "<p>The runs' settings are identical.</p>"
    head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    rows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td>"
        + "".join(f"<td>{'—' if v is None else html.escape(json.dumps(v, default=str))}</td>"
                  for v in values) + "</tr>" for k, values in diff.items())
    return ("<h2>Settings that differ</h2><table class='settings'><tr><th>setting</th>"
            f"{head}</tr>{rows}</table>")


def compare(run_dirs, out_dir) -> Path:
    """Overlay F(t) and the gaps to GD of several runs.

    One colour per method, one line style per run; write OUT/compare.png and
    OUT/compare.html; return the html path.
    Every folder is checked before OUT is created.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two run folders")
    for d in run_dirs:
        if not (d / "metrics.csv").is_file():
            raise _not_a_run(d, "does not exist" if not d.exists() else "has no metrics.csv")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"--out {out_dir} is a file, not a folder: choose a folder path "
                             "for compare.html")
    out_dir.mkdir(parents=True, exist_ok=True)
    dashes = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = []
    for r, d in enumerate(run_dirs):
        series = _by_method(read_metrics(d / "metrics.csv"))
        label = d.name or str(d)
        labels.append(label)
        ls = dashes[r % len(dashes)]
        for m, s in series.items():
            kw = {"color": COLORS.get(m), "linestyle": ls, "label": f"{label}: {m}"}
            axes[0].plot(s["t"], _positive(s["loss"]), **kw)
            if m != "gd":
                axes[1].plot(s["t"], _positive(s["loss_gap"]), **kw)
                axes[2].plot(s["t"], _positive(s["measure_gap"]), **kw)
    for ax, title in zip(axes, ("F(t)", "loss gap |F − F_GD|", "measure gap S_ε(μ, μ_GD)"),
                         strict=True):
        ax.set(yscale="log", xlabel="mean-field time t", title=title)
        ax.legend(fontsize=7)
    _save(fig, out_dir / "compare.png")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>mfjko compare</title>"
            f"<style>{_CSS}</style></head><body><h1>mfjko compare</h1><p>runs: "
            + ", ".join(html.escape(str(d)) for d in run_dirs) + " (line styles "
            + ", ".join(f"{html.escape(lab)} {dashes[i % 4]}" for i, lab in enumerate(labels))
            + ")</p>" + _settings_table(run_dirs, labels)
            + _img_tag(out_dir / "compare.png", "F(t) and gaps of the runs", "")
            + "</body></html>")
    out = out_dir / "compare.html"
    atomic_write_text(out, page)
    return out
