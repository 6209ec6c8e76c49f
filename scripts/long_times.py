"""Issue 17, item 5 "Long times": the default problem to T = 40, the entropic bias, the box.

1. The default problem (configs/default.yaml: 41³ grid on [-3.5, 3.5]³, τ = 0.2,
   ε = 0.06125, D = ε/(4τ)) to T = 40, records every 2.0: F − F* of matched GD, of
   mean-field Langevin at the JKO's D (4 seeds; m per seed lowered to ``--m-main``, default
   25,000, to save time) and of the entropic JKO, with the gaps and their noise floors.
2. The entropic bias F(μ_D) − F*: Langevin-only runs (GD stays on as the runner's
   mandatory reference, on 200 sampled particles; no JKO) at D ∈ {0.005, 0.01, 0.02,
   0.04, D_JKO, 0.15}, 4 seeds of ``--m-sweep`` (default 10,000) particles, run to
   ``--T-sweep`` (default 400) and checked stationary: |F(T) − F(3T/4)| within twice its
   standard error, else rerun at 2T (up to ``--T-max``). The small-D law is fitted.
3. The box: mass outside [-3.5, 3.5]³ of GD's and Langevin's particles (full checkpoint
   states) against the JKO's ``edge_mass``; whether F*'s minimizer fits in the box.

Runs go to runs/long_times/ (git-ignored), through the runner's Python API
(:func:`mfjko.runner.run`, figures off); a finished run is reused, an interrupted one
resumed. Writes docs/findings/long_times.md and docs/findings/long_times.png; every number
on the page is read from the runs' metrics.csv, timings.json and state/*.npz.

Usage:
    nice -n 10 python scripts/long_times.py            # run what is missing, write the page
    python scripts/long_times.py --reuse               # only re-read finished runs
    python scripts/long_times.py --runs DIR --m-main 25000 --m-sweep 10000 --T-sweep 400
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "default.yaml"
PAGE = ROOT / "docs" / "findings" / "long_times.md"
FIG = ROOT / "docs" / "findings" / "long_times.png"
TIMES = (4.0, 10.0, 20.0, 30.0, 40.0)
D_OTHERS = (0.005, 0.01, 0.02, 0.04, 0.15)  # plus the JKO's D = ε/(4τ)
N_SMALL = 4  # the fit of the small-D law uses the N_SMALL smallest D
METHODS = ("gd", "langevin", "jko")
LABEL = {"gd": "GD (matched)", "langevin": "Langevin at D_JKO", "jko": "entropic JKO"}


# ----------------------------------------------------------------------------- runs

def _T_of(folder: Path) -> float:
    return float(yaml.safe_load((folder / "config.yaml").read_text())["config"]["T"])


def complete(folder: Path) -> bool:
    """Whether every method of the run folder has its record at t = T."""
    csv = folder / "metrics.csv"
    if not (csv.exists() and (folder / "config.yaml").exists()):
        return False
    df = pd.read_csv(csv)
    doc = yaml.safe_load((folder / "config.yaml").read_text())["config"]
    enabled = [k for k, v in doc["methods"].items() if v is not None]
    T = float(doc["T"])
    return all(((df.method == m) & np.isclose(df.t, T)).any() for m in enabled)


def ensure_run(folder: Path, sets: list[str], reuse: bool) -> Path:
    """The run of configs/default.yaml with ``sets`` in ``folder``: reused, resumed or new."""
    if complete(folder):
        return folder
    if reuse:
        sys.exit(f"--reuse: {folder} is not a finished run; run without --reuse first")
    from mfjko.config import load_config
    from mfjko.runner import run

    cfg = load_config(BASE, sets)
    resume = folder.exists() and (folder / "config.yaml").exists()
    print(f"{'resuming' if resume else 'running'} {folder.name}: {' '.join(sets)}", flush=True)
    t0 = time.time()
    run(cfg, folder, resume=resume, progress=False, render=False,
        source={"file": str(BASE.relative_to(ROOT)), "overrides": sets})
    print(f"  {folder.name}: {time.time() - t0:.0f} s wall", flush=True)
    return folder


def main_sets(m_main: int) -> list[str]:
    return ["T=40.0", "record_every=2.0", f"methods.langevin.m={m_main}"]


def sweep_sets(D: float, m: int, T: float) -> list[str]:
    return ["methods.jko=null", "methods.gd.init=particles", "init.m=200",
            "methods.langevin.match_jko=false", f"methods.langevin.D={D!r}",
            "methods.langevin.init=particles", f"methods.langevin.m={m}",
            f"T={float(T)!r}", f"record_every={float(T) / 20!r}", "metrics.measure_gap=none"]


def stationarity(df: pd.DataFrame) -> dict:
    """F(T) against F(3T/4) of the Langevin rows: the difference and its standard error."""
    lg = df[df.method == "langevin"].set_index("t")
    T = lg.index.max()
    t3 = lg.index[np.argmin(np.abs(lg.index - 0.75 * T))]
    diff = lg.loss[T] - lg.loss[t3]
    se = math.hypot(lg.loss_se[T], lg.loss_se[t3])
    return {"T": T, "t_check": t3, "diff": diff, "se": se, "ok": abs(diff) <= 2 * se}


def sweep_run(runs: Path, D: float, m: int, T0: float, T_max: float, reuse: bool) -> Path:
    """The shortest stationary Langevin run at D (T0, 2T0, ... up to T_max)."""
    T = T0
    while True:
        folder = ensure_run(runs / f"langevin_D{D:g}_T{T:g}", sweep_sets(D, m, T), reuse)
        st = stationarity(pd.read_csv(folder / "metrics.csv"))
        if st["ok"] or 2 * T > T_max or (reuse and not complete(
                runs / f"langevin_D{D:g}_T{2 * T:g}")):
            return folder
        print(f"  D = {D:g}: F(T) − F(3T/4) = {st['diff']:.2e} ± {st['se']:.1e} at T = {T:g}: "
              "not stationary, doubling T", flush=True)
        T *= 2


# ----------------------------------------------------------------------------- reading

def load_state(folder: Path, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Final particles (M, 3) and weights (M,) of a particle method's checkpoint."""
    z = np.load(folder / "state" / f"{method}.npz")
    theta = np.asarray(z["state__theta"])
    w = np.asarray(z["state__weights"]) if "state__weights" in z.files else None
    if w is None or w.shape != (theta.shape[0],):
        w = np.full(theta.shape[0], 1.0 / theta.shape[0])
    return theta, w / w.sum()


