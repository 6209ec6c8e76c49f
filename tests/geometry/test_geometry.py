"""Grids over Θ: separable kernels against dense log-sum-exp and OTT-JAX, stability,
components, multi-scale copies, and the discretization of initial laws."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from ott.geometry import costs
from ott.geometry.grid import Grid
from scipy import stats
from scipy.special import logsumexp as scipy_logsumexp

import mfjko  # noqa: F401  (float64)
from mfjko import grids as G
from mfjko import parametrizations as P
from mfjko.initial import BalancedLaw, GaussianLaw
from mfjko.objective import classic_predict, predict


@jax.jit
def dense_lse(cost, u, eps):
    """Reference: log Σ_l exp(−C_kl/ε + u_l) by the broadcasted logsumexp."""
    return logsumexp(-cost / eps + u[None, :], axis=1)


@jax.jit
def ott_lse(ott_grid, u, eps):
    """OTT: eps·log Σ_l exp((f_k + g_l − C_kl)/eps) − f_k with f = 0, g = eps·u, over ε."""
    return ott_grid.apply_lse_kernel(jnp.zeros_like(u), eps * u, eps, axis=1)[0] / eps


@jax.jit
def ott_box_lse_and_kernel(axes, u, eps):
    """OTT's Grid on ``axes`` (squared Euclidean): (ott_lse, K e^u), in one program
    (built eagerly, the Grid's per-axis costs compile op by op)."""
    ott_grid = Grid(x=list(axes), epsilon=eps)
    return ott_lse(ott_grid, u, eps), ott_grid.apply_kernel(jnp.exp(u), eps, axis=0)


@jax.jit
def _locate(geom, theta):
    """geom.locate in one program (eagerly, each of its operations compiles on its own)."""
    return geom.locate(theta)


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


def random_u(n, seed=0, scale=3.0):
    # NumPy's generator: jax.random would compile a sampler for every size
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(n))


def arccos_geodesic2(s):
    """Independent squared geodesic by arccos of clipped dot products (diagonal 0)."""
    s = np.asarray(s)
    ang = np.arccos(np.clip(s @ s.T, -1.0, 1.0))
    np.fill_diagonal(ang, 0.0)
    return ang**2


# --------------------------------------------------------------------------- separable == dense


@pytest.mark.parametrize(
    "ranges,sizes",
    [([(-1.0, 1.0), (-2.0, 3.0)], [7, 5]), ([(-1.0, 1.0), (-2.0, 2.0), (0.0, 1.5)], [5, 6, 4])],
)
def test_cartesian_product_lse_matches_dense(ranges, sizes):
    g = G.cartesian_grid(ranges, sizes)
    h = g.spacing
    ref_h = min((hi - lo) / (n - 1) for (lo, hi), n in zip(ranges, sizes, strict=True))
    assert h == pytest.approx(ref_h, rel=1e-12)
    # independent reference: explicit squared Euclidean cost of the points
    pts = np.asarray(g.points)
    C = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(g.cost_matrix(), C, atol=1e-12)
    diam2 = float(C.max())
    u = random_u(g.size)
    for eps in (diam2, 1.0, h * h, 1e-2 * h * h):
        out = g.apply_lse(u, eps)
        assert rel_err(out, dense_lse(jnp.asarray(C), u, eps)) < 1e-12, eps
    # the bound operator and the scaling-domain kernel agree with the dense ones
    # the operator is a pytree: it passes into jit as an argument
    op = g.lse_operator(0.3)
    out = jax.jit(lambda op, u: op(u))(op, u)
    assert rel_err(out, dense_lse(jnp.asarray(C), u, 0.3)) < 1e-12
    v = jnp.exp(u)
    np.testing.assert_allclose(g.apply_kernel(v, 0.3), np.exp(-C / 0.3) @ v, rtol=1e-12)


def test_periodic_angle_grid_matches_dense_geodesic():
    g = G.sphere_line_grid(2, 11, (-1.0, 2.0), 5)
    pts = np.asarray(g.points)
    s, beta = pts[:, :2], pts[:, 2]
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-15)
    C = arccos_geodesic2(s) + (beta[:, None] - beta[None, :]) ** 2
    np.testing.assert_allclose(g.cost_matrix(), C, atol=1e-10)
    # a neighbour across φ = 0 is one step away, not 2π − step
    assert float(g.factors[0].cost[0, -1]) == pytest.approx((2 * math.pi / 11) ** 2, rel=1e-12)
    assert g.spacing == pytest.approx(min(2 * math.pi / 11, 0.75), rel=1e-12)
    u = random_u(g.size, 1)
    for eps in (float(C.max()), 0.1, 1e-3):
        assert rel_err(g.apply_lse(u, eps), dense_lse(jnp.asarray(C), u, eps)) < 1e-12, eps


