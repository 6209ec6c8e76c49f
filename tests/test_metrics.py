"""Metrics against independent references: the Sinkhorn divergence against POT (an
independent Sinkhorn, entropic cost evaluated from its plan), losses against NumPy."""

import numpy as np
import ot
import pytest
from scipy.special import logsumexp

import mfjko  # noqa: F401  (float64)
from mfjko import metrics, parametrizations


def _symmetric_start(M, a, eps, max_iter=2000):
    """log u = log v of POT's scalings for OT_ε(μ, μ): a warm start only.

    Plain alternating Sinkhorn converges slowly on a self-term: from u = 1 POT stopped at
    its 20,000-iteration cap (marginal error 3e-7, values up to 7e-8 off). The averaged
    symmetric update f ← ½(f + T(f)), T(f)_i = −ε log Σ_j a_j e^{(f_j − M_ij)/ε}, settles
    within 7–44 iterations on these measures; POT iterates from there until its own
    marginal criterion (1e-12) holds, so the value is still POT's.
    """
    log_a, f = np.log(a), np.zeros(len(a))
    for _ in range(max_iter):
        f, f_old = 0.5 * (f - eps * logsumexp(log_a[None, :] + (f[None, :] - M) / eps, axis=1)), f
        if np.max(np.abs(f - f_old)) <= 1e-15 * eps:
            break
    log_u = log_a + f / eps
    return log_u, log_u


def _ot_eps_pot(x, a, y, b, eps, cost):
    """OT_ε = ⟨C, π⟩ + ε KL(π | a⊗b) with π from POT's Sinkhorn."""
    M = cost(x, y)
    start = _symmetric_start(M, a, eps) if x is y and a is b else None
    P = ot.sinkhorn(a, b, M, eps, stopThr=1e-12, numItermax=20_000, warmstart=start)
    ab = np.outer(a, b)
    pos = P > 0
    return float((P * M).sum() + eps * (P[pos] * np.log(P[pos] / ab[pos])).sum())


def _divergence_pot(x, a, y, b, eps, cost):
    return (_ot_eps_pot(x, a, y, b, eps, cost) - 0.5 * _ot_eps_pot(x, a, x, a, eps, cost)
            - 0.5 * _ot_eps_pot(y, b, y, b, eps, cost))


