r"""Which regime a grid JKO run is in, by one stated rule (docs/STUDY.md "Regimes").

Pinning prediction. For a linear potential on an infinite 1-D grid of spacing δ, one
entropic JKO step sends the mass of a cell to cell j with probability ∝ exp(−(j − c)²/r),
c = τ|∇F′|/δ (cells per step), r = ε/δ²; its mean displacement is c·ρ(c, r) cells with

    ρ(c, r) = Σ_j j e^{−(j−c)²/r} / (c Σ_j e^{−(j−c)²/r}),

the *drift ratio* (1: mass moves as GD's velocity field would move it; 0: pinned). The
predicted pinning boundary is ρ(c, r) = 1/2. :func:`classify` turns a run's measured mean
drift ratio and its sup-in-time loss gaps to GD and to mean-field Langevin into a regime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["predicted_drift_ratio", "predicted_drift_ratio_field", "pinning_boundary",
           "Verdict", "classify", "sup_relative_gap", "run_verdict", "PIN_RATIO", "GAP_TOL"]

#: a run is pinned when its mean drift ratio is below this
PIN_RATIO = 0.5
#: a run tracks a reference when its sup-in-time relative loss gap is below this
GAP_TOL = 0.05


def predicted_drift_ratio(c, r, cells: int = 60):
    """ρ(c, r) of the module docstring (vectorized over c and r).

    Args:
      c: cells per step, τ|∇F′|/δ (> 0).
      r: ε/δ² (> 0).
      cells: range of j summed (±cells around ⌊c⌋).

    Returns:
      ρ with the broadcast shape of c and r.
    """
    c = np.asarray(c, dtype=np.float64)[..., None]
    r = np.asarray(r, dtype=np.float64)[..., None]
    j = np.arange(-cells, cells + 1, dtype=np.float64) + np.floor(c)
    logw = -((j - c) ** 2) / r
    w = np.exp(logw - logw.max(axis=-1, keepdims=True))
    return (np.sum(j * w, axis=-1) / np.sum(w, axis=-1)) / c[..., 0]


def predicted_drift_ratio_field(cells, r) -> float:
    """ρ predicted for a whole velocity field, aggregated as the measured ratio is.

    Each coordinate of each particle moves c·ρ(c, r) cells with c its own cells per step
    (the Gibbs kernel of a box is a product over axes); the ratio is the RMS displacement
    over the RMS speed.

    Args:
      cells: (m, D) per-coordinate cells per step τ|v_ik|/δ of m particles.
      r: ε/δ².

    Returns:
      The predicted drift ratio (NaN for a field at rest).
    """
    c = np.abs(np.asarray(cells, dtype=np.float64)).reshape(-1)
    c = c[c > 1e-12]
    if c.size == 0:
        return math.nan
    moved = c * predicted_drift_ratio(c, np.full(c.shape, float(r)))
    return float(np.sqrt(np.sum(moved**2) / np.sum(c**2)))


def pinning_boundary(c, level: float = PIN_RATIO, r_range=(1e-3, 1e2)) -> np.ndarray:
    """The r = ε/δ² at which ρ(c, r) = ``level``, for each c < 1/2, by bisection on log r.

    NaN for c ≥ 1/2, where even a deterministic step moves the mass one cell, and where
    ρ already exceeds ``level`` at the bracket's low end.

    Args:
      c: cells per step τ|∇F′|/δ (array).
      level: the drift ratio on the boundary.
      r_range: bracket (low, high) of r.

    Returns:
      r on the boundary, shape of c.
    """
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    out = np.full(c.shape, np.nan)
    for i, ci in enumerate(c):
        if not 0 < ci < 0.5:
            continue
        lo, hi = math.log(r_range[0]), math.log(r_range[1])
        if predicted_drift_ratio(ci, math.exp(lo)) > level:
            continue
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if predicted_drift_ratio(ci, math.exp(mid)) < level else (lo, mid)
        out[i] = math.exp(0.5 * (lo + hi))
    return out


@dataclass(frozen=True)
class Verdict:
    """A run's regime and the figures it rests on.

    Attributes:
      regime: "pinned", "GD-like", "Langevin-like" or "neither".
      drift_ratio: mean drift ratio over the run's steps.
      gap_gd: sup over recorded t of |F_jko − F_GD| / F_GD(t).
      gap_langevin: sup over recorded t of |F_jko − F_Langevin| / F_GD(t) (NaN without
        a Langevin run).
    """

    regime: str
    drift_ratio: float
    gap_gd: float
    gap_langevin: float

    def sentence(self) -> str:
        """The one-line verdict of a report."""
        g, gl, rho = self.gap_gd, self.gap_langevin, self.drift_ratio
        if self.regime == "pinned":
            return (f"Pinned: the grid holds the JKO mass (mean drift ratio {rho:.2f} < "
                    f"{PIN_RATIO}: mass moves {rho:.0%} of what GD's velocity field would "
                    f"move it); loss gap to GD up to {g:.1%}. Refine the grid or raise ε/δ².")
        if self.regime == "GD-like":
            return f"GD-like within {g:.1%} (sup-in-time relative loss gap; drift ratio {rho:.2f})."
        if self.regime == "Langevin-like":
            return (f"Langevin-like: within {gl:.1%} of mean-field Langevin at D = ε/(4τ), "
                    f"{g:.1%} from GD (drift ratio {rho:.2f}).")
        tail = f", {gl:.1%} from Langevin" if math.isfinite(gl) else ""
        return (f"Neither GD nor Langevin: {g:.1%} from GD{tail} (drift ratio {rho:.2f}); the "
                "grid's discretization error dominates.")


def classify(drift_ratio: float, gap_gd: float, gap_langevin: float = math.nan,
             pin: float = PIN_RATIO, tol: float = GAP_TOL) -> Verdict:
    """The regime of a run by the stated rule (module docstring).

    Pinned if the mean drift ratio is below ``pin``; else GD-like if the sup relative loss
    gap to GD is at most ``tol``; else Langevin-like if the gap to matched Langevin is at
    most ``tol``; else neither.

    Args:
      drift_ratio: mean drift ratio of the run's steps.
      gap_gd: sup relative loss gap to GD.
      gap_langevin: the same to Langevin at D = ε/(4τ) (NaN: not run).
      pin: drift ratio below which the run is pinned.
      tol: largest relative loss gap that counts as tracking a reference.

    Returns:
      The :class:`Verdict`.
    """
    if math.isfinite(drift_ratio) and drift_ratio < pin:
        regime = "pinned"
    elif gap_gd <= tol:
        regime = "GD-like"
    elif math.isfinite(gap_langevin) and gap_langevin <= tol:
        regime = "Langevin-like"
    else:
        regime = "neither"
    return Verdict(regime, float(drift_ratio), float(gap_gd), float(gap_langevin))


def sup_relative_gap(f, ref, scale) -> float:
    """sup_i |f_i − ref_i| / scale_i over the records both runs reached.

    NaN if ``f`` is empty or has a record the reference (or ``scale``) lacks.
    """
    f, ref, scale = (np.asarray(a, dtype=np.float64) for a in (f, ref, scale))
    n = len(f)
    if n == 0 or len(ref) < n or len(scale) < n:
        return math.nan
    return float(np.max(np.abs(f - ref[:n]) / scale[:n]))


def run_verdict(series: dict, drift, method: str = "jko") -> Verdict | None:
    """The verdict of one run from its metrics and the grid method's per-step drift ratios.

    The metrics are ``series[method]["loss"]`` per record, GD's and, if run, Langevin's;
    None when the run has no ``method`` or no GD.
    """
    if method not in series or "gd" not in series:
        return None
    gd = series["gd"]["loss"]
    f = series[method]["loss"]
    lang = series.get("langevin", {}).get("loss")
    gap_l = math.nan if lang is None else sup_relative_gap(f, lang, gd)
    drift = np.asarray(drift if drift is not None else [], dtype=np.float64)
    rho = float(np.nanmean(drift)) if drift.size else math.nan
    return classify(rho, sup_relative_gap(f, gd, gd), gap_l)
