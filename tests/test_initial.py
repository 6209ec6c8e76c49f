"""Initial laws: sampling statistics, exact pushes to each parametrization, file loading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from mfjko import parametrizations as P
from mfjko.initial import BalancedLaw, FileLaw, GaussianLaw, sample_particles


def test_gaussian_law_moments_and_density():
    law = GaussianLaw(scale=0.7)
    # discretize's default sample size (tests/geometry): one sampler program for both
    W, a = law.sample_classic(jax.random.PRNGKey(0), 200_000, 2)
    Z = np.column_stack([W, a])
    # sample std of N(0, 0.49) with 200,000 draws: within 0.16% (1 standard error), far
    # inside the 3% asked
    np.testing.assert_allclose(Z.std(axis=0), 0.7, rtol=0.03)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=0.03)
    pts = np.random.default_rng(1).standard_normal((5, 3))
    ref = multivariate_normal(mean=np.zeros(3), cov=0.49 * np.eye(3)).logpdf(pts)
    got = law.log_density_classic(jnp.asarray(pts[:, :2]), jnp.asarray(pts[:, 2]))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-13)


def test_balanced_law_is_balanced_with_both_signs():
    W, a = BalancedLaw(scale=2.0).sample_classic(jax.random.PRNGKey(3), 500, 3)
    np.testing.assert_allclose(np.abs(np.asarray(a)), np.linalg.norm(np.asarray(W), axis=1),
                               rtol=1e-14)
    frac_pos = float(np.mean(np.asarray(a) > 0))
    assert 0.4 < frac_pos < 0.6


@pytest.mark.parametrize("name", ["neuron", "signed", "pm", "sphere"])
def test_sample_particles_push_the_same_classic_sample(name):
    """sample_particles = project(from_classic(classic sample)): predictors agree with
    the classic network built from the same key."""
    param = P.get(name)
    key = jax.random.PRNGKey(4)
    th = sample_particles(GaussianLaw(), param, key, 7, 2)
    W, a = GaussianLaw().sample_classic(key, 7, 2)
    X = jnp.asarray(np.random.default_rng(0).standard_normal((6, 2)))
    f = param.features(th, X) @ jnp.full(7, 1 / 7)
    h = np.maximum(np.asarray(X) @ np.asarray(W).T, 0) @ np.asarray(a)
    np.testing.assert_allclose(np.asarray(f), h / 7, rtol=1e-12, atol=1e-13)


def test_file_law_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    W, a = rng.standard_normal((5, 2)), rng.standard_normal(5)
    np.savez(tmp_path / "p.npz", W=W, alpha=a)
    np.savetxt(tmp_path / "p.csv", np.column_stack([W, a]), delimiter=",")
    for f in ("p.npz", "p.csv"):
        W2, a2 = FileLaw(str(tmp_path / f)).sample_classic(None, 3, 2)
        np.testing.assert_allclose(np.asarray(W2), W[:3], rtol=1e-15 if f.endswith("z") else 1e-12)
        np.testing.assert_allclose(np.asarray(a2), a[:3], rtol=1e-15 if f.endswith("z") else 1e-12)
    with pytest.raises(FileNotFoundError):
        FileLaw(str(tmp_path / "missing.npz")).load()
    with pytest.raises(ValueError, match="holds 5 particles"):
        FileLaw(str(tmp_path / "p.npz")).sample_classic(None, 6, 2)
    with pytest.raises(ValueError, match="d = 2"):
        FileLaw(str(tmp_path / "p.npz")).sample_classic(None, 2, 3)
    np.savez(tmp_path / "nan.npz", W=np.array([[np.nan, 1.0]]), alpha=np.ones(1))
    with pytest.raises(ValueError, match="NaN"):
        FileLaw(str(tmp_path / "nan.npz")).load()
    np.savez(tmp_path / "noalpha.npz", W=W)
    with pytest.raises(ValueError, match="missing arrays"):
        FileLaw(str(tmp_path / "noalpha.npz")).load()