@pytest.mark.parametrize("d", [3, 4])
def test_sphere_line_grid_matches_dense_geodesic(d):
    g = G.sphere_line_grid(d, 40, (-1.0, 1.0), 3)
    pts = np.asarray(g.points)
    s, beta = pts[:, :d], pts[:, d]
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-12)
    C = arccos_geodesic2(s) + (beta[:, None] - beta[None, :]) ** 2
    np.testing.assert_allclose(g.cost_matrix(), C, atol=1e-12)
    u = random_u(g.size, 2)
    for eps in (float(C.max()), 0.05, 1e-3):
        assert rel_err(g.apply_lse(u, eps), dense_lse(jnp.asarray(C), u, eps)) < 1e-12, eps


def test_quasi_uniform_directions_are_spread():
    # repulsion must beat raw normalized Gaussian points on the minimum separation
    n, d = 60, 4
    raw = np.random.default_rng(0).standard_normal((n, d))
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    spread = np.asarray(G.sphere_directions(n, d, seed=0, repulsion_steps=50))

    def min_sep(x):
        dist = np.linalg.norm(x[:, None] - x[None], axis=2)
        np.fill_diagonal(dist, np.inf)
        return dist.min()

    assert min_sep(spread) > 2.0 * min_sep(raw)
    fib = np.asarray(G.sphere_directions(200, 3))
    # Fibonacci points: centroid ≈ 0 and ‖s‖ = 1
    assert np.abs(fib.mean(0)).max() < 1e-2
    np.testing.assert_allclose(np.linalg.norm(fib, axis=1), 1.0, atol=1e-14)


# --------------------------------------------------------------------------- OTT-JAX


@jax.tree_util.register_pytree_node_class
class _PeriodicCost(costs.CostFn):
    """Periodic squared distance on [0, 2π) for OTT's per-axis grid costs."""

    def __call__(self, x, y):
        d = jnp.mod(jnp.abs(x - y), 2 * jnp.pi)
        d = jnp.minimum(d, 2 * jnp.pi - d)
        return jnp.sum(d * d)


def test_agrees_with_ott_grid_lse_and_kernel():
    g = G.cartesian_grid([(-1.0, 1.0), (-2.0, 2.0), (0.0, 1.0)], [5, 6, 4])
    axes = [f.points[:, 0] for f in g.factors]
    u = random_u(g.size, 3)
    for eps in (0.05, 0.7):
        ott_out, ott_kernel = ott_box_lse_and_kernel(tuple(axes), u, eps)
        assert rel_err(g.apply_lse(u, eps), ott_out) < 1e-12
        np.testing.assert_allclose(g.apply_kernel(jnp.exp(u), eps), ott_kernel, rtol=1e-12)
    # periodic angle × β line against OTT with a custom periodic per-axis cost
    s = G.sphere_line_grid(2, 9, (-1.0, 1.0), 4)
    eps = 0.2
    ott_grid = Grid(
        x=[s.factors[0].points[:, 0], s.factors[1].points[:, 0]],
        cost_fns=[_PeriodicCost(), costs.SqEuclidean()],
        epsilon=eps,
    )
    u = random_u(s.size, 4)
    assert rel_err(s.apply_lse(u, eps), ott_lse(ott_grid, u, eps)) < 1e-12


# --------------------------------------------------------------------------- stability


