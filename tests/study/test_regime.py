"""The pinning prediction against an exact JKO step, and the regime rule."""

import math

import numpy as np
import pytest

from mfjko import grids
from mfjko.jko import JKOSolverOptions, jko_step
from mfjko.study.regime import (
    GAP_TOL,
    REGIMES,
    classify,
    drift_ratio_closed_form,
    pinning_boundary,
    predicted_drift_ratio,
    run_verdict,
)


@pytest.mark.parametrize("c, r", [(0.2, 0.05), (0.2, 0.3), (0.4, 0.1), (0.7, 0.2), (0.1, 2.0)])
def test_predicted_drift_ratio_is_the_jko_step_of_a_linear_potential(c, r):
    """F(p) = Σ_k p_k (−V θ_k) on a long line: the plan's barycentric displacement of an
    interior cell is c·ρ(c, r) cells (the closed form the pinning boundary rests on)."""
    delta, tau = 0.1, 0.05
    V = c * delta / tau
    eps = r * delta**2
    x = np.arange(-60, 61) * delta
    geom = grids.cartesian_grid([(x[0], x[-1])], [len(x)])
    q = np.exp(-0.5 * (x / 1.5) ** 2)
    q /= q.sum()
    lam = 1.0
    v = -2.0 * V * x / lam  # (λ/2) v_k = −V θ_k: a constant force V
    phi = np.zeros((1, len(x)))
    _, state, diag = jko_step(geom, q, phi, np.zeros(1), v, lam, tau, eps,
                              options=JKOSolverOptions(tol=1e-12))
    a, b = np.exp(np.asarray(state.f) / eps), np.exp(np.asarray(state.psi) / eps)
    K = np.exp(-((x[:, None] - x[None, :]) ** 2) / eps)
    plan = a[:, None] * K * b[None, :]
    mid = slice(40, 81)  # interior sources, far from the ends
    bary = (plan[:, mid] * x[:, None]).sum(0) / plan[:, mid].sum(0)
    displacement = (bary - x[mid]) / delta
    np.testing.assert_allclose(displacement / c, predicted_drift_ratio(c, r), rtol=1e-6,
                               atol=1e-9)


def test_drift_ratio_closed_form_is_the_lattice_sum():
    """Poisson summation of the lattice sum: exact to 2e-7 at r = 1/2 and to rounding at
    r ≥ 1 over c ∈ [0.05, 1.5]; the form without the denominator is only O(q²)-close."""
    c = np.linspace(0.05, 1.5, 59)
    for r, tol in [(0.5, 2e-7), (1.0, 1e-13), (2.0, 1e-13), (4.0, 1e-13)]:
        np.testing.assert_allclose(drift_ratio_closed_form(c, r), predicted_drift_ratio(c, r),
                                   rtol=0, atol=tol)
    q = math.exp(-math.pi**2 * 0.5)
    no_denominator = 1 - (2 * math.pi * 0.5 / 0.05) * q * math.sin(2 * math.pi * 0.05)
    assert abs(no_denominator - predicted_drift_ratio(0.05, 0.5)) > 1e-3
    # the lattice slow-down is exponentially small in r: at most 4π²r·e^{−π²r}
    for r in (0.5, 1.0, 2.0):
        bound = 4 * math.pi**2 * r * math.exp(-math.pi**2 * r)
        assert np.all(np.abs(drift_ratio_closed_form(c, r) - 1) <= bound * (1 + 1e-9))


def test_pinning_boundary_is_the_half_level_set():
    cs = np.array([0.05, 0.2, 0.4])
    rs = pinning_boundary(cs)
    np.testing.assert_allclose(predicted_drift_ratio(cs, rs), 0.5, atol=1e-6)
    assert np.all(np.diff(rs) < 0)  # a faster drift needs less entropy to move
    assert math.isnan(pinning_boundary([0.6])[0])  # c > 1/2 moves a cell deterministically
    # the deterministic limit: no motion below half a cell per step, whole cells above
    assert predicted_drift_ratio(0.3, 1e-3) < 1e-10
    assert predicted_drift_ratio(0.8, 1e-3) == pytest.approx(1 / 0.8)


def test_regime_rule():
    assert classify(0.2, 0.01).regime == "pinned"
    # no Langevin run: GD-like or neither
    assert classify(0.9, 0.02).regime == "GD-like"
    assert classify(0.9, 0.3).regime == "neither"
    assert "within 2.0%" in classify(0.9, 0.02).sentence()
    assert "Pinned" in classify(0.1, 0.5).sentence()
    # references 20 % apart with 0.2 % noise: resolvable, the nearer one within tol wins
    assert classify(0.9, 0.02, 0.19, 0.2, 0.002).regime == "GD-like"
    assert classify(0.9, 0.19, 0.02, 0.2, 0.002).regime == "Langevin-like"
    assert classify(0.9, 0.3, 0.2, 0.2, 0.002).regime == "neither"
    # references 4 % apart: within tol + 2·noise = 3 % + 2 % → not resolvable
    v = classify(0.9, 0.01, 0.03, 0.04, 0.01)
    assert v.regime == "indistinguishable"
    assert "not resolvably apart" in v.sentence()
    # the same gaps with less noise resolve (4 % > 3 % + 2·0.1 %)
    assert classify(0.9, 0.01, 0.03, 0.04, 0.001).regime == "GD-like"
    # unknown noise (one sampled draw) never resolves
    assert classify(0.9, 0.01, 0.19, 0.2, math.nan).regime == "indistinguishable"
    # far from both: neither, whatever the references do
    assert classify(0.9, 0.1, 0.1, 0.01, 0.001).regime == "neither"
    assert set(REGIMES) == {"pinned", "GD-like", "Langevin-like", "indistinguishable",
                            "neither"}