def box_of(folder: Path) -> np.ndarray:
    doc = yaml.safe_load((folder / "config.yaml").read_text())["config"]
    jko = doc["methods"].get("jko") or yaml.safe_load(BASE.read_text())["methods"]["jko"]
    return np.asarray(jko["grid"]["ranges"], float)


def outside(theta: np.ndarray, w: np.ndarray, box: np.ndarray) -> float:
    out = np.any((theta < box[:, 0]) | (theta > box[:, 1]), axis=1)
    return float(w[out].sum())


def reg_energy_outside(theta, w, box, lam) -> float:
    """(λ/2) ∫_{outside the box} (‖w‖² + α²) dμ: the part of F carried off the box."""
    out = np.any((theta < box[:, 0]) | (theta > box[:, 1]), axis=1)
    return float(0.5 * lam * np.sum(w[out] * np.sum(theta[out] ** 2, axis=1)))


def outside_series(folder: Path, box: np.ndarray) -> pd.DataFrame:
    """Per record: GD's mass outside the box (its full weighted support) and Langevin's
    fraction of saved particles outside (``metrics.particles_saved`` of them, binomial s.e.)."""
    import zarr

    z = zarr.open_group(str(folder / "trajectories.zarr"), mode="r")
    t = np.asarray(z["gd/t"][:])
    sup, wts = z["gd/support_full"], z["gd/weights_full"]
    gd_out = [outside(np.asarray(sup[i]), np.asarray(wts[i]) / np.sum(wts[i]), box)
              for i in range(len(t))]
    pl = np.asarray(z["langevin/particles"][:])
    frac = np.any((pl < box[:, 0]) | (pl > box[:, 1]), axis=2).mean(axis=1)
    se = np.sqrt(frac * (1 - frac) / pl.shape[1])
    lt_ = np.asarray(z["langevin/t"][:])
    return pd.DataFrame({"t": t, "gd_out": gd_out}).merge(
        pd.DataFrame({"t": lt_, "lg_out": frac, "lg_out_se": se, "n_saved": pl.shape[1]}),
        on="t").set_index("t")


def dataset_of(folder: Path):
    from mfjko import data

    doc = yaml.safe_load((folder / "config.yaml").read_text())["config"]
    return data.make_dataset(doc["data"]["name"], **doc["data"]["kwargs"]), doc