def test_tiny_eps_takes_exact_fallback_and_matches_dense():
    g = G.cartesian_grid([(-1.0, 1.0), (-1.0, 1.0)], [9, 8])
    h = g.spacing
    eps = 1e-2 * h * h
    C = g.cost_matrix()
    u = random_u(g.size, 5, scale=300.0)
    # plain kernel mode underflows here (off-diagonal kernel entries are exp(−100) and
    # the spread of u is ≫ 709), so a non-stabilized implementation gives −∞ or NaN
    C_np, u_np = np.asarray(C), np.asarray(u)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # NumPy: no programs
        naive = np.log(np.exp(-C_np / eps) @ np.exp(u_np - u_np.max())) + u_np.max()
    assert not np.all(np.isfinite(naive))
    out = jax.jit(lambda u: g.lse_operator(eps)(u))(u)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert rel_err(out, dense_lse(C, u, eps)) < 1e-12
    # −∞ entries (zero mass) stay exact: whole lines of −∞ give −∞, never NaN
    u_holes = u.at[: g.shape[1]].set(-jnp.inf)
    out = g.apply_lse(u_holes, eps)
    assert not bool(jnp.any(jnp.isnan(out)))
    np.testing.assert_allclose(out, dense_lse(C, u_holes, eps), rtol=1e-12)
    # large ε: the kernel is nearly flat, result ≈ logsumexp(u) − C/ε corrections
    diam2 = float(C.max())
    assert rel_err(g.apply_lse(u, diam2), dense_lse(C, u, diam2)) < 1e-12
    assert rel_err(g.apply_lse(u, 100 * diam2), dense_lse(C, u, 100 * diam2)) < 1e-12


def test_grouped_kernel_mode_is_exact_where_the_plain_one_underflows():
    """Fine grid, ε = δ², u peaked (log of a narrow bump): rows far from the peak underflow
    in the plain kernel mode; one stabilizer per group of inputs recovers them exactly,
    and a u whose far groups could dominate is sent to the exact path."""
    from mfjko.geometry import product as PR

    g = G.cartesian_grid([(-3.5, 3.5), (-3.5, 3.5)], [97, 33])
    eps = g.spacing ** 2
    x = np.asarray(g.axes[0])
    U = jnp.asarray(np.broadcast_to((-(x / 0.1) ** 2)[:, None], g.shape).copy())
    cost0 = g.factors[0].cost / eps
    kernel0 = jnp.exp(-cost0)
    plain = jnp.log(kernel0 @ jnp.exp(U - U.max(axis=0))) + U.max(axis=0)
    assert not bool(jnp.all(plain > math.log(PR.UNDERFLOW) + U.max()))  # underflows
    exact = PR._axis_lse_exact(U, cost0, 0)
    out, exact_needed = PR._axis_lse_grouped(U, kernel0, cost0, 0)
    assert not bool(exact_needed)
    assert rel_err(out, exact) < 1e-12
    np.testing.assert_allclose(PR._axis_lse(U, kernel0, cost0, 0), exact, rtol=1e-13)
    # a far group 2000 above the rest: its underflowed terms could matter, so exact
    U_far = U.at[-1].set(2000.0)
    _, exact_needed = PR._axis_lse_grouped(U_far, kernel0, cost0, 0)
    assert bool(exact_needed)
    np.testing.assert_allclose(PR._axis_lse(U_far, kernel0, cost0, 0),
                               PR._axis_lse_exact(U_far, cost0, 0), rtol=1e-13)
    u = U.reshape(-1)
    ref = dense_lse(g.cost_matrix(), u, eps)
    assert rel_err(g.apply_lse(u, eps), ref) < 1e-12
    # the batching rule takes the same stages for a batch (shared and per-member kernels)
    op = g.lse_operator(eps)
    batch = jnp.stack([u, U_far.reshape(-1)])
    ref_far = dense_lse(g.cost_matrix(), U_far.reshape(-1), eps)
    out = jax.vmap(op)(batch)
    assert rel_err(out[0], ref) < 1e-12 and rel_err(out[1], ref_far) < 1e-12
    out = jax.vmap(lambda e, u: g.lse_operator(e)(u))(jnp.array([eps, eps]), batch[:1].repeat(2, 0))
    assert rel_err(out[1], ref) < 1e-12


def test_operator_vmaps_and_rejects_bad_eps():
    g = G.cartesian_grid([(-1.0, 1.0), (-1.0, 1.0)], [4, 5])
    U = jnp.stack([random_u(g.size, k) for k in range(3)])
    out = jax.vmap(g.lse_operator(0.2))(U)
    for k in range(3):
        assert rel_err(out[k], dense_lse(g.cost_matrix(), U[k], 0.2)) < 1e-12
    with pytest.raises(ValueError, match="eps"):
        g.lse_operator(0.0)
    with pytest.raises(ValueError, match="lo < hi"):
        G.cartesian_grid([(1.0, -1.0)], [4])
    with pytest.raises(ValueError, match="sizes"):
        G.cartesian_grid([(-1.0, 1.0)], [1])
    with pytest.raises(ValueError, match="parametrization"):
        G.grid_for("nope", 2)