def _sqeuclid(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def _sphere_line(x, y):
    cos = np.clip(x[:, :-1] @ y[:, :-1].T, -1, 1)
    return np.arccos(cos) ** 2 + (x[:, -1:] - y[None, :, -1]) ** 2


def _random_measures(rng, k, l, D, sphere=False):
    x, y = rng.normal(size=(k, D)), rng.normal(size=(l, D)) + 0.3
    if sphere:
        x[:, :-1] /= np.linalg.norm(x[:, :-1], axis=1, keepdims=True)
        y[:, :-1] /= np.linalg.norm(y[:, :-1], axis=1, keepdims=True)
    a, b = rng.random(k) + 0.1, rng.random(l) + 0.1
    return x, a / a.sum(), y, b / b.sum()


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_sinkhorn_divergence_matches_pot_sqeuclidean(eps):
    rng = np.random.default_rng(1)
    errs = []
    for k, l in [(7, 11), (15, 6)]:
        x, a, y, b = _random_measures(rng, k, l, 3)
        ours = metrics.sinkhorn_divergence(x, a, y, b, eps, "sqeuclidean", tol=1e-12)
        ref = _divergence_pot(x, a, y, b, eps, _sqeuclid)
        errs.append(abs(ours - ref) / ref)
    print(f"eps={eps}: relative errors vs POT {errs}")
    assert max(errs) < 1e-7


def test_sinkhorn_divergence_matches_pot_sphere_line():
    rng = np.random.default_rng(2)
    x, a, y, b = _random_measures(rng, 9, 12, 3, sphere=True)
    ours = metrics.sinkhorn_divergence(x, a, y, b, 0.2, "sphere_line", tol=1e-12)
    ref = _divergence_pot(x, a, y, b, 0.2, _sphere_line)
    assert abs(ours - ref) <= 1e-7 * ref
    # the geodesic cost differs from the chordal one: a wrong cost would not match
    chordal = _divergence_pot(x, a, y, b, 0.2, _sqeuclid)
    assert abs(chordal - ref) > 1e-3 * ref


def test_sinkhorn_divergence_properties():
    rng = np.random.default_rng(3)
    x, a, y, b = _random_measures(rng, 10, 8, 3)  # the shapes above: their programs serve
    assert metrics.sinkhorn_divergence(x, a, x, a, 0.3) <= 1e-10
    d_xy = metrics.sinkhorn_divergence(x, a, y, b, 0.3, tol=1e-12)
    d_yx = metrics.sinkhorn_divergence(y, b, x, a, 0.3, tol=1e-12)
    assert d_xy > 1e-3
    assert abs(d_xy - d_yx) <= 1e-9 * d_xy
    # a translation by δ of a measure: S_ε → |δ|² as ε → 0; S_ε ≤ |δ|² always
    delta = np.array([0.5, 0.0, 0.0])
    d_shift = metrics.sinkhorn_divergence(x, a, x + delta, a, 0.01, tol=1e-12)
    assert 0.2 < d_shift <= 0.25 + 1e-9


def test_zero_weight_points_do_not_change_the_divergence():
    rng = np.random.default_rng(4)
    x, a, y, b = _random_measures(rng, 6, 5, 3)
    base = metrics.sinkhorn_divergence(x, a, y, b, 0.5, tol=1e-12)
    x2 = np.concatenate([x, rng.normal(size=(3, 3)) * 5])
    a2 = np.concatenate([a, np.zeros(3)])
    padded = metrics.sinkhorn_divergence(x2, a2, y, b, 0.5, tol=1e-12)
    assert abs(padded - base) <= 1e-9 * base


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"a": np.full(4, 0.2)}, "sum to 1"),
        ({"a": np.array([0.5, 0.5, -0.5, 0.5])}, "nonnegative"),
        ({"eps": 0.0}, "eps must be positive"),
        ({"cost": "manhattan"}, "unknown cost"),
        ({"x": np.full((4, 2), np.nan)}, "NaN"),
    ],
)
def test_sinkhorn_divergence_rejects_bad_input(kwargs, match):
    args = {"x": np.zeros((4, 2)), "a": np.full(4, 0.25), "y": np.ones((3, 2)),
            "b": np.full(3, 1 / 3), "eps": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        metrics.sinkhorn_divergence(**args)


def test_compress_measure_keeps_heavy_points_and_moments():
    w = np.array([0.5, 0.3, 0.15, 0.05])
    pts = np.arange(8.0).reshape(4, 2)
    kept_pts, kept_w, tv = metrics.compress_measure(pts, w, max_points=2)
    np.testing.assert_array_equal(kept_pts, pts[:2])
    np.testing.assert_allclose(kept_w, [0.5, 0.5])
    assert tv == pytest.approx(0.2)  # ½(|0.3 − 0.5| + 0.15 + 0.05)
    same_pts, same_w, zero = metrics.compress_measure(pts, w, max_points=10)
    np.testing.assert_allclose(same_w, w)
    assert zero == 0.0
    # a fine 1-D grid of N(0.3, 0.5²) compressed 20x: mean and variance kept to ~1/M
    grid = np.linspace(-3, 3, 20_001)[:, None]
    p = np.exp(-0.5 * ((grid[:, 0] - 0.3) / 0.5) ** 2)
    p /= p.sum()
    c_pts, c_w, _ = metrics.compress_measure(grid, p, max_points=1000)
    assert len(c_w) <= 1000 and c_w.sum() == pytest.approx(1.0)
    mean = c_w @ c_pts[:, 0]
    var = c_w @ (c_pts[:, 0] - mean) ** 2
    assert abs(mean - 0.3) < 1e-3 and abs(var - 0.25) < 1e-3


def test_pred_gap_and_losses_match_numpy():
    rng = np.random.default_rng(5)
    assert metrics.pred_gap([1.0, 2.0, 3.0], [1.0, 0.0, 3.0]) == pytest.approx(np.sqrt(4 / 3))
    X = np.concatenate([rng.normal(size=(7, 1)), np.ones((7, 1))], axis=1)
    y = rng.normal(size=7)
    Xt, yt = X[:3] * 2, y[:3]
    th = rng.normal(size=(5, 3))
    w = rng.random(5)
    w /= w.sum()
    lam = 0.3
    res = metrics.measure_losses(parametrizations.get("neuron"), th, w, X, y, Xt, yt, lam)
    f = np.maximum(X @ th[:, :2].T, 0) @ (w * th[:, 2])
    ft = np.maximum(Xt @ th[:, :2].T, 0) @ (w * th[:, 2])
    data = 0.5 * np.mean((f - y) ** 2)
    assert res["data_loss"] == pytest.approx(data, rel=1e-13)
    assert res["test_loss"] == pytest.approx(0.5 * np.mean((ft - yt) ** 2), rel=1e-13)
    assert res["loss"] == pytest.approx(data + 0.5 * lam * w @ (th**2).sum(1), rel=1e-13)
    np.testing.assert_allclose(res["pred_train"], f, rtol=1e-13)


def test_grid_divergence_equals_point_cloud_divergence():
    """The uncompressed grid divergence (OTT Grid self-term, pruned cross term) equals the
    plain PointCloud divergence on the same measures; an anisotropic grid (each axis its
    own range) catches a wrong axis order, weights spanning 1e-20..1 exercise the pruning.
    A 9³ grid and 40 points: the shapes of tests/test_metrics_cuts.py, whose programs
    serve both files (the reversed axes too)."""
    axes = [np.linspace(-1.0, 1.0, 9), np.linspace(-0.5, 1.5, 9), np.linspace(0.0, 2.0, 9)]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.reshape(-1) for m in mesh], 1)
    rng = np.random.default_rng(3)
    p = np.exp(-((pts - [0.2, 0.4, 0.9]) ** 2).sum(1) / 0.3) + 1e-20
    p[rng.random(len(p)) < 0.2] *= 0.1
    p /= p.sum()
    y = rng.normal(size=(40, 3)) * 0.5 + [0.0, 0.5, 1.0]
    b = np.full(40, 1 / 40)
    ref = metrics.sinkhorn_divergence(pts, p, y, b, 0.1, tol=1e-10)
    val, pruned = metrics.grid_sinkhorn_divergence(axes, p, y, b, 0.1, tol=1e-10)
    assert ref > 1e-3 and pruned < 1e-12
    assert val == pytest.approx(ref, rel=1e-6)
    # a wrong axis order gives another measure, hence another value
    swapped, _ = metrics.grid_sinkhorn_divergence(axes[::-1], p, y[:, ::-1], b, 0.1)
    assert abs(swapped - ref) > 1e-3