def sampling_bias(theta, X) -> float:
    """(1/(2n)) Σ_j Var_i(α_i σ(w_iᵀx_j)) / M: the O(1/M) excess of F of M iid draws."""
    out = np.maximum(X @ theta[:, :-1].T, 0.0) * theta[:, -1]  # (n, M)
    return float(0.5 * np.mean(out.var(axis=1)) / theta.shape[0])


def fstar_support(dataset, lam: float) -> dict:
    """F* by the runner's reference, its ‖ν‖_TV and the radius of its all-mass neurons."""
    from mfjko import optimum

    ref = optimum.reference_value(dataset, lam)
    nu = np.asarray(ref.result.nu)
    tv = float(np.abs(nu).sum())
    return {"value": float(ref.value), "method": ref.method, "tv": tv,
            "atoms": int(np.sum(np.abs(nu) > 1e-8 * max(tv, 1e-300))),
            "radius": math.sqrt(tv)}


def _wls(B: np.ndarray, y: np.ndarray, se: np.ndarray) -> dict:
    """Weighted least squares y ≈ B c (weights 1/se²): c, 95 % Student-t half-widths from
    the scaled residuals (n − k dof), and χ²/dof against the standard errors."""
    from scipy import stats

    n, k = B.shape
    W = 1.0 / se**2
    BtW = B.T * W
    c = np.linalg.solve(BtW @ B, BtW @ y)
    chi2 = float(np.sum(W * (y - B @ c) ** 2) / (n - k))
    cov = chi2 * np.linalg.inv(BtW @ B)
    return {"c": c, "ci": stats.t.ppf(0.975, n - k) * np.sqrt(np.diag(cov)), "chi2": chi2}


def fits(D: np.ndarray, y: np.ndarray, se: np.ndarray) -> dict:
    """Small-D laws of y = F(μ_D) − F*: c·D^p, a·D + c·D², a·D + b·D log(1/D)."""
    n = len(D)
    out = {"n": n, "D_max": float(D.max())}
    # power law: log y = log c + p log D (weights from the relative s.e.)
    pw = _wls(np.column_stack([np.ones(n), np.log(D)]), np.log(y), se / y)
    out["p"], out["p_ci"], out["c"], out["p_chi2"] = (float(pw["c"][1]), float(pw["ci"][1]),
                                                      float(math.exp(pw["c"][0])), pw["chi2"])
    q = _wls(np.column_stack([D, D**2]), y, se)
    out["aq"], out["aq_ci"], out["cq"], out["cq_ci"], out["q_chi2"] = (
        float(q["c"][0]), float(q["ci"][0]), float(q["c"][1]), float(q["ci"][1]), q["chi2"])
    lg = _wls(np.column_stack([D, D * np.log(1.0 / D)]), y, se)
    out["al"], out["al_ci"], out["bl"], out["bl_ci"], out["l_chi2"] = (
        float(lg["c"][0]), float(lg["ci"][0]), float(lg["c"][1]), float(lg["ci"][1]),
        lg["chi2"])
    r = y / D
    out["r_min"], out["r_max"] = float(r.min()), float(r.max())
    return out


# ----------------------------------------------------------------------------- page

def g(x: float, d: int = 3) -> str:
    """A number to d significant digits, in plain or e-notation."""
    if x is None or not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 1e-3 and abs(x) < 1e4:
        return f"{x:.{max(d - 1 - int(math.floor(math.log10(abs(x)))), 0)}f}"
    return f"{x:.{d - 1}e}"


def pct(x: float, d: int = 2) -> str:
    return "—" if not math.isfinite(x) else f"{100 * x:.{d}f} %"


