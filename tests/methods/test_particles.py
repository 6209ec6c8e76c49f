"""Particle dynamics against independent references: autodiff GD on G, hand-derived
classic gradients, scipy ODE / optimization solvers, the balancedness conservation law,
measured convergence orders, and the mean-field m-invariance."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

from mfjko import data
from mfjko import objective as obj
from mfjko import parametrizations as PA
from mfjko import particles as P
from mfjko.initial import GaussianLaw, sample_particles

DS = data.regression_1d(n_train=20, seed=0)
NEURON = PA.get("neuron")
LAM = 0.5
T_END = 1.0
HS = [0.04, 0.02, 0.01, 0.005]


def _theta0(name="neuron", m=6, seed=1, scale=1.0):
    return sample_particles(GaussianLaw(scale), PA.get(name), jax.random.PRNGKey(seed), m, DS.d)


def _slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.fixture(scope="module")
def flow_ref():
    """Reference gradient flow of 6 `neuron` particles, λ = 0.5, records t = 0, ¼, ½, ¾, 1."""
    return P.gradient_flow(NEURON, _theta0(), DS.X, DS.y, LAM, T_END, n_records=5)


# --------------------------------------------------------------------------- explicit GD


@pytest.mark.parametrize("name", ["neuron", "signed", "pm", "sphere"])
def test_gd_is_gd_on_G_with_lr_m_h(name):
    """θ ← θ − lr ∇G(θ) with lr = m·h, ∇G by jax.grad of G as a function of all particles
    (sphere: Riemannian gradient, then retraction), 7 steps, equals gradient_descent."""
    param = PA.get(name)
    m, h, steps = 6, 0.03, 7
    theta = _theta0(name, m=m, seed=2)
    traj = P.gradient_descent(param, theta, DS.X, DS.y, 0.1, h, steps * h, record_every=1)
    grad_G = jax.jit(jax.grad(lambda th: obj.particle_objective(param, th, DS.X, DS.y, 0.1)))
    th = theta
    for k in range(steps):
        th = param.project(th - m * h * param.tangent(th, grad_G(th)))
        np.testing.assert_allclose(traj.support[k + 1], np.asarray(th), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(traj.t, h * np.arange(steps + 1), rtol=1e-14)
    assert traj.weights.shape == (m,) and np.allclose(traj.weights, 1 / m)
    assert traj.diagnostics["objective"][-1] < traj.diagnostics["objective"][0]
    if param.on_sphere:
        np.testing.assert_allclose(np.linalg.norm(traj.support[:, :, :-1], axis=2), 1.0,
                                   atol=1e-14)


def test_classic_gd_matches_hand_derived_gradient():
    """Seed's GD on L(W, α): ∂L/∂α_i = 2 Σ_j r_j σ(w_i·x_j) + 2λα_i,
    ∂L/∂w_i = 2 Σ_j r_j α_i 1[w_i·x_j > 0] x_j + 2λ w_i, with r = h(X) − y."""
    rng = np.random.default_rng(0)
    W, a = rng.standard_normal((4, 2)), rng.standard_normal(4)
    lam, lr, steps = 0.05, 2e-3, 30
    traj = P.classic_gd(W, a, DS.X, DS.y, lam, lr, steps, record_every=10)
    X, y = DS.X, DS.y
    losses = []
    for k in range(steps + 1):
        pre = X @ W.T
        r = np.maximum(pre, 0) @ a - y
        losses.append(np.sum(r**2) + lam * (np.sum(W**2) + np.sum(a**2)))
        if k == steps:
            break
        ga = 2 * np.maximum(pre, 0).T @ r + 2 * lam * a
        gW = 2 * ((pre > 0) * r[:, None]).T @ X * a[:, None] + 2 * lam * W
        W, a = W - lr * gW, a - lr * ga
    np.testing.assert_allclose(traj.support[-1], np.column_stack([W, a]), rtol=1e-12)
    np.testing.assert_allclose(traj.t, [0, 10 * lr, 20 * lr, 30 * lr], rtol=1e-14)
    np.testing.assert_allclose(traj.diagnostics["classic_loss"], losses[::10], rtol=1e-12)
    assert traj.param == "neuron"


def test_record_schedule_and_trajectory_schema():
    theta = _theta0()
    traj = P.gradient_descent(NEURON, theta, DS.X, DS.y, LAM, 0.1, 0.7, record_every=3)
    # 7 steps recorded every 3: after 0, 3, 6 steps and at the end (7 steps)
    np.testing.assert_allclose(traj.t, [0.0, 0.3, 0.6, 0.7], atol=1e-15)
    assert traj.support.shape == (4, 6, 3) and traj.method == "gd"
    assert len(P.gradient_descent(NEURON, theta, DS.X, DS.y, LAM, 0.1, 0.0)) == 1
    # resumed run: times continue from t0
    tr2 = P.gradient_descent(NEURON, theta, DS.X, DS.y, LAM, 0.1, 0.2, t0=0.7)
    np.testing.assert_allclose(tr2.t, [0.7, 0.8, 0.9], atol=1e-15)


# ------------------------------------------------------------------------ gradient flow


def test_gradient_flow_matches_scipy_dop853():
    """Tight diffrax solve vs scipy's DOP853 at rtol = atol = 1e-12 (independent solver)."""
    theta = _theta0(seed=4)
    f = jax.jit(lambda th: P.particle_velocity(NEURON, th, DS.X, DS.y, 0.2))
    sol = solve_ivp(lambda t, z: np.asarray(f(jnp.asarray(z.reshape(6, 3)))).ravel(),
                    (0.0, 0.5), np.asarray(theta).ravel(), method="DOP853",
                    rtol=1e-12, atol=1e-12, t_eval=[0.25, 0.5])
    traj = P.gradient_flow(NEURON, theta, DS.X, DS.y, 0.2, 0.5, n_records=3)
    err = np.abs(traj.support[1:].reshape(2, -1) - sol.y.T).max()
    assert err < 1e-8, err
    assert traj.diagnostics["solver_steps"][1] > 0
    np.testing.assert_allclose(traj.t, [0.0, 0.25, 0.5])