def test_product_at_64_cubed_builds_and_applies():
    # 262,144 points: an N×N array would be 550 GB; this must run in O(N) memory
    g = G.cartesian_grid([(-3.0, 3.0)] * 3, [64] * 3)
    assert g.size == 64**3 and g.points.shape == (64**3, 3)
    h = g.spacing
    u = random_u(g.size, 6)
    out = jax.jit(lambda u: g.lse_operator(h * h)(u))(u)
    assert out.shape == (g.size,) and bool(jnp.all(jnp.isfinite(out)))
    # spot-check rows against the explicit row of the cost (NumPy)
    pts, u_np = np.asarray(g.points), np.asarray(u)
    for k in (0, 12345, g.size - 1):
        row = np.sum((pts - pts[k]) ** 2, axis=1)
        ref = float(scipy_logsumexp(-row / (h * h) + u_np))
        assert abs(float(out[k]) - ref) < 1e-12 * max(1.0, abs(ref))


# --------------------------------------------------------------------------- components


@pytest.mark.parametrize("kind", ["signed", "pm"])
def test_components_block_diagonal(kind):
    if kind == "signed":
        g = G.signed_grid([(-1.0, 1.0), (-1.0, 1.0)], [4, 5])
        n = 20
        np.testing.assert_array_equal(g.points[:n, -1], 1.0)
        np.testing.assert_array_equal(g.points[n:, -1], -1.0)
        np.testing.assert_array_equal(g.points[:n, :-1], g.points[n:, :-1])
    else:
        g = G.pm_grid([(-1.0, 1.0), (-1.0, 1.0)], [4, 5])
        n = 20
        np.testing.assert_array_equal(g.points[:n, 2:], 0.0)
        np.testing.assert_array_equal(g.points[n:, :2], 0.0)
    assert g.size == 2 * n
    pts = np.asarray(g.points)
    C = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    C[:n, n:] = np.inf
    C[n:, :n] = np.inf
    np.testing.assert_allclose(np.asarray(g.cost_matrix()), C, atol=1e-12)
    u = random_u(g.size, 7)
    for eps in (0.05, 1.0):
        assert rel_err(g.apply_lse(u, eps), dense_lse(jnp.asarray(C), u, eps)) < 1e-12
    # zero cross-component coupling: mass only in block 0 reaches nothing in block 1
    u0 = u.at[n:].set(-jnp.inf)
    out = g.apply_lse(u0, 100.0)
    assert bool(jnp.all(jnp.isneginf(out[n:]))) and bool(jnp.all(jnp.isfinite(out[:n])))
    v0 = jnp.exp(u0)
    kv = g.apply_kernel(v0, 100.0)
    np.testing.assert_array_equal(kv[n:], 0.0)
    assert bool(jnp.all(kv[:n] > 0))


# --------------------------------------------------------------------------- multiscale