def figure(main: pd.DataFrame, F_star: float, bias: pd.DataFrame, fit: dict, D_jko: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {"gd": ("tab:blue", "-"), "langevin": ("tab:orange", "-."), "jko": ("tab:green", "--")}
    for m in METHODS:
        r = main[main.method == m].sort_values("t")
        c, ls = style[m]
        a.plot(r.t, r.loss - F_star, color=c, ls=ls, marker="o", ms=3, label=LABEL[m])
        if m == "langevin":
            a.fill_between(r.t, r.loss - F_star - 2 * r.loss_se, r.loss - F_star + 2 * r.loss_se,
                           color=c, alpha=0.25, lw=0)
    a.set_yscale("log")
    a.set_xlabel("t (mean-field time)")
    a.set_ylabel("F − F*")
    a.set_title(f"default problem to T = 40 (D_JKO = {D_jko:.4g}; band: ±2 s.e.)")
    a.legend()
    a.grid(alpha=0.3, which="both")
    b.errorbar(bias.D, bias.excess, yerr=2 * bias.se, fmt="o", color="tab:orange",
               label="Langevin, stationary F(μ_D) − F* (±2 s.e.)")
    Dg = np.geomspace(bias.D.min() * 0.8, bias.D.max() * 1.2, 100)
    b.plot(Dg, fit["c"] * Dg ** fit["p"], "k:", label=f"fit D ≤ {fit['D_max']:g}: "
           f"{fit['c']:.3g}·D^{fit['p']:.2f}")
    b.plot(Dg, fit["aq"] * Dg + fit["cq"] * Dg**2, color="gray", lw=0.8,
           label=f"{fit['aq']:.3g}·D + {fit['cq']:.3g}·D²")
    b.axvline(D_jko, color="tab:green", ls="--", lw=0.8, label="D_JKO")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("D")
    b.set_ylabel("F(μ_D) − F*")
    b.set_title("entropic bias of mean-field Langevin")
    b.legend(fontsize=8)
    b.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(FIG, dpi=110)
    plt.close(fig)


def page(args, main_dir: Path, sweep_dirs: dict[float, Path]) -> str:
    main = pd.read_csv(main_dir / "metrics.csv")
    dataset, doc = dataset_of(main_dir)
    lam = float(doc["model"]["lam"])
    jc = doc["methods"]["jko"]
    D_jko = jc["eps"] / (4 * jc["tau"])
    F_star = float(main.F_star.dropna().iloc[0])
    assert np.allclose(main.F_star.dropna(), F_star), "F_star differs between rows"
    idx = {m: main[main.method == m].set_index("t") for m in METHODS}
    gd = idx["gd"]
    timing = json.loads((main_dir / "timings.json").read_text())
    T_main = _T_of(main_dir)

    L = []
    L.append("## Long times on the default problem (issue 17, item 5)\n")
    L.append("Reproduce: `nice -n 10 python scripts/long_times.py` (runs under "
             "runs/long_times/, then this page and long_times.png); `--reuse` re-reads "
             "finished runs. Every number here is read from the runs by the script.\n")
    L.append(f"Setup: configs/default.yaml (regression_1d, n_train = {dataset.n}, λ = {lam:g}; "
             f"41³ grid on [-3.5, 3.5]³, τ = {jc['tau']:g}, ε = {jc['eps']:g}, so "
             f"D_JKO = ε/(4τ) = {D_jko:.6g}), with `--set "
             + " --set ".join(main_sets(args.m_main)) + "`: T = "
             f"{T_main:g}, records every 2.0; matched GD (weighted particles at the grid "
             f"points, h = {doc['methods']['gd']['h']:g}); Langevin at D_JKO from the grid's "
             f"p0, {doc['methods']['langevin']['seeds']} seeds × "
             f"{doc['methods']['langevin']['m']:,} particles (lowered from the default "
             f"100,000 per seed to save time; h = {doc['methods']['langevin']['h']:g}). "
             f"F* = {F_star:.6g} is metrics.csv's `F_star` (the runner's convex reference, "
             "`mfjko.optimum.reference_value`: the continuous problem over signed measures on "
             "the sphere, unconstrained). Seconds per method (timings.json; these runs: a "
             "2-core machine shared with other jobs, nice 10): "
             + ", ".join(f"{m} {timing[m]:.0f} s" for m in METHODS if m in timing) + ".\n")

    L.append("### F − F* to T = 40\n")
    L.append("| t | GD F − F* | Langevin F − F* (± s.e.) | JKO F − F* | JKO vs GD | "
             "Langevin vs GD | JKO vs Langevin |")
    L.append("|---|---|---|---|---|---|---|")
    for t in TIMES:
        Fg = gd.loss[t]
        lg, jk = idx["langevin"].loc[t], idx["jko"].loc[t]
        jl = abs(jk.loss - lg.loss) / Fg
        jl_floor = math.hypot(lg.loss_se, jk.loss_se) / Fg
        L.append(f"| {t:g} | {g(Fg - F_star)} | {g(lg.loss - F_star)} ± {g(lg.loss_se, 2)} | "
                 f"{g(jk.loss - F_star)} | {pct(jk.loss_gap / Fg)} (floor "
                 f"{pct(jk.loss_gap_floor / Fg, 3)}) | {pct(lg.loss_gap / Fg)} (floor "
                 f"{pct(lg.loss_gap_floor / Fg, 3)}) | {pct(jl)} (floor {pct(jl_floor, 3)}) |")
    L.append("")
    L.append("Gaps are relative to F_GD(t): |F − F_GD|/F_GD with the floor "
             "`loss_gap_floor`/F_GD (one standard error of the gap: GD is deterministic, so "
             "it is Langevin's `loss_se`); JKO vs Langevin is |F_JKO − F_L|/F_GD with floor "
             "√(se_L² + se_JKO²)/F_GD. F itself at t = 40: "
             + ", ".join(f"{m} {g(idx[m].loss[T_main], 5)}" for m in METHODS)
             + "; its regularization part (λ/2)∫V dμ = F − data_loss: "
             + ", ".join(f"{m} {g(idx[m].loss[T_main] - idx[m].data_loss[T_main])}"
                         for m in METHODS) + ".\n")
    lg = idx["langevin"]
    tmin = lg.loss.idxmin()
    jmin = idx["jko"].loss.idxmin()
    L.append(f"Langevin's F is smallest at t = {tmin:g} (F − F* = {g(lg.loss[tmin] - F_star)}) "
             f"and the JKO's at t = {jmin:g} (F − F* = {g(idx['jko'].loss[jmin] - F_star)}); "
             f"GD's F − F* "
             f"{'falls monotonically' if gd.loss.is_monotonic_decreasing else 'ends'} "
             f"to {g(gd.loss[T_main] - F_star)} at t = {T_main:g}.\n")

    # ---------------------------------------------------------------- entropic bias
    rows = []
    for D, folder in sorted(sweep_dirs.items()):
        df = pd.read_csv(folder / "metrics.csv")
        st = stationarity(df)
        r = df[df.method == "langevin"].set_index("t").loc[st["T"]]
        theta, w = load_state(folder, "langevin")
        X = dataset.X
        tm = json.loads((folder / "timings.json").read_text())
        rows.append({"D": D, "T": st["T"], "F": r.loss, "excess": r.loss - F_star,
                     "se": r.loss_se, "reg": r.loss - r.data_loss,
                     "diff": st["diff"], "diff_se": st["se"], "t_check": st["t_check"],
                     "ok": st["ok"], "F_star_run": r.F_star,
                     "bias_m": sampling_bias(theta, X),
                     "out_box": outside(theta, w, box_of(main_dir)),
                     "E_out": reg_energy_outside(theta, w, box_of(main_dir), lam),
                     "seconds": tm.get("langevin", math.nan), "folder": folder.name})
    bias = pd.DataFrame(rows)
    sdoc = yaml.safe_load((next(iter(sweep_dirs.values())) / "config.yaml").read_text())["config"]
    small = bias.nsmallest(N_SMALL, "D")
    fit = fits(small.D.to_numpy(), small.excess.to_numpy(), small.se.to_numpy())
    fitc = fits(small.D.to_numpy(), (small.excess - small.bias_m).to_numpy(),
                small.se.to_numpy())
    fs = fstar_support(dataset, lam)
    data_star = fs["value"] - lam * fs["tv"]  # the data-fit term of F* at its minimizer
    L.append("### The entropic bias F(μ_D) − F*\n")
    L.append("Langevin-only runs: `--set " + " --set ".join(
        sweep_sets(0.0, args.m_sweep, 0.0)).replace("D=0.0", "D=<D>").replace(
        "T=0.0", "T=<T>").replace("record_every=0.0", "record_every=<T/20>") + "` on "
             "configs/default.yaml, "
             f"{sdoc['methods']['langevin']['seeds']} seeds × "
             f"{sdoc['methods']['langevin']['m']:,} particles, h = "
             f"{sdoc['methods']['langevin']['h']:g}. Without a JKO grid `init: grid` is not "
             "available, so the particles are drawn from the initial law itself (Gaussian, "
             "scale 0.5), the law the default grid's p0 discretizes; the stationary law does "
             "not depend on the start. GD runs beside them only as the runner's mandatory "
             "reference (200 sampled particles) and is not used. Stationarity: F(T) against "
             "F(3T/4) within two standard errors (else rerun at 2T). T is long because the "
             f"weight decay relaxes the dead neurons' spread at rate 2λ = {2 * lam:g} "
             f"(variance → D/λ per coordinate).\n")
    L.append("| D | T | F(μ_D) − F* (± s.e.) | (F − F*)/D | F(T) − F(3T/4) (± s.e.) | "
             "stationary | (λ/2)∫V dμ_D | data-fit excess | finite-M bias | mass outside box | "
             "(λ/2)∫_out V | Langevin time |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in bias.itertuples():
        mark = " (D_JKO)" if math.isclose(r.D, D_jko) else ""
        L.append(f"| {r.D:g}{mark} | {r.T:g} | {g(r.excess, 4)} ± {g(r.se, 2)} | "
                 f"{g(r.excess / r.D)} | {g(r.diff, 2)} ± {g(r.diff_se, 2)} | "
                 f"{'yes' if r.ok else 'NO'} | {g(r.reg)} | {g(r.F - r.reg - data_star, 2)} | "
                 f"{g(r.bias_m, 2)} | "
                 f"{pct(r.out_box, 1)} | {g(r.E_out)} | {r.seconds:.0f} s |")
    L.append("")
    L.append("*finite-M bias*: (1/(2n)) Σ_j Var(α σ(wᵀx_j))/M over the M pooled final "
             "particles, the excess of F of M iid draws over F of their law — the order of the "
             "particle error in F(μ_D); *(λ/2)∫V dμ_D* = F − data_loss, the weight-decay "
             "energy; *data-fit excess* = data_loss(μ_D) − (F* − λ‖ν*‖_TV), the data-fit part of "
             "F(μ_D) − F* (the rest is (λ/2)∫V dμ_D − λ‖ν*‖_TV); *(λ/2)∫_out V*: the part of "
             "the weight-decay energy carried by the mass outside "
             "[-3.5, 3.5]³. F_star of every run equals the main run's: "
             f"{bool(np.allclose(bias.F_star_run, F_star, rtol=1e-12, atol=0))}.\n")
    L.append(f"Small-D fits over the {fit['n']} smallest D (≤ {fit['D_max']:g}), weighted by "
             "the standard errors; 95 % Student-t intervals from the scaled residuals "
             "(n − 2 dof); χ²/dof against the standard errors says whether a law fits within "
             "the noise:\n")
    L.append(f"- c·D^p: p = {fit['p']:.3f} ± {fit['p_ci']:.3f}, c = {fit['c']:.3g} "
             f"(χ²/dof = {fit['p_chi2']:.3g});")
    L.append(f"- a·D + c·D²: a = {fit['aq']:.3f} ± {fit['aq_ci']:.3f}, c = {fit['cq']:.3g} ± "
             f"{fit['cq_ci']:.2g} (χ²/dof = {fit['q_chi2']:.3g});")
    L.append(f"- a·D + b·D log(1/D): a = {fit['al']:.3f} ± {fit['al_ci']:.3f}, b = "
             f"{fit['bl']:.3f} ± {fit['bl_ci']:.3f} (χ²/dof = {fit['l_chi2']:.3g});")
    L.append(f"- the same fits after subtracting the finite-M bias column: p = "
             f"{fitc['p']:.3f} ± {fitc['p_ci']:.3f}; a·D + c·D²: a = {fitc['aq']:.3f} ± "
             f"{fitc['aq_ci']:.3f} (χ²/dof = {fitc['q_chi2']:.3g}); a·D + b·D log(1/D): "
             f"a = {fitc['al']:.3f} ± {fitc['al_ci']:.3f}, b = {fitc['bl']:.3f} ± "
             f"{fitc['bl_ci']:.3f} (χ²/dof = {fitc['l_chi2']:.3g}).\n")
    best = "a·D + c·D²" if fit["q_chi2"] < fit["l_chi2"] else "a·D + b·D log(1/D)"
    a_best, a_ci = ((fit["aq"], fit["aq_ci"]) if best == "a·D + c·D²"
                    else (fit["al"], fit["al_ci"]))
    in15 = abs(a_best - 1.5) <= a_ci
    p_has1 = abs(fit["p"] - 1) <= fit["p_ci"]
    L.append(f"Reading: F(μ_D) − F* ∝ D^p with p = {fit['p']:.3f} ± {fit['p_ci']:.3f} ("
             + ("1 inside the interval: linear in D" if p_has1 else
                "1 outside the interval: linear in D with a correction")
             + f"); (F − F*)/D goes from {fit['r_min']:.3f} to "
             f"{fit['r_max']:.3f} over D = {bias.D.min():g}–{fit['D_max']:g}. Of the two "
             f"corrections, {best} has the smaller χ²/dof; its small-D slope is "
             f"{a_best:.2f} ± {a_ci:.2f}, "
             + ("which contains" if in15 else "which excludes")
             + " 3/2 = d_Θ/2, the value E[Φ] = (d_Θ/2)·D of a Gibbs measure e^{−Φ/D} of a "
             "fixed 2-homogeneous potential Φ on ℝ³ (F′ is 2-homogeneous in θ). The "
             "stationary measure is not that: its potential F′(μ_D) depends on μ_D, and "
             "F′(μ*) vanishes along the rays through F*'s atoms."
             + (f" No law fits within the seeds' standard errors (smallest χ²/dof = "
                f"{min(fit['q_chi2'], fit['l_chi2'], fit['p_chi2']):.2g}): errors of that order "
                "that the seeds do not see (the finite-M bias column, the time step h) remain, "
                "which is why the intervals come from the scaled residuals."
                if min(fit["q_chi2"], fit["l_chi2"], fit["p_chi2"]) > 2 else "")
             + "\n")

    # ---------------------------------------------------------------- the box
    box = box_of(main_dir)
    th_g, w_g = load_state(main_dir, "gd")
    th_l, w_l = load_state(main_dir, "langevin")
    jk = idx["jko"]
    L.append("### The box\n")
    L.append(f"The JKO lives on the grid's box [{box[0, 0]:g}, {box[0, 1]:g}]³; GD and "
             f"Langevin are unconstrained. At t = {T_main:g} (full checkpoint states):\n")
    L.append("| method | mass outside the box | max ‖θ‖_∞ | "
             "(λ/2)∫V dμ = F − data_loss | of which outside the box |")
    L.append("|---|---|---|---|---|")
    for key, th, w in (("gd", th_g, w_g), ("langevin", th_l, w_l)):
        reg = idx[key].loss[T_main] - idx[key].data_loss[T_main]
        L.append(f"| {LABEL[key]} | {pct(outside(th, w, box), 2)} | {np.abs(th).max():.3g} | "
                 f"{g(reg)} | {g(reg_energy_outside(th, w, box, lam))} |")
    L.append(f"| {LABEL['jko']} | 0 (`edge_mass`, on the faces: {pct(jk.edge_mass[T_main], 2)}; "
             f"at t = 4: {pct(jk.edge_mass[4.0], 2)}) | {box[0, 1]:g} | "
             f"{g(jk.loss[T_main] - jk.data_loss[T_main])} | 0 |")
    L.append("")
    L.append(f"F*: the reference ({fs['method']}) gives {fs['value']:.8g} (metrics.csv: "
             f"{F_star:.8g}) with a minimizer ν of ‖ν‖_TV = {fs['tv']:.4g} on {fs['atoms']} "
             "directions. Its probability-measure form (MATH.md, 'Global optimum') puts mass "
             "|β_k|/‖ν‖_TV on the balanced neuron (r s_k, ±r) with r = √‖ν‖_TV = "
             f"{fs['radius']:.3f}: every coordinate is at most r, so the minimizer lies in "
             f"the box [-3.5, 3.5]³ iff r ≤ 3.5 — here "
             f"{'it does' if fs['radius'] <= box[0, 1] else 'it does NOT'} (r = "
             f"{fs['radius']:.3f}; any other probability-measure form of ν puts less mass on some "
             "direction, hence a larger neuron there). F* is therefore also the optimum "
             "of the box-constrained problem over measures on [-3.5, 3.5]³ (the grid's own "
             "optimum, over measures on its points, is not computed here).\n")
    st = bias.set_index("D")
    rowj = st.loc[min(st.index, key=lambda d: abs(d - D_jko))]
    d40 = idx["langevin"].loss[T_main] - F_star - rowj.excess
    moving = abs(d40) > 2 * math.hypot(idx["langevin"].loss_se[T_main], rowj.se)
    L.append(f"Langevin at D_JKO {'is not' if moving else 'is'} stationary at t = "
             f"{T_main:g} (within two standard errors): F − F* = "
             f"{g(idx['langevin'].loss[T_main] - F_star)} there against "
             f"{g(rowj.excess)} ± {g(rowj.se, 2)} at T = {rowj['T']:g} (the run of the table "
             "above, drawn from the law instead of p0).\n")
    ser = outside_series(main_dir, box)
    L.append("Over time (GD: its full weighted support, exact; Langevin: the "
             f"{int(ser.n_saved.iloc[0])} particles per record kept in trajectories.zarr, "
             "± binomial s.e.; JKO: `edge_mass`, its mass on the box's faces):\n")
    L.append("| t | GD mass outside | Langevin mass outside | JKO edge_mass | "
             "(F_L − F_JKO)/F_GD |")
    L.append("|---|---|---|---|---|")
    for t in TIMES:
        L.append(f"| {t:g} | {pct(ser.gd_out[t], 2)} | {pct(ser.lg_out[t], 1)} ± "
                 f"{pct(ser.lg_out_se[t], 1)} | {pct(jk.edge_mass[t], 2)} | "
                 f"{pct((idx['langevin'].loss[t] - jk.loss[t]) / gd.loss[t])} |")
    L.append("")
    reg_l = idx["langevin"].loss[T_main] - idx["langevin"].data_loss[T_main]
    reg_j = jk.loss[T_main] - jk.data_loss[T_main]
    gap_lj = idx["langevin"].loss[T_main] - jk.loss[T_main]
    e_out_l = reg_energy_outside(th_l, w_l, box, lam)
    L.append("What the box changes:\n")
    L.append(f"- GD leaves the box too: {pct(outside(th_g, w_g, box), 2)} of its mass at "
             f"t = {T_main:g} (particles up to ‖θ‖_∞ = {np.abs(th_g).max():.3g}), carrying "
             f"{g(reg_energy_outside(th_g, w_g, box, lam))} of its (λ/2)∫V — against GD's "
             f"F − F* = {g(gd.loss[T_main] - F_star)}. A JKO on this box cannot follow that "
             "mass (an effect of the box, not of the grid's spacing), though at t = 40 it is small "
             "against the JKO–GD gap F_JKO − F_GD = "
             f"{g(jk.loss[T_main] - gd.loss[T_main])}.")
    L.append(f"- Langevin at D_JKO spreads: {pct(outside(th_l, w_l, box), 1)} of its mass is "
             f"outside the box at t = {T_main:g} and {pct(rowj.out_box, 1)} at stationarity "
             f"(T = {rowj['T']:g}), where that mass carries {g(rowj.E_out)} of "
             f"F(μ_D) − F* = {g(rowj.excess)}. The JKO's entropic spread stops at the faces "
             "(edge_mass), so its long-time state lives on the box (at best a box-restricted "
             "analogue of μ_D), not near Langevin's μ_D. At t = 40 Langevin's weight-decay energy "
             f"(λ/2)∫V is {g(reg_l)}, {g(reg_energy_outside(th_l, w_l, box, lam))} of it "
             f"outside the box, the JKO's {g(reg_j)}. The JKO–Langevin gap grows with the "
             "mass at the faces and Langevin's mass outside (table above); at t = "
             f"{T_main:g}, F_L − F_JKO = {g(gap_lj)} is "
             + ("smaller than the energy Langevin carries outside the box, so the truncation "
                "alone can account for it. " if gap_lj <= e_out_l else
                "larger than the energy Langevin carries outside the box. ")
             + "A long-time JKO–Langevin comparison needs a box that "
             "holds μ_D (or a Langevin confined to the same box).")
    L.append("- F* is not affected: its minimizer fits inside the box.\n")
    figure(main, F_star, bias, fit, D_jko)
    L.append("![F − F* vs t; F(μ_D) − F* vs D](long_times.png)\n")
    return "\n".join(L)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse", action="store_true", help="only re-read finished runs")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "long_times")
    ap.add_argument("--m-main", type=int, default=25_000)
    ap.add_argument("--m-sweep", type=int, default=10_000)
    ap.add_argument("--T-sweep", type=float, default=400.0)
    ap.add_argument("--T-max", type=float, default=1600.0)
    ap.add_argument("--only-main", action="store_true", help="stop after the T = 40 run")
    args = ap.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)

    main_dir = ensure_run(args.runs / "default_T40", main_sets(args.m_main), args.reuse)
    if args.only_main:
        return
    doc = yaml.safe_load((main_dir / "config.yaml").read_text())["config"]
    D_jko = doc["methods"]["jko"]["eps"] / (4 * doc["methods"]["jko"]["tau"])
    sweep = {}
    for D in sorted((*D_OTHERS, D_jko)):
        sweep[D] = sweep_run(args.runs, D, args.m_sweep, args.T_sweep, args.T_max, args.reuse)
    PAGE.write_text(page(args, main_dir, sweep))
    print(f"wrote {PAGE.relative_to(ROOT)} and {FIG.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