def test_gradient_flow_record_times_and_errors():
    theta = _theta0(seed=4)
    tr = P.gradient_flow(NEURON, theta, DS.X, DS.y, 0.2, 0.5, record_times=[0.1, 0.3])
    np.testing.assert_allclose(tr.t, [0.0, 0.1, 0.3, 0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        P.gradient_flow(NEURON, theta, DS.X, DS.y, 0.2, 0.5, record_times=[0.3, 0.1])
    with pytest.raises(ValueError, match="lie in"):
        P.gradient_flow(NEURON, theta, DS.X, DS.y, 0.2, 0.5, record_times=[0.1, 0.9])
    with pytest.raises(RuntimeError, match="ODE solver failed"):
        P.gradient_flow(NEURON, theta, DS.X, DS.y, 0.2, 0.5, n_records=2, max_steps=2)


def test_balancedness_law_along_gradient_flow(flow_ref):
    """1-homogeneity of σ (σ'(z) z = σ(z)) gives d/dt (α_i² − ‖w_i‖²) = −2λ (α_i² − ‖w_i‖²)."""
    S = flow_ref.support
    delta = S[:, :, -1] ** 2 - np.sum(S[:, :, :-1] ** 2, axis=2)
    pred = delta[0][None, :] * np.exp(-2 * LAM * flow_ref.t)[:, None]
    rel = np.abs(delta - pred).max() / np.abs(delta[0]).max()
    print(f"\nbalancedness law along the flow: max relative error {rel:.2e}")
    assert rel < 1e-6


def test_gd_and_implicit_converge_to_flow_with_order_one(flow_ref):
    """max |θ_h(1) − θ(1)| for h = 0.04 … 0.005: log-log slopes of explicit GD, implicit
    steps, and GD's deviation from the balancedness law, all ≈ 1."""
    theta = _theta0()
    ref = flow_ref.support[-1]
    d0 = flow_ref.support[0, :, -1] ** 2 - np.sum(flow_ref.support[0, :, :-1] ** 2, axis=1)
    e_gd, e_imp, e_bal = [], [], []
    for h in HS:
        gd = P.gradient_descent(NEURON, theta, DS.X, DS.y, LAM, h, T_END, record_every=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every inner solve must meet its tolerance
            im = P.implicit_steps(NEURON, theta, DS.X, DS.y, LAM, h, T_END, record_every=1000)
        assert im.diagnostics["inner_residual"].max() <= 1e-10
        e_gd.append(np.abs(gd.support[-1] - ref).max())
        e_imp.append(np.abs(im.support[-1] - ref).max())
        dT = gd.support[-1, :, -1] ** 2 - np.sum(gd.support[-1, :, :-1] ** 2, axis=1)
        e_bal.append(np.abs(dT - d0 * np.exp(-2 * LAM * T_END)).max())
    s_gd, s_imp, s_bal = _slope(HS, e_gd), _slope(HS, e_imp), _slope(HS, e_bal)
    print(f"\nerrors GD {e_gd}\nerrors implicit {e_imp}\nbalancedness deviation {e_bal}")
    print(f"slopes: GD {s_gd:.4f}, implicit {s_imp:.4f}, balancedness {s_bal:.4f}")
    for s in (s_gd, s_imp, s_bal):
        assert 0.8 <= s <= 1.2
    # the two first-order schemes err on opposite sides of the flow, at similar size
    assert 0.5 < e_imp[-1] / e_gd[-1] < 2.0


# ------------------------------------------------------------------------ implicit steps


def _scipy_prox(param, theta_k, h, lam, to_theta, z0):
    """argmin_z G(θ(z)) + ‖θ(z) − θ_k‖²/(2 m h) by scipy BFGS (autodiff gradients)."""
    m = theta_k.shape[0]

    def f(z):
        th = to_theta(z)
        return obj.particle_objective(param, th, DS.X, DS.y, lam) + jnp.sum(
            (th - theta_k) ** 2) / (2 * m * h)

    vg = jax.jit(jax.value_and_grad(f))
    res = minimize(lambda z: tuple(np.asarray(v) for v in vg(jnp.asarray(z))), z0, jac=True,
                   method="BFGS", options=dict(gtol=1e-13, maxiter=10_000))
    return np.asarray(to_theta(jnp.asarray(res.x)))


@pytest.mark.parametrize("name", ["neuron", "sphere"])
def test_implicit_step_is_the_proximal_point(name):
    """One implicit step equals the minimizer found by scipy BFGS; sphere: s = (cos φ, sin φ)
    with the angles φ as unknowns (d = 2), so the sphere constraint is exact."""
    param = PA.get(name)
    m, h, lam = 6, 0.05, 0.3
    theta = _theta0(name, m=m, seed=6)
    step = P.implicit_steps(param, theta, DS.X, DS.y, lam, h, h)
    if name == "neuron":
        to_theta = lambda z: z.reshape(m, 3)
        z0 = np.asarray(theta).ravel()
    else:
        to_theta = lambda z: jnp.column_stack([jnp.cos(z[:m]), jnp.sin(z[:m]), z[m:]])
        z0 = np.concatenate([np.arctan2(theta[:, 1], theta[:, 0]), theta[:, 2]])
    ref = _scipy_prox(param, theta, h, lam, to_theta, z0)
    np.testing.assert_allclose(step.support[-1], ref, atol=1e-7)
    assert step.diagnostics["converged"][-1] == 1.0
    assert step.diagnostics["inner_residual"][-1] <= 1e-10
    if name == "neuron":  # backward Euler: θ₁ = θ₀ + h v(θ₁)
        th1 = jnp.asarray(step.support[-1])
        v1 = P.particle_velocity(param, th1, DS.X, DS.y, lam)
        np.testing.assert_allclose(step.support[-1], np.asarray(theta + h * v1), atol=1e-11)


def test_implicit_step_sticks_on_a_relu_kink_closed_form():
    """One neuron, one data point x = 1, y = −5, θ_k = (w, α) = (0.01, 1), h = 0.1: the
    data term pushes w down (r α ≈ 5 > w_k/h = 0.1) and nothing pushes it back below 0,
    so the proximal point is ON the kink: w* = 0, α* = α_k/(1 + λh) (σ(0) = 0). The
    backward Euler equation has no solution there; the step must still converge."""
    lam, h = 0.3, 0.1
    tr = P.implicit_steps(NEURON, jnp.array([[0.01, 1.0]]), np.array([[1.0]]),
                          np.array([-5.0]), lam, h, h)
    w, a = tr.support[-1, 0]
    assert abs(w) < 1e-13
    np.testing.assert_allclose(a, 1.0 / (1.0 + lam * h), rtol=1e-13)
    assert tr.diagnostics["converged"][-1] == 1.0
    assert tr.diagnostics["inner_residual"][-1] <= 1e-10
    # the plain (σ'(0) = 0) backward Euler residual (w − w_k)/h + ∂_w F' is far from 0
    # there: the gradient jump (1/n) r α is what the Clarke test accounts for
    g = obj.first_variation_grad(NEURON, tr.support[-1], np.ones(1), np.array([[1.0]]),
                                 np.array([-5.0]), lam)
    assert abs(float(g[0, 0]) + (w - 0.01) / h) > 0.05


def test_implicit_unconverged_step_warns_and_flags():
    theta = _theta0()
    with pytest.warns(RuntimeWarning, match="missed tol"):
        tr = P.implicit_steps(NEURON, theta, DS.X, DS.y, LAM, 0.1, 0.2, tol=1e-15, max_iter=1)
    assert tr.diagnostics["converged"][1] == 0.0
    assert tr.diagnostics["inner_residual"][1] > 1e-15
    assert tr.diagnostics["inner_iterations_max"][1] == 1


# ------------------------------------------------------------------------------ Langevin


def test_langevin_approaches_gd_like_sqrt_diffusion():
    theta = _theta0()
    h = 0.01
    gd = P.gradient_descent(NEURON, theta, DS.X, DS.y, LAM, h, T_END, record_every=1000)
    key = jax.random.PRNGKey(5)
    D0 = P.langevin(NEURON, theta, DS.X, DS.y, LAM, h, T_END, 0.0, key, record_every=1000)
    np.testing.assert_array_equal(D0.support, gd.support)  # D = 0 is GD exactly
    Ds = [1e-12, 1e-10, 1e-8, 1e-6]
    errs = [np.abs(P.langevin(NEURON, theta, DS.X, DS.y, LAM, h, T_END, D, key,
                              record_every=1000).support[-1] - gd.support[-1]).max()
            for D in Ds]
    s = _slope(Ds, errs)
    print(f"\nLangevin vs GD errors {errs}, slope in D {s:.4f}")
    assert np.all(np.diff(errs) > 0)
    assert 0.4 <= s <= 0.6


def test_langevin_sphere_stays_on_sphere_and_noise_is_tangent():
    theta = _theta0("sphere")
    sph = PA.get("sphere")
    tr = P.langevin(sph, theta, DS.X, DS.y, 0.1, 0.01, 0.1, 0.5, 3, record_every=5)
    np.testing.assert_allclose(np.linalg.norm(tr.support[:, :, :-1], axis=2), 1.0, atol=1e-14)
    gd = P.gradient_descent(sph, theta, DS.X, DS.y, 0.1, 0.01, 0.1, record_every=5)
    assert np.abs(tr.support[-1] - gd.support[-1]).max() > 1e-3
    # one step: the s-increment before retraction is tangent, so the retracted s moves
    # by h·v + √(2Dh)·P ξ to first order; check it against a manual step.
    one = P.langevin(sph, theta, DS.X, DS.y, 0.1, 0.01, 0.01, 0.5, 3)
    xi = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(3), 0), theta.shape)
    v = P.particle_velocity(sph, theta, DS.X, DS.y, 0.1)
    manual = sph.project(theta + 0.01 * v + np.sqrt(2 * 0.5 * 0.01) * sph.tangent(theta, xi))
    np.testing.assert_allclose(one.support[-1], np.asarray(manual), rtol=1e-13, atol=1e-15)


# -------------------------------------------------------------------------- resumability


def _segments(run, theta, n_seg, interval):
    t0, frames = 0.0, []
    for _ in range(n_seg):
        seg = run(theta, t0, interval)
        theta, t0 = seg.support[-1], float(seg.t[-1])
        frames.append(seg.support[-1])
    return np.stack(frames), t0


@pytest.mark.parametrize("method", ["gd", "implicit", "langevin", "flow"])
def test_one_call_equals_consecutive_calls_bitwise(method):
    theta = _theta0(seed=3)
    h, r = 0.01, 5
    key = jax.random.PRNGKey(9)
    runs = {
        "gd": lambda th, t0, T: P.gradient_descent(NEURON, th, DS.X, DS.y, LAM, h, T, r, t0=t0),
        "implicit": lambda th, t0, T: P.implicit_steps(NEURON, th, DS.X, DS.y, LAM, h, T, r,
                                                       t0=t0),
        "langevin": lambda th, t0, T: P.langevin(NEURON, th, DS.X, DS.y, LAM, h, T, 0.05, key,
                                                 r, t0=t0),
        "flow": lambda th, t0, T: P.gradient_flow(NEURON, th, DS.X, DS.y, LAM, T, n_records=2,
                                                  t0=t0),
    }
    run = runs[method]
    if method == "flow":
        whole = P.gradient_flow(NEURON, theta, DS.X, DS.y, LAM, 0.2, n_records=5)
    else:
        whole = run(theta, 0.0, 0.2)
    frames, t_end = _segments(run, theta, 4, 0.05)
    np.testing.assert_array_equal(frames, whole.support[1:])
    assert abs(t_end - 0.2) < 1e-14 and len(whole) == 5


def test_classic_gd_resumes_bitwise():
    rng = np.random.default_rng(2)
    W, a = rng.standard_normal((4, 2)), rng.standard_normal(4)
    whole = P.classic_gd(W, a, DS.X, DS.y, 0.1, 1e-3, 20, record_every=10)
    first = P.classic_gd(W, a, DS.X, DS.y, 0.1, 1e-3, 10, record_every=10)
    S = first.support[-1]
    second = P.classic_gd(S[:, :2], S[:, 2], DS.X, DS.y, 0.1, 1e-3, 10, record_every=10,
                          t0=float(first.t[-1]))
    np.testing.assert_array_equal(second.support[-1], whole.support[-1])
    np.testing.assert_allclose(second.t, [0.01, 0.02])


# ------------------------------------------------------------------------- validation


def test_bad_inputs_raise_clear_errors():
    theta = _theta0()
    X, y = DS.X, DS.y
    with pytest.raises(ValueError, match="not a multiple of the step"):
        P.gradient_descent(NEURON, theta, X, y, LAM, 0.03, 0.1)
    with pytest.raises(ValueError, match="theta0 must have shape"):
        P.gradient_descent(NEURON, theta[:, :2], X, y, LAM, 0.1, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        P.gradient_descent(NEURON, theta.at[0, 0].set(jnp.nan), X, y, LAM, 0.1, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        P.langevin(NEURON, theta, X, y * np.inf, LAM, 0.1, 0.1, 0.1, 0)
    with pytest.raises(ValueError, match="lam"):
        P.implicit_steps(NEURON, theta, X, y, -1.0, 0.1, 0.1)
    with pytest.raises(ValueError, match="h must be"):
        P.gradient_descent(NEURON, theta, X, y, LAM, 0.0, 0.1)
    with pytest.raises(ValueError, match="diffusion"):
        P.langevin(NEURON, theta, X, y, LAM, 0.1, 0.1, -1.0, 0)
    with pytest.raises(ValueError, match="record_every"):
        P.gradient_descent(NEURON, theta, X, y, LAM, 0.1, 0.1, record_every=0)
    with pytest.raises(ValueError, match="unit vectors"):
        P.gradient_descent("sphere", 2.0 * _theta0("sphere"), X, y, LAM, 0.1, 0.1)
    with pytest.raises(ValueError, match="y must have shape"):
        P.gradient_flow(NEURON, theta, X, y[:-1], LAM, 0.1)
    with pytest.raises(ValueError, match="unknown parametrization"):
        P.gradient_descent("polar", theta, X, y, LAM, 0.1, 0.1)
    with pytest.raises(ValueError, match="max_iter"):
        P.implicit_steps(NEURON, theta, X, y, LAM, 0.1, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="steps"):
        P.classic_gd(theta[:, :2], theta[:, 2], X, y, LAM, 0.1, -1)


# -------------------------------------------------------------------------- m-invariance


def test_mean_field_objective_is_invariant_in_m():
    """F(t = 10) of GD (h = 0.05, λ = 0.01, Gaussian init, regression_1d with bias) for
    m = 300 and 3000 over 10 seeds each: means agree within 3 seed-to-seed std's of
    m = 300, and the spread shrinks like m^(-1/2) (std ratio near √10 ≈ 3.16).

    m = 300/3000 rather than 10³/10⁴: the same factor 10 in m, a tenth of the work (the
    runs are GD steps, not compilation). Measured on three sets of 10 seeds: |gap|/std
    0.05–0.26 and std ratios 2.3–3.2 (10³/10⁴: 0.15–0.38 and 2.2–4.1)."""
    F = {}
    for m in (300, 3000):
        F[m] = np.array([
            P.gradient_descent(NEURON, _theta0(m=m, seed=100 + s), DS.X, DS.y, 0.01, 0.05, 10.0,
                               record_every=200).diagnostics["objective"][-1]
            for s in range(10)
        ])
    s3, s4 = F[300].std(ddof=1), F[3000].std(ddof=1)
    ratio = s3 / s4
    gap = abs(F[300].mean() - F[3000].mean())
    print(f"\nF(10): m=300 {F[300].mean():.6f} ± {s3:.2e}, m=3000 {F[3000].mean():.6f} ± "
          f"{s4:.2e}; |gap|/std = {gap / s3:.3f}; std ratio {ratio:.3f}")
    assert gap < 3 * s3
    assert 1.5 <= ratio <= 7.0