def test_multiscale_exact_and_separable_costs():
    base = G.cartesian_grid([(-1.0, 1.0), (-1.0, 1.0)], [4, 3])
    scales = [0.5, 1.0, 4.0]
    exact = G.multiscale(base, scales)
    P0 = np.asarray(base.points)
    pts = np.concatenate([s * P0 for s in scales])
    np.testing.assert_allclose(exact.points, pts, atol=1e-15)
    C = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    np.testing.assert_allclose(exact.cost_matrix(), C, atol=1e-12)
    u = random_u(exact.size, 8)
    assert rel_err(exact.apply_lse(u, 0.2), dense_lse(jnp.asarray(C), u, 0.2)) < 1e-12

    sep = G.multiscale(base, scales, separable=True)
    # point (k, a) = s_a θ_k (base index major), cost C_base + ρ²(s_a − s_b)²
    k_idx, a_idx = np.divmod(np.arange(sep.size), len(scales))
    s = np.asarray(scales)
    np.testing.assert_allclose(sep.points, s[a_idx, None] * P0[k_idx], atol=1e-15)
    rho2 = np.mean((P0**2).sum(1))
    Cb = ((P0[:, None] - P0[None]) ** 2).sum(-1)
    Csep = Cb[k_idx[:, None], k_idx[None]] + rho2 * (s[a_idx, None] - s[None, a_idx]) ** 2
    np.testing.assert_allclose(sep.cost_matrix(), Csep, atol=1e-12)
    u = random_u(sep.size, 9)
    assert rel_err(sep.apply_lse(u, 0.2), dense_lse(jnp.asarray(Csep), u, 0.2)) < 1e-12

    # sphere: only β is scaled, directions stay unit, geodesic cost kept
    sph = G.multiscale(G.sphere_line_grid(2, 6, (-1.0, 1.0), 3), [1.0, 10.0], which="last")
    pts = np.asarray(sph.points)
    np.testing.assert_allclose(np.linalg.norm(pts[:, :2], axis=1), 1.0, atol=1e-14)
    Cs = arccos_geodesic2(pts[:, :2]) + (pts[:, 2, None] - pts[None, :, 2]) ** 2
    np.testing.assert_allclose(sph.cost_matrix(), Cs, atol=1e-10)
    with pytest.raises(ValueError, match="positive"):
        G.multiscale(base, [1.0, -2.0])


