"""One ICNN JKO step of a Gaussian under a quadratic potential energy, against the closed
form (docs/MATH.md): μ_0 = N(m0, Σ0), F(μ) = ∫ ½θᵀAθ dμ, free energy F + D∫μ log μ.

JKO step τ: T(θ) = m1 + S(θ − m0) with M = I + τA, m1 = M⁻¹m0 and S the SPD solution of
S M S − S = τD Σ0⁻¹, i.e. S = M^{-1/2} R M^{-1/2}, R = ½I + (¼I + τD M^{1/2}Σ0⁻¹M^{1/2})^{1/2}
(D = 0: S = M⁻¹); Σ1 = S Σ0 S. The closed form is checked against scipy minimizing the
JKO functional over Gaussians (Bures distance by sqrtm); the ICNN steps on m samples
against the same formula with the samples' mean and (1/m) covariance, which is the exact
optimum of the sample objective over affine maps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from scipy.optimize import minimize

import mfjko  # noqa: F401  (float64)
from mfjko.icnn.step import ICNNOptions, QuadraticEnergy, icnn_prox_step, init_potential

TAU = 0.5
DIFF = 0.3
M_SAMPLES = 1000


def _sym(M, f):
    w, V = np.linalg.eigh(M)
    return (V * f(w)) @ V.T


def gaussian_jko(m0, S0, A, tau, D):
    """(m1, Σ1, S) of one JKO step (module docstring)."""
    I = np.eye(len(m0))
    M = I + tau * A
    Mh, Mih = _sym(M, np.sqrt), _sym(M, lambda w: 1 / np.sqrt(w))
    R = 0.5 * I + _sym(0.25 * I + tau * D * Mh @ np.linalg.inv(S0) @ Mh, np.sqrt)
    S = Mih @ R @ Mih
    return np.linalg.solve(M, m0), S @ S0 @ S, S


def _problem():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((3, 3))
    A = G @ G.T / 3 + 0.2 * np.eye(3)
    G = rng.standard_normal((3, 3))
    S0 = G @ G.T / 3 + 0.3 * np.eye(3)
    m0 = rng.standard_normal(3)
    th = m0 + rng.standard_normal((M_SAMPLES, 3)) @ np.linalg.cholesky(S0).T
    return m0, S0, A, th


@pytest.mark.parametrize("D", [0.0, DIFF])
def test_closed_form_is_the_gaussian_jko_step(D):
    """scipy BFGS on (m1, chol Σ1) of |m1 − m0|²/(2τ) + B²(Σ0, Σ1)/(2τ) + ½(m1ᵀAm1 +
    tr AΣ1) − (D/2) log det Σ1 agrees with the closed form to 1e-6 (measured ≤ 1.8e-7)."""
    m0, S0, A, _ = _problem()
    d = 3
    il = np.tril_indices(d)
    S0h = sla.sqrtm(S0).real

    def J(x):
        m1 = x[:d]
        L = np.zeros((d, d))
        L[il] = x[d:]
        S1 = L @ L.T
        b2 = np.trace(S0) + np.trace(S1) - 2 * np.trace(sla.sqrtm(S0h @ S1 @ S0h).real)
        return ((np.sum((m1 - m0) ** 2) + b2) / (2 * TAU)
                + 0.5 * (m1 @ A @ m1 + np.trace(A @ S1)) - 0.5 * D * np.linalg.slogdet(S1)[1])

    x0 = np.concatenate([m0, np.linalg.cholesky(S0)[il]])
    r = minimize(J, x0, method="BFGS", options=dict(gtol=1e-11, maxiter=10_000))
    L = np.zeros((d, d))
    L[il] = r.x[d:]
    m1, S1, S = gaussian_jko(m0, S0, A, TAU, D)
    np.testing.assert_allclose(r.x[:d], m1, atol=1e-6)
    np.testing.assert_allclose(L @ L.T, S1, atol=1e-6)
    # the matrix equation itself
    M = np.eye(d) + TAU * A
    np.testing.assert_allclose(S @ M @ S - S, TAU * D * np.linalg.inv(S0), atol=1e-12)


def test_entropy_factor_is_langevins_diffusion():
    """A = 0 (pure entropy): Σ1 = SΣ0S with S² − S = τDΣ0⁻¹, so (Σ1 − Σ0)/τ → 2D·I as
    τ → 0: the variance growth 2D per unit time of dθ = √(2D) dB, the noise of
    mfjko.particles.langevin (√(2Dh)ξ per step h). Measured relative error O(τ)."""
    _, S0, _, _ = _problem()
    errs = []
    for tau in (1e-2, 1e-3, 1e-4):
        _, S1, _ = gaussian_jko(np.zeros(3), S0, np.zeros((3, 3)), tau, DIFF)
        errs.append(np.abs((S1 - S0) / tau - 2 * DIFF * np.eye(3)).max() / (2 * DIFF))
    assert errs[-1] < 1e-3
    assert errs[0] / errs[1] == pytest.approx(10, rel=0.1)  # first order in τ


def _step(hidden, D, **kw):
    m0, S0, A, th = _problem()
    opts = ICNNOptions(hidden=hidden, **{"max_iter": 800, "tol": 1e-9, "ftol": 1e-12, **kw})
    psi = init_potential(jax.random.PRNGKey(1), 3, opts)
    T, psi, _, diag = icnn_prox_step(QuadraticEnergy(), (jnp.asarray(A), jnp.zeros(3)), psi,
                                     th, TAU, D, jax.random.PRNGKey(2), opts, warn=False)
    mh, Sh = th.mean(0), np.cov(th.T, bias=True)
    m1h, S1h, Shat = gaussian_jko(mh, Sh, A, TAU, D)
    Tref = m1h + (th - mh) @ Shat
    rms = lambda x: float(np.sqrt(np.mean(np.sum(x**2, 1))))  # noqa: E731
    T = np.asarray(T)
    return dict(map_err=rms(T - Tref) / rms(Tref - th), mean_err=np.abs(T.mean(0) - m1h).max(),
                cov_err=np.abs(np.cov(T.T, bias=True) - S1h).max(), diag=diag.as_dict())


def test_quadratic_potential_family_reproduces_the_sample_closed_form():
    """ψ = ½θᵀQθ + cᵀθ (no hidden layer) with the exact log-det: the step is the affine
    closed form of the samples to 1e-6 relative (measured 1.3e-9; moments 4e-10)."""
    r = _step((), DIFF)
    assert r["map_err"] < 1e-6 and r["cov_err"] < 1e-8 and r["mean_err"] < 1e-8
    assert r["diag"]["converged"]


@pytest.mark.slow
def test_icnn_without_entropy_is_the_affine_map():
    """Full ICNN (16, 16), D = 0: the pointwise optimum θ ↦ M⁻¹θ is in the family; the trained
    map matches it to 2e-3 of the displacement (measured 1.1e-4; moments 7e-9)."""
    r = _step((16, 16), 0.0)
    assert r["map_err"] < 2e-3
    assert r["diag"]["min_hessian_eig"] >= 1e-3 and r["diag"]["min_monotonicity"] >= 1e-3


@pytest.mark.slow
def test_icnn_with_exact_entropy_pushes_to_the_closed_form_gaussian():
    """Full ICNN (16, 16), D = 0.3, exact log-det: the push-forward's mean and covariance
    match the sample closed form to 3e-3 (measured 9.5e-4 / 1.2e-3). The map itself is
    only within 25 % (measured 12 %; 8.7 % at m = 2000): the sample average of
    log det ∇²ψ rewards curvature placed at the samples, so the ICNN's J ends below the
    affine optimum's (measured by 4.6e-3; 2.9e-3 at m = 2000) — a bias of the sample
    entropy estimator, see docs/MATH.md."""
    r = _step((16, 16), DIFF)
    assert r["cov_err"] < 3e-3 and r["mean_err"] < 3e-3
    assert r["map_err"] < 0.25


@pytest.mark.slow
def test_stochastic_entropy_with_adam_reaches_the_closed_form():
    """Quadratic ψ, Hutchinson + Lanczos log-det gradient (1 probe per sample, k = D = 3),
    Adam: mean and covariance match the sample closed form to 2e-2 (measured 6.8e-4 and
    2.6e-3; the map to 5.7e-3 of the displacement)."""
    r = _step((), DIFF, entropy="stochastic", optimizer="adam", learning_rate=2e-2,
              max_iter=600)
    assert r["cov_err"] < 2e-2 and r["mean_err"] < 2e-2
