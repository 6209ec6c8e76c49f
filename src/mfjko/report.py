r"""Figures and a self-contained HTML report of a run folder (re-renderable from disk).

:func:`render` reads DIR/config.yaml, DIR/metrics.csv, DIR/timings.json and
DIR/trajectories.zarr (see :mod:`mfjko.io`) and writes DIR/figures/*.png, an animation
DIR/figures/measure.gif and DIR/report.html (images embedded as base64, so the page is one
file). :func:`compare` overlays the F(t) and gap curves of several run folders.

All curves are against mean-field time t (MATH.md). The measure heatmaps show a 2-D
marginal of the grid measure — (w_1, α) for ``neuron``, (angle of s, β) for ``sphere``
with d = 2 (first coordinate of s for d > 2), and for ``signed`` / ``pm`` the signed
mass over the first two coordinates of w — with GD's particles (a stored subsample)
overlaid at the same time.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from mfjko import methods as _methods  # noqa: E402
from mfjko import metrics as _metrics  # noqa: E402
from mfjko import parametrizations as _params  # noqa: E402
from mfjko.io import RunStore, read_metrics  # noqa: E402

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
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _loss_figures(series, figdir: Path, made: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, s in series.items():
        ax.plot(s["t"], _positive(s["loss"]), **_style(m))
    ax.set(yscale="log", xlabel="mean-field time t", ylabel="F(t)", title="objective")
    ax.legend()
    _save(fig, figdir / "loss.png")
    made.append("loss.png")
    fstar = next(iter(series.values()))["F_star"]
    if np.all(np.isfinite(fstar)):
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
    titles = ("loss gap |F − F_GD|", "predictor gap ‖f − f_GD‖ (test dashed)",
              "measure gap S_ε(μ, μ_GD)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(yscale="log", xlabel="mean-field time t", title=title)
        ax.legend(fontsize=8)
    _save(fig, figdir / "gaps.png")
    made.append("gaps.png")


def _record_indices(n: int, k: int = 4) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


def _is_1d(X: np.ndarray) -> bool:
    """1-D inputs: one varying column, plus possibly a constant bias column."""
    varying = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
    return len(varying) == 1


def _predictor_figure(store: RunStore, methods: list[str], figdir: Path, made: list[str]):
    X, y = store.get("data/X"), store.get("data/y")
    Xt = store.get("data/X_test")
    if not _is_1d(X):
        return
    j = next(j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0)
    order = np.argsort(Xt[:, j])
    t = store.get("gd/t")
    idx = _record_indices(len(t))
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
    x, yv, w, (lx, ly) = _project(param, support, weights)
    ex, ey = _edges(x), _edges(yv)
    H, _, _ = np.histogram2d(x, yv, bins=(ex, ey), weights=w)
    signed = param in ("signed", "pm")
    vmax = np.abs(H).max() or 1.0
    ax.pcolormesh(ex, ey, H.T, cmap="RdBu_r" if signed else "viridis",
                  vmin=-vmax if signed else 0.0, vmax=vmax, shading="flat")
    if particles is not None:
        px, py, _, _ = _project(param, particles, np.ones(len(particles)))
        ax.scatter(px, py, s=4, color="white", edgecolor="black", linewidth=0.3, alpha=0.8)
    ax.set(xlabel=lx, ylabel=ly, title=f"t = {t:.4g}", xlim=(ex[0], ex[-1]),
           ylim=(ey[0], ey[-1]))


def _measure_figures(store: RunStore, param: str, figdir: Path, made: list[str]) -> None:
    if not store.has("jko/weights"):
        return
    support = store.get("jko/support")
    W = store.get("jko/weights")
    t = store.get("jko/t")
    gd_particles = store.get("gd/particles") if store.has("gd/particles") else None
    n = min(len(W), len(t))
    idx = _record_indices(n)
    fig, axes = plt.subplots(1, len(idx), figsize=(4 * len(idx), 3.6), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        gp = gd_particles[i] if gd_particles is not None and i < len(gd_particles) else None
        _heatmap(ax, param, support, W[i], gp, t[i])
    fig.suptitle("JKO grid measure (heatmap) and GD particles (dots)")
    _save(fig, figdir / "measure.png")
    made.append("measure.png")

    import imageio.v2 as imageio

    frames = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(4.2, 3.6))
        gp = gd_particles[i] if gd_particles is not None and i < len(gd_particles) else None
        _heatmap(ax, param, support, W[i], gp, t[i])
        fig.tight_layout()
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    imageio.mimsave(figdir / "measure.gif", frames, duration=0.4, loop=0)
    made.append("measure.gif")


def _diagnostics_figure(store: RunStore, figdir: Path, made: list[str]) -> None:
    if not store.has("jko/steps/t"):
        return
    t = store.get("jko/steps/t")
    if len(t) == 0:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if store.has("jko/steps/sinkhorn_iterations"):
        axes[0].plot(t, store.get("jko/steps/sinkhorn_iterations")[: len(t)], ".-")
    axes[0].set(xlabel="mean-field time t", title="Sinkhorn iterations per JKO step")
    if store.has("jko/steps/marginal_error"):
        axes[1].semilogy(t, _positive(store.get("jko/steps/marginal_error")[: len(t)]), ".-")
    axes[1].set(xlabel="mean-field time t", title="final marginal error ‖b⊙Kᵀa − q‖₁")
    _save(fig, figdir / "jko_diagnostics.png")
    made.append("jko_diagnostics.png")


def _verdict(store: RunStore, series: dict) -> str:
    """The one-line verdict of the grid methods (the study's rule, regime.classify).

    Grid methods: kind "grid", or reporting a drift ratio (wfr_jko); each is pinned,
    GD-like, Langevin-like or neither by :func:`mfjko.study.regime.classify`.
    """
    from mfjko.study.regime import run_verdict

    lines = []
    for name, info in _methods.REGISTRY.items():
        path = f"{name}/steps/drift_ratio"
        if name not in series or not (info.kind == "grid" or store.has(path)):
            continue
        drift = store.get(path) if store.has(path) else None
        v = run_verdict(series, drift, name)
        if v is not None:
            lines.append(f"{name}: {v.sentence()}")
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


_CSS = """body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}
img{max-width:100%}figure{margin:1em 0}table{border-collapse:collapse;font-size:90%}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}pre{background:#f6f6f6;
padding:1em;overflow:auto}"""


def render(run_dir) -> Path:
    """Write DIR/figures/* and DIR/report.html from the stored results; return the html
    path. Works on a partial run (what is stored so far).
    """
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not (run_dir / "metrics.csv").exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.csv: not a run folder (or empty)")
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg, setup = doc.get("config", {}), doc.get("setup", {})
    rows = read_metrics(run_dir / "metrics.csv")
    series = _by_method(rows)
    timings = store.read_timings()
    figdir = store.figures
    figdir.mkdir(exist_ok=True)
    made: list[str] = []
    _loss_figures(series, figdir, made)
    _gap_figure(series, figdir, made)
    param = cfg.get("model", {}).get("parametrization", "neuron")
    _predictor_figure(store, list(series), figdir, made)
    _measure_figures(store, param, figdir, made)
    _diagnostics_figure(store, figdir, made)

    sentences = summary_sentences(series, timings, setup)
    verdict = _verdict(store, series)
    notes = {m: c["notes"] for m, c in store.checkpoints().items() if c.get("notes")}
    warn_html = ["<h2>Solver warnings</h2>"]
    if notes:
        warn_html.append("<ul id='warnings'>")
        for m, msgs in notes.items():
            shown = msgs[:20] + ([f"... and {len(msgs) - 20} more"] if len(msgs) > 20 else [])
            warn_html += [f"<li>{html.escape(m)}: {html.escape(x)}</li>" for x in shown]
        warn_html.append("</ul>")
        sentences.append("Some solvers warned (see 'Solver warnings'): "
                         + ", ".join(f"{m} ({len(v)})" for m, v in notes.items()) + ".")
    else:
        warn_html.append("<p>None.</p>")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>mfjko run {html.escape(str(cfg.get('name', '')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>mfjko run: {html.escape(str(cfg.get('name', '')))}</h1>",
        f"<p id='verdict'><b>Verdict:</b> {html.escape(verdict)}</p>" if verdict else "",
        f"<p>{html.escape(str(cfg.get('description', '')))}</p>",
        "<h2>Reading</h2><ul id='reading'>",
        *[f"<li>{html.escape(s)}</li>" for s in sentences],
        "</ul><h2>Setup</h2><ul>",
        *[f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in setup.items()],
        "</ul>",
        *warn_html,
        "<h2>Figures</h2>",
        *[_img_tag(figdir / name, FIGURES[name]) for name in made],
        "<h2>Metrics (compact; full table in metrics.csv)</h2>",
        _metrics_table(rows),
        "<h2>Config</h2><pre>",
        html.escape(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)),
        "</pre><h2>Provenance</h2><pre>",
        html.escape(yaml.safe_dump(doc.get("provenance", {}), sort_keys=False)),
        "</pre></body></html>",
    ]
    out = run_dir / "report.html"
    out.write_text("\n".join(parts))
    return out


def compare(run_dirs, out_dir) -> Path:
    """Overlay F(t) and the gaps to GD of several runs (one colour per method, one line
    style per run); write OUT/compare.png and OUT/compare.html; return the html path.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two run folders")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dashes = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = []
    for r, d in enumerate(run_dirs):
        path = d / "metrics.csv"
        if not path.exists():
            raise FileNotFoundError(f"{d} has no metrics.csv: not a run folder")
        series = _by_method(read_metrics(path))
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
            + ")</p>" + _img_tag(out_dir / "compare.png", "F(t) and gaps of the runs", "")
            + "</body></html>")
    out = out_dir / "compare.html"
    out.write_text(page)
    return out
