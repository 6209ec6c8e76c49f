r"""Which regime a grid JKO run is in, by one stated rule (docs/STUDY.md "Regimes").

Pinning prediction. For a linear potential on an infinite 1-D grid of spacing δ, one
entropic JKO step sends the mass of a cell to cell j with probability ∝ exp(−(j − c)²/r),
c = τ|∇F′|/δ (cells per step), r = ε/δ²; its mean displacement is c·ρ(c, r) cells with

    ρ(c, r) = Σ_j j e^{−(j−c)²/r} / (c Σ_j e^{−(j−c)²/r}),

the *drift ratio* (1: mass moves as GD's velocity field would move it; 0: pinned). By
Poisson summation, with q = e^{−π²r}, ρ = 1 − (2πr/c)·q·sin 2πc / (1 + 2q cos 2πc) up to
the second harmonic, O((r/c)·q⁴) (:func:`drift_ratio_closed_form`). The predicted pinning
boundary is ρ(c, r) = 1/2. :func:`classify` turns a run's measured mean
drift ratio, its sup-in-time loss gaps to GD and to mean-field Langevin, and how far apart
those two references are beyond their noise, into a regime (docs/STUDY.md "Regimes").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["predicted_drift_ratio", "drift_ratio_closed_form", "predicted_drift_ratio_field",
           "predicted_drift_ratio_blocks", "factor_speeds", "predicted_drift_ratio_factors",
           "pinning_boundary", "Verdict", "classify", "sup_relative_gap", "run_verdict",
           "PIN_RATIO", "GAP_TOL",
           "REGIMES"]

#: every regime :func:`classify` can return
REGIMES = ("pinned", "GD-like", "Langevin-like", "indistinguishable", "neither")

#: a run is pinned when its mean drift ratio is below this
PIN_RATIO = 0.5
#: a run tracks a reference when its sup-in-time relative loss gap is below this; the two
#: references count as resolvably apart when their own gap exceeds it by twice their noise
GAP_TOL = 0.03


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


def drift_ratio_closed_form(c, r):
    """ρ(c, r) to the first harmonic of its Poisson sum (vectorized over c and r).

    Σ_j (j, 1)·e^{−(j−c)²/r} = √(πr) Σ_k e^{−π²k²r − 2πikc}·(c − iπkr, 1), so with
    q = e^{−π²r}: ρ = 1 − (2πr/c)·q·sin 2πc / (1 + 2q cos 2πc) + O((r/c)·q⁴). The
    error is below 2e-7 at r = 1/2 (c ≥ 0.05) and at rounding level for r ≥ 1; dropping
    the denominator, as 1 − (2πr/c)·q·sin 2πc, costs O((r/c)·q²): 2e-3 at r = 1/2,
    c = 0.05. It shows how fast the lattice's slow-down vanishes: ρ − 1 = O(e^{−π²r}),
    at most 4π²r·e^{−π²r} (0.21 % at r = 1, 14 % at r = 1/2).

    Args:
      c: cells per step, τ|∇F′|/δ (> 0).
      r: ε/δ² (> 0).

    Returns:
      ρ with the broadcast shape of c and r.
    """
    c = np.asarray(c, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    q = np.exp(-np.pi**2 * r)
    return 1.0 - (2 * np.pi * r / c) * q * np.sin(2 * np.pi * c) / (
        1.0 + 2.0 * q * np.cos(2 * np.pi * c))


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


def predicted_drift_ratio_blocks(velocity, blocks, tau: float, eps: float) -> float:
    """ρ predicted for a velocity field on an anisotropic product grid.

    Each factor k of the grid (a line, an angle, a set of directions) has its own spacing
    δ_k, hence its own c_k = τ|v_k|/δ_k and r_k = ε/δ_k², where v_k is the particle's
    velocity in that factor's coordinates (its norm for a direction). The factor moves it
    δ_k·c_k·ρ(c_k, r_k); the ratio is the RMS displacement over the RMS of τ|v|, as
    :func:`predicted_drift_ratio_field` aggregates (which it equals on a box of equal
    spacings).

    Args:
      velocity: (m, D) particle velocities in Θ.
      blocks: ((slice of Θ's coordinates, δ_k), ...), e.g.
        :meth:`mfjko.geometry.ProductGeometry.theta_blocks`.
      tau: JKO step τ.
      eps: entropy ε.

    Returns:
      The predicted drift ratio (NaN for a field at rest).
    """
    v = np.asarray(velocity, dtype=np.float64)
    moved2 = speed2 = 0.0
    for sl, delta in blocks:
        step = tau * np.linalg.norm(v[:, sl], axis=1)  # distance GD moves in one step
        c = step / delta
        keep = c > 1e-12
        if not keep.any():
            continue
        rho = predicted_drift_ratio(c[keep], np.full(int(keep.sum()), eps / delta**2))
        moved2 += float(np.sum((step[keep] * rho) ** 2))
        speed2 += float(np.sum(step[keep] ** 2))
    return math.sqrt(moved2 / speed2) if speed2 > 0 else math.nan


def factor_speeds(velocity, blocks) -> np.ndarray:
    """RMS speed of a velocity field in each factor of a product grid.

    Args:
      velocity: (m, D) particle velocities in Θ.
      blocks: ((slice of Θ's coordinates, δ_k), ...), as
        :meth:`mfjko.geometry.ProductGeometry.theta_blocks` gives.

    Returns:
      (K,) the RMS over particles of |v_k|, the velocity's norm in factor k.
    """
    v = np.asarray(velocity, dtype=np.float64)
    return np.array([math.sqrt(float(np.mean(np.sum(v[:, sl] ** 2, axis=1))))
                     for sl, _ in blocks])


def predicted_drift_ratio_factors(speeds, spacings, tau: float, eps: float) -> float:
    """The scalar model ρ(c, r) applied per factor of an anisotropic product grid.

    Factor k moves the mass with c_k = τV_k/δ_k cells per step at r_k = ε/δ_k² (V_k the
    RMS speed in that factor, :func:`factor_speeds`): a distance δ_k·c_k·ρ(c_k, r_k)
    against GD's τV_k. The ratio is their RMS over factors, √(Σ (τV_kρ_k)² / Σ (τV_k)²);
    with one factor it is ρ(c, r) itself.

    Args:
      speeds: (K,) RMS speed per factor.
      spacings: (K,) spacing δ_k per factor.
      tau: JKO step τ.
      eps: entropy ε.

    Returns:
      The predicted drift ratio (NaN when every speed is 0).
    """
    # each factor as one "particle" moving at its RMS speed in its own coordinate
    V = np.asarray(speeds, dtype=np.float64)[None, :]
    blocks = tuple((slice(k, k + 1), float(d)) for k, d in enumerate(spacings))
    return predicted_drift_ratio_blocks(V, blocks, tau, eps)


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
      regime: one of :data:`REGIMES`.
      drift_ratio: mean drift ratio over the run's steps.
      gap_gd: sup over recorded t of |F_jko − F_GD| / F_GD(t).
      gap_langevin: sup over recorded t of |F_jko − F_Langevin| / F_GD(t) (NaN without
        a Langevin run).
      separation: sup over t of |F_Langevin − F_GD| / F_GD(t): how far apart the two
        references are (NaN without Langevin).
      noise: sup over t of one standard error of F_Langevin − F_GD, relative to F_GD
        (the references' noise floor; NaN: unknown, e.g. one sampled draw).
    """

    regime: str
    drift_ratio: float
    gap_gd: float
    gap_langevin: float
    separation: float = math.nan
    noise: float = math.nan

    def _refs(self) -> str:
        if not math.isfinite(self.separation):
            return ""
        noise = (f" ± {self.noise:.2%}" if math.isfinite(self.noise)
                 else ", noise unknown")
        return f"; GD and Langevin {self.separation:.1%} apart{noise}"

    def sentence(self) -> str:
        """The one-line verdict of a report."""
        g, gl, rho = self.gap_gd, self.gap_langevin, self.drift_ratio
        refs = self._refs()
        if self.regime == "pinned":
            return (f"Pinned: the grid holds the JKO mass (mean drift ratio {rho:.2f} < "
                    f"{PIN_RATIO}: mass moves {rho:.0%} of what GD's velocity field would "
                    f"move it); loss gap to GD up to {g:.1%}. Refine the grid or raise ε/δ².")
        if self.regime == "GD-like":
            tail = f", {gl:.1%} from Langevin" if math.isfinite(gl) else ""
            return (f"GD-like within {g:.1%} (sup-in-time relative loss gap{tail}{refs}; "
                    f"drift ratio {rho:.2f}).")
        if self.regime == "Langevin-like":
            return (f"Langevin-like: within {gl:.1%} of mean-field Langevin at D = ε/(4τ), "
                    f"{g:.1%} from GD{refs} (drift ratio {rho:.2f}).")
        if self.regime == "indistinguishable":
            return (f"Indistinguishable: {g:.1%} from GD and {gl:.1%} from Langevin, but the "
                    f"two references are not resolvably apart{refs} (need > "
                    f"{GAP_TOL:.0%} + 2 noise); drift ratio {rho:.2f}.")
        tail = f", {gl:.1%} from Langevin" if math.isfinite(gl) else ""
        return (f"Neither GD nor Langevin: {g:.1%} from GD{tail}{refs} (drift ratio "
                f"{rho:.2f}); the grid's discretization error dominates.")


def classify(drift_ratio: float, gap_gd: float, gap_langevin: float = math.nan,
             separation: float = math.nan, noise: float = math.nan,
             pin: float = PIN_RATIO, tol: float = GAP_TOL) -> Verdict:
    """The regime of a run by the stated rule (docs/STUDY.md "Regimes").

    Pinned if the mean drift ratio is below ``pin``. Without a Langevin reference:
    GD-like if the sup relative loss gap to GD is at most ``tol``, else neither. With one,
    the references are *resolvably apart* when ``separation > tol + 2·noise`` (an unknown
    noise never resolves); then the run is like the nearer reference if its gap is at
    most ``tol``, else neither. When they are not apart, a run within ``tol`` of either
    is "indistinguishable" (it cannot be told which it follows), else neither.

    Args:
      drift_ratio: mean drift ratio of the run's steps.
      gap_gd: sup relative loss gap to GD.
      gap_langevin: the same to Langevin at D = ε/(4τ) (NaN: not run).
      separation: sup relative gap between Langevin and GD (NaN: not run).
      noise: sup relative standard error of that gap (NaN: unknown).
      pin: drift ratio below which the run is pinned.
      tol: largest relative loss gap that counts as tracking a reference.

    Returns:
      The :class:`Verdict`.
    """
    near_gd = gap_gd <= tol
    if math.isfinite(drift_ratio) and drift_ratio < pin:
        regime = "pinned"
    elif not math.isfinite(gap_langevin):
        regime = "GD-like" if near_gd else "neither"
    else:
        apart = math.isfinite(noise) and separation > tol + 2.0 * noise
        nearest = min(gap_gd, gap_langevin)
        if not nearest <= tol:
            regime = "neither"
        elif not apart:
            regime = "indistinguishable"
        else:
            regime = "GD-like" if gap_gd <= gap_langevin else "Langevin-like"
    return Verdict(regime, float(drift_ratio), float(gap_gd), float(gap_langevin),
                   float(separation), float(noise))


def sup_relative_gap(f, ref, scale) -> float:
    """sup_i |f_i − ref_i| / scale_i over the records both runs reached.

    NaN if ``f`` is empty or has a record the reference (or ``scale``) lacks.
    """
    f, ref, scale = (np.asarray(a, dtype=np.float64) for a in (f, ref, scale))
    n = len(f)
    if n == 0 or len(ref) < n or len(scale) < n:
        return math.nan
    return float(np.max(np.abs(f - ref[:n]) / scale[:n]))


def sup_relative_noise(se, se_ref, scale) -> float:
    """sup_i √(se_i² + se_ref_i²) / scale_i: the relative noise floor of a gap series.

    NaN when any standard error is unknown (NaN) or the series are empty.
    """
    se, se_ref, scale = (np.asarray(a, dtype=np.float64) for a in (se, se_ref, scale))
    n = min(len(se), len(se_ref), len(scale))
    if n == 0:
        return math.nan
    v = np.hypot(se[:n], se_ref[:n]) / scale[:n]
    return float(np.max(v)) if np.all(np.isfinite(v)) else math.nan


def run_verdict(series: dict, drift, method: str = "jko") -> Verdict | None:
    """The verdict of one run from its metrics and the grid method's per-step drift ratios.

    The metrics are ``series[method]["loss"]`` per record, GD's and, if run, Langevin's,
    with their ``loss_se`` (missing: unknown); None when the run has no ``method`` or no GD.
    """
    if method not in series or "gd" not in series:
        return None
    gd = series["gd"]["loss"]
    f = series[method]["loss"]
    lang = series.get("langevin", {}).get("loss")
    gap_l = sep = noise = math.nan
    if lang is not None:
        gap_l, sep = sup_relative_gap(f, lang, gd), sup_relative_gap(lang, gd, gd)
        nan = np.full(len(gd), np.nan)
        noise = sup_relative_noise(series["langevin"].get("loss_se", nan),
                                   series["gd"].get("loss_se", nan), gd)
    drift = np.asarray(drift if drift is not None else [], dtype=np.float64)
    rho = float(np.nanmean(drift)) if drift.size else math.nan
    return classify(rho, sup_relative_gap(f, gd, gd), gap_l, sep, noise)
