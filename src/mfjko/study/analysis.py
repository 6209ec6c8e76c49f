r"""From a sweep's tidy table to one row per point: gaps, drift ratio, regime; and rate fits.

Gaps of a JKO run (docs/STUDY.md): sup over recorded t of |F_jko(t) − F_ref(t)| / F_GD(t)
for ref = GD and ref = Langevin at D = ε/(4τ) (sup in time, since the curves can cross),
plus the predictor and measure gaps at T. Rates: least-squares slopes of log(gap) against
log(δ) with their standard errors and 95 % intervals (Student t).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mfjko.study.regime import (
    classify,
    predicted_drift_ratio,
    sup_relative_gap,
    sup_relative_noise,
)

__all__ = ["point_summaries", "fit_rate", "FACTS"]

#: per-point facts carried from the table (mfjko.sweep.execute.point_facts)
FACTS = ("delta", "tau", "eps", "D", "eps_over_delta2", "courant", "speed0", "grid_size",
         "drift_predicted_field")


def _series(rows: pd.DataFrame, method: str, column: str = "loss") -> pd.Series:
    sub = rows[rows["method"] == method].set_index("t")
    if column not in sub:  # tables of sweeps run before the column existed
        return pd.Series(np.nan, index=sub.index).sort_index()
    return sub[column].sort_index()


def _sup_noise(rows: pd.DataFrame, gd: pd.Series) -> float:
    """Sup over t of one standard error of F_Langevin − F_GD, relative to F_GD (NaN: unknown)."""
    lang = _series(rows, "langevin", "loss_se")
    if lang.empty or gd.empty:
        return math.nan
    ref = _series(rows, "gd", "loss_se").reindex(lang.index)
    return sup_relative_noise(lang.to_numpy(), ref.to_numpy(), gd.reindex(lang.index).to_numpy())


def _sup_gap(f: pd.Series, ref: pd.Series, scale: pd.Series) -> float:
    if f.empty or ref.empty:
        return math.nan
    common = f.index.intersection(ref.index).intersection(scale.index)
    if len(common) < len(f.index):  # an incomplete reference: no gap
        return math.nan
    return sup_relative_gap(f[common], ref[common], scale[common])


def _at_end(rows: pd.DataFrame, method: str, column: str) -> float:
    sub = rows[rows["method"] == method].sort_values("t")
    return float(sub[column].iloc[-1]) if len(sub) and column in sub else math.nan


def _point_record(pid, rows: pd.DataFrame, axes: list[str], names: list[str]) -> dict:
    """The summary of one point: coordinates, facts and the gaps of its grid method.

    The grid method is the first of ``names`` the point ran (:func:`point_summaries`).
    """
    first = rows.iloc[0]
    jko = next((m for m in names if (rows["method"] == m).any()), names[0])
    prefix = "" if jko == "jko" else f"{jko}_"
    rec = {"point": pid, "method": jko, **{a: first[a] for a in axes if a in rows},
           **{f: first[prefix + f] for f in FACTS
              if prefix + f in rows and pd.notna(first[prefix + f])}}
    gd, f = _series(rows, "gd"), _series(rows, jko)
    complete = not f.empty and not gd.empty and f.index.max() >= gd.index.max() - 1e-12
    rec["complete"] = bool(complete)
    rec["gap_gd"] = _sup_gap(f, gd, gd)
    rec["gap_langevin"] = _sup_gap(f, _series(rows, "langevin"), gd)
    rec["langevin_gap_gd"] = _sup_gap(_series(rows, "langevin"), gd, gd)
    rec["reference_noise"] = _sup_noise(rows, gd)
    rec["gap_gd_T"] = float(abs(f.iloc[-1] - gd.iloc[-1]) / gd.iloc[-1]) if complete \
        else math.nan
    for col in ("pred_gap", "pred_gap_test", "measure_gap", "direction_gap"):
        rec[f"{col}_T"] = _at_end(rows, jko, col)
    rec["langevin_measure_gap_T"] = _at_end(rows, "langevin", "measure_gap")
    for m in sorted(set(rows["method"]) - {"gd", "langevin", *names}):
        ref = _series(rows, m)
        rec[f"gap_{m}"] = _sup_gap(f, ref, gd)
        rec[f"gap_{m}_T"] = float(abs(f.iloc[-1] - ref.iloc[-1]) / gd.iloc[-1]) \
            if complete and ref.index.max() >= f.index.max() - 1e-12 else math.nan
    drift = rows[(rows["method"] == jko) & (rows["t"] > 0)]["drift_ratio"]
    rec["drift_ratio"] = float(drift.mean()) if len(drift) else math.nan
    rec["F_gd_T"] = float(gd.iloc[-1]) if not gd.empty else math.nan
    rec["F_jko_T"] = float(f.iloc[-1]) if not f.empty else math.nan
    return rec


def point_summaries(table: pd.DataFrame, axes: list[str],
                    jko: str | list[str] = "jko") -> pd.DataFrame:
    """One row per point: coordinates, facts, the JKO's gaps, drift ratios and regime.

    The axis coordinates and facts of the point, the JKO's gaps and measured drift ratio,
    the predicted drift ratio ρ(c, ε/δ²) and the regime
    (:func:`~mfjko.study.regime.classify`).

    Besides GD and Langevin, the gaps to every other method of the point (``gap_<m>``: sup
    in time, ``gap_<m>_T``: at T, both relative to F_GD) are reported.

    Args:
      table: the sweep's tidy table (:func:`mfjko.sweep.results.load_table`).
      axes: the columns identifying a point's coordinates (kept in the output).
      jko: the grid method whose regime is asked (its facts are the table's
        ``<jko>_<fact>`` columns unless it is "jko"; the sweep's ``study.method``), or a
        list of them: each point is summarized for the first one it ran (column
        ``method``).

    Returns:
      A DataFrame indexed like the points.
    """
    out = []
    names = [jko] if isinstance(jko, str) else list(jko)
    for pid, rows in table.groupby("point", sort=True):
        out.append(_point_record(pid, rows, axes, names))
    summary = pd.DataFrame(out)
    if summary.empty:
        return summary
    if {"courant", "eps_over_delta2"} <= set(summary):
        summary["drift_predicted"] = predicted_drift_ratio(summary["courant"].to_numpy(),
                                                           summary["eps_over_delta2"].to_numpy())
    verdicts = [classify(r.drift_ratio, r.gap_gd, r.gap_langevin, r.langevin_gap_gd,
                         r.reference_noise) for r in summary.itertuples()]
    summary["regime"] = [v.regime for v in verdicts]
    return summary


def fit_rate(x, y) -> dict:
    """Least-squares fit log y = a + p log x: the rate p, its standard error and 95 % CI.

    The confidence interval uses Student t with n − 2 degrees of freedom; non-positive or
    non-finite pairs are dropped.

    Args:
      x: positive abscissae (e.g. grid spacings δ).
      y: positive values (e.g. gaps).

    Returns:
      dict with ``rate``, ``stderr``, ``ci_low``, ``ci_high``, ``n``, ``intercept``
      (NaN entries with fewer than 3 usable points for the interval, 2 for the rate).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = int(ok.sum())
    res = {"rate": math.nan, "stderr": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "n": n, "intercept": math.nan}
    if n < 2:
        return res
    fit = stats.linregress(lx, ly)
    res.update(rate=float(fit.slope), intercept=float(fit.intercept))
    if n >= 3:
        q = float(stats.t.ppf(0.975, n - 2))
        res.update(stderr=float(fit.stderr), ci_low=float(fit.slope - q * fit.stderr),
                   ci_high=float(fit.slope + q * fit.stderr))
    return res