def test_regime_threshold_is_tol_plus_twice_the_noise():
    tol, noise = GAP_TOL, 0.004
    edge = tol + 2 * noise
    assert classify(0.9, 0.0, edge * 0.999, edge * 0.999, noise).regime == "indistinguishable"
    assert classify(0.9, 0.0, edge * 1.001, edge * 1.001, noise).regime == "GD-like"


def test_run_verdict_reads_the_noise_from_the_series():
    t = np.linspace(0, 1, 5)
    gd = {"t": t, "loss": np.full(5, 1.0), "loss_se": np.zeros(5)}
    lang = {"t": t, "loss": np.full(5, 1.2), "loss_se": np.full(5, 0.001)}
    jko = {"t": t, "loss": np.full(5, 1.19)}
    v = run_verdict({"gd": gd, "langevin": lang, "jko": jko}, [0.9], "jko")
    assert v.regime == "Langevin-like"
    assert v.separation == pytest.approx(0.2) and v.noise == pytest.approx(0.001)
    # a sampled single-draw GD: unknown noise, no resolvable verdict
    gd_sampled = {**gd, "loss_se": np.full(5, np.nan)}
    v = run_verdict({"gd": gd_sampled, "langevin": lang, "jko": jko}, [0.9], "jko")
    assert v.regime == "indistinguishable"


def test_block_prediction_is_the_field_prediction_on_a_box_and_sees_anisotropy():
    """On a box the per-factor model is the per-coordinate one; stretching one axis of the
    grid (δ_β = 1.5 δ) lowers r_β = ε/δ_β² and so the predicted ratio."""
    from mfjko.geometry import cartesian_grid
    from mfjko.study.regime import predicted_drift_ratio_blocks, predicted_drift_ratio_field

    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3))
    tau, eps = 0.1, 0.3 * 0.25**2
    box = cartesian_grid([(-1, 1)] * 3, [9, 9, 9])  # δ = 0.25 on every axis
    blocks = box.theta_blocks()
    assert [b[1] for b in blocks] == pytest.approx([0.25] * 3)
    np.testing.assert_allclose(predicted_drift_ratio_blocks(v, blocks, tau, eps),
                               predicted_drift_ratio_field(tau * v / 0.25, eps / 0.25**2),
                               rtol=1e-12)
    stretched = cartesian_grid([(-1, 1), (-1, 1), (-1.5, 1.5)], [9, 9, 9])
    assert stretched.spacing == pytest.approx(0.25)
    assert (predicted_drift_ratio_blocks(v, stretched.theta_blocks(), tau, eps)
            < predicted_drift_ratio_blocks(v, blocks, tau, eps))


def test_theta_blocks_of_sphere_grids():
    """S¹ × β: the angle spans (cos φ, sin φ) with δ = 2π/N; S² × β: the directions' median
    nearest-neighbour distance, above their smallest one."""
    from mfjko.geometry import sphere_line_grid

    g2 = sphere_line_grid(2, 48, (-3.0, 3.0), 31)
    (s_ang, d_ang), (s_beta, d_beta) = g2.theta_blocks()
    assert (s_ang, s_beta) == (slice(0, 2), slice(2, 3))
    assert d_ang == pytest.approx(2 * math.pi / 48) and d_beta == pytest.approx(0.2)
    g3 = sphere_line_grid(3, 100, (-4.0, 4.0), 21)
    (s_dir, d_dir), (s_b, _) = g3.theta_blocks()
    assert (s_dir, s_b) == (slice(0, 3), slice(3, 4))
    assert d_dir > g3.factors[0].spacing


def test_factor_model_reduces_to_the_scalar_model_and_weights_factors_by_speed():
    from mfjko.study.regime import factor_speeds, predicted_drift_ratio_factors

    # one factor: ρ(c, r) itself
    tau, delta, V, r = 0.1, 0.2, 0.3, 0.4
    assert predicted_drift_ratio_factors([V], [delta], tau, r * delta**2) == pytest.approx(
        float(predicted_drift_ratio(tau * V / delta, r)), rel=1e-12)
    # a factor at rest does not count; a coarser factor (smaller r_k) lowers the ratio
    assert predicted_drift_ratio_factors([V, 0.0], [delta, 0.5], tau, r * delta**2) == \
        pytest.approx(predicted_drift_ratio_factors([V], [delta], tau, r * delta**2))
    fine = predicted_drift_ratio_factors([V, V], [delta, delta], tau, r * delta**2)
    coarse = predicted_drift_ratio_factors([V, V], [delta, 1.5 * delta], tau, r * delta**2)
    assert coarse < fine
    # RMS speeds per factor: ((0:2), (2:3)) of v = (3, 4, 12) for every particle
    v = np.tile([3.0, 4.0, 12.0], (5, 1))
    np.testing.assert_allclose(factor_speeds(v, ((slice(0, 2), 1.0), (slice(2, 3), 1.0))),
                               [5.0, 12.0])