def test_chunked_point_set_matches_dense():
    pts = jnp.asarray(np.random.default_rng(10).standard_normal((300, 3)))
    dense = G.point_set(pts)
    chunked = G.point_set(pts, dense_max=100, block_size=64)
    assert isinstance(dense, G.DenseGeometry) and isinstance(chunked, G.ChunkedGeometry)
    C = ((np.asarray(pts)[:, None] - np.asarray(pts)[None]) ** 2).sum(-1)
    assert chunked.spacing == pytest.approx(math.sqrt(C[~np.eye(300, dtype=bool)].min()), rel=1e-10)
    u = random_u(300, 11)
    for eps in (1e-3, 0.5):
        assert rel_err(chunked.apply_lse(u, eps), dense_lse(jnp.asarray(C), u, eps)) < 1e-12
        assert rel_err(dense.apply_lse(u, eps), dense_lse(jnp.asarray(C), u, eps)) < 1e-12
    v = jnp.exp(u)
    np.testing.assert_allclose(chunked.apply_kernel(v, 0.5), np.exp(-C / 0.5) @ v, rtol=1e-12)
    q = jnp.asarray(np.random.default_rng(12).standard_normal((50, 3)))
    i_c, _ = _locate(chunked, q)
    ref = np.argmin(((np.asarray(q)[:, None] - np.asarray(pts)[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(i_c, ref)


# --------------------------------------------------------------------------- discretize


def test_discretize_gaussian_box_tail_and_histogram():
    scale = 1.0
    ranges, sizes = [(-2.0, 2.0), (-1.5, 2.5), (-2.0, 1.0)], [9, 9, 7]
    g = G.cartesian_grid(ranges, sizes)
    law = GaussianLaw(scale)
    p0, out = G.discretize(law, "neuron", g, jax.random.key(0))
    assert float(jnp.sum(p0)) == pytest.approx(1.0, abs=1e-12) and bool(jnp.all(p0 >= 0))
    # analytic tail of the cell box [lo − h/2, hi + h/2]^D (scipy's normal CDF)
    inside = 1.0
    for (lo, hi), n in zip(ranges, sizes, strict=True):
        h = (hi - lo) / (n - 1)
        inside *= stats.norm.cdf(hi + h / 2, scale=scale) - stats.norm.cdf(lo - h / 2, scale=scale)
    assert out == pytest.approx(1.0 - inside, rel=1e-10)
    assert 0.05 < out < 0.5  # a meaningful tail, not 0
    # the Monte-Carlo histogram agrees within its sampling error
    n_mc = 200_000
    p_mc, out_mc = G.discretize(
        law, "neuron", g, jax.random.key(1), n_samples=n_mc, method="histogram"
    )
    assert abs(out_mc - out) < 4 * math.sqrt(out * (1 - out) / n_mc)
    # L1 distance at the level of pure sampling noise: E|p̂_k − p_k| ≈ √(2p_k(1−p_k)/(πn))
    noise_l1 = float(np.sum(np.sqrt(2 * np.asarray(p0) * (1 - np.asarray(p0)) / (np.pi * n_mc))))
    assert float(jnp.sum(jnp.abs(p_mc - p0))) < 1.2 * noise_l1
    # essentially all mass outside → clear error
    far = G.cartesian_grid([(20.0, 21.0)] * 3, sizes)  # the shapes above: no new program
    with pytest.raises(ValueError, match="outside"):
        G.discretize(law, "neuron", far, jax.random.key(0))


def _truncated_moments(a, b, s):
    al, be = a / s, b / s
    Z = stats.norm.cdf(be) - stats.norm.cdf(al)
    mean = s * (stats.norm.pdf(al) - stats.norm.pdf(be)) / Z
    var = s**2 * (
        1
        + (al * stats.norm.pdf(al) - be * stats.norm.pdf(be)) / Z
        - ((stats.norm.pdf(al) - stats.norm.pdf(be)) / Z) ** 2
    )
    return mean, var


def test_discretized_moments_converge_at_order_two():
    # per axis [lo, hi] with n points covers [lo − h/2, hi + h/2]; compare the grid's mean
    # and variance with the truncated normal on that box (closed form). Cell masses at cell
    # centres over-count the variance by Sheppard's h²/12, and the mean error is O(h²).
    s, lo, hi = 0.8, -4.0, 4.5  # wide box: Sheppard needs negligible density at the edges
    errs_var, hs = [], []
    for n in (6, 11, 21, 41):
        g = G.cartesian_grid([(lo, hi), (lo, hi)], [n, n])
        p0, _ = G.discretize(GaussianLaw(s), "neuron", g, jax.random.key(0))
        x = np.asarray(g.points[:, 0])
        p = np.asarray(p0)
        h = (hi - lo) / (n - 1)
        m_ref, v_ref = _truncated_moments(lo - h / 2, hi + h / 2, s)
        m = p @ x
        assert abs(m - m_ref) < 3e-3 * h * h, (n, m - m_ref)
        errs_var.append(p @ (x - m) ** 2 - v_ref)
        hs.append(h)
        if n >= 11:
            assert abs(errs_var[-1] - h * h / 12) < 1e-3 * h * h / 12, (n, errs_var[-1])
    slope_var = np.polyfit(np.log(hs), np.log(errs_var), 1)[0]
    assert 1.9 < slope_var < 2.1, (slope_var, errs_var)


PRED_SCALE = 0.6
PRED_X = jnp.array([[1.0, 1.0], [-0.5, 1.0], [2.0, 1.0], [0.3, 1.0]])


@pytest.fixture(scope="module")
def law_predictor():
    """E[α σ(wᵀx)] and E[|α| σ(wᵀx)] on PRED_X by Monte Carlo with 200k classic neurons
    (relative standard error ≈ 2e-3, against the tests' 2e-2; discretize's sample size:
    one sampler program for both)."""
    W, a = GaussianLaw(PRED_SCALE).sample_classic(jax.random.key(42), 200_000, 2)
    return classic_predict(W, a, PRED_X) / W.shape[0], classic_predict(W, jnp.abs(a), PRED_X) / (
        W.shape[0]
    )


@pytest.mark.parametrize("name", ["signed", "pm", "sphere"])
def test_discretize_predictor_matches_particles(name, law_predictor):
    # the grid measure's predictor must match the law's mean-field predictor
    # E[α σ(wᵀx)] (Monte Carlo with many particles), up to grid resolution
    d, scale, X = 2, PRED_SCALE, PRED_X
    law = GaussianLaw(scale)
    f_ref, f_abs = law_predictor  # f_abs: scale of the two cancelling parts
    if name == "sphere":
        geom = G.grid_for(name, d, size=48, radius=2.5, n_beta=41)
    else:
        geom = G.grid_for(name, d, size=31, radius=2.5)
    p0, out = G.discretize(law, name, geom, jax.random.key(3), n_samples=200_000)
    assert out < 1e-3
    f_grid = jax.jit(predict, static_argnums=0)(P.get(name), geom.points, p0, X)
    err = np.max(np.abs(np.asarray(f_grid - f_ref)) / np.asarray(f_abs))
    assert err < 0.02, (name, err)  # measured ≈ 0.003 (grid + Monte-Carlo)
    if name == "signed":
        # unit |α| on the grid: total mass E|α| = s √(2/π)
        assert float(jnp.sum(p0)) == pytest.approx(scale * math.sqrt(2 / math.pi), rel=1e-2)
    else:
        assert float(jnp.sum(p0)) == pytest.approx(1.0, abs=1e-12)


def test_discretize_sphere_tail_and_locate():
    # β = ‖w‖α for the Gaussian law; fraction of |β| beyond the β box vs direct samples
    law = GaussianLaw(1.0)
    geom = G.sphere_line_grid(2, 16, (-1.0, 1.0), 9)
    # the default 200,000 samples, as the predictor tests above: their programs serve
    _, out = G.discretize(law, "sphere", geom, jax.random.key(5))
    W, a = law.sample_classic(jax.random.key(6), 200_000, 2)  # standard error 1e-3
    beta = np.linalg.norm(np.asarray(W), axis=1) * np.asarray(a)
    ref = float(np.mean(np.abs(beta) > 1.0 + 0.125))
    assert abs(out - ref) < 0.01
    # locate: nearest angle (periodic) and β cell
    theta = jnp.array([[math.cos(6.2), math.sin(6.2), 0.3], [0.0, -1.0, -1.2]])
    idx, inside = _locate(geom, theta)
    np.testing.assert_array_equal(idx, [0 * 9 + 5, 12 * 9 + 0])
    np.testing.assert_array_equal(inside, [True, False])
    # balanced law is singular in (w, α): histogram path, mass still conserved
    p0, _ = G.discretize(BalancedLaw(0.5), "sphere", geom, jax.random.key(7))
    assert float(jnp.sum(p0)) == pytest.approx(1.0, abs=1e-12)


def test_grid_for_dispatch_and_multiscale_components():
    for name, D in (("neuron", 3), ("signed", 3), ("pm", 4), ("sphere", 3)):
        geom = G.grid_for(name, 2, size=5, radius=1.0)
        assert geom.points.shape[1] == D == P.get(name).dim(2)
    # signed with scales: each component scaled on w only, components still apart
    g = G.grid_for("signed", 2, size=3, radius=1.0, scales=[1.0, 3.0])
    assert isinstance(g, G.ComponentGeometry) and g.size == 2 * 2 * 9
    pts = np.asarray(g.points)
    np.testing.assert_array_equal(np.abs(pts[:, -1]), 1.0)
    assert np.isclose(np.abs(pts[:, :2]).max(), 3.0)
    C = np.asarray(g.cost_matrix())
    assert np.isinf(C[:18, 18:]).all() and np.isfinite(C[:18, :18]).all()
    # sphere with scales: only β scaled, the direction factor untouched
    s = G.grid_for("sphere", 2, size=4, radius=1.0, scales=[1.0, 10.0], separable_scales=True)
    assert isinstance(s, G.ProductGeometry) and s.shape == (4, 4, 2)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(s.points)[:, :2], axis=1), 1.0)
    assert np.isclose(np.abs(np.asarray(s.points)[:, 2]).max(), 10.0)
    with pytest.raises(ValueError, match="cells"):
        G.discretize(GaussianLaw(1.0), "sphere", s, jax.random.key(0), method="cells")


def test_boundary_mask_marks_box_faces_only():
    # 3-D box: the boundary is every point with some coordinate at lo or hi.
    geom = G.cartesian_grid([(-1.0, 1.0), (0.0, 2.0), (-3.0, 3.0)], [4, 5, 6])
    pts = np.asarray(geom.points)
    expected = np.any(np.isclose(pts, [-1.0, 0.0, -3.0]) | np.isclose(pts, [1.0, 2.0, 3.0]), 1)
    mask = G.boundary_mask(geom)
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == 4 * 5 * 6 - 2 * 3 * 4
    # sphere × line (d = 2): the angle is periodic, only the β ends are boundary.
    sl = G.sphere_line_grid(2, 12, (-2.0, 2.0), 7)
    beta = np.asarray(sl.points)[:, -1]
    np.testing.assert_array_equal(G.boundary_mask(sl), np.isclose(np.abs(beta), 2.0))
    # signed: each sign component has its own box faces.
    sg = G.signed_grid([(-1.0, 1.0), (-1.0, 1.0)], [5, 5])
    assert G.boundary_mask(sg).sum() == 2 * (25 - 9)
    # a point set has no box
    assert not G.boundary_mask(G.point_set(pts[:10])).any()
