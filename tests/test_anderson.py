"""Anderson acceleration (mfjko.anderson) against closed forms.

Anderson (type II, depth m) on an affine contraction T(x) = Mx + c with m − 1 ≥ dim x
is GMRES-like: it reaches the fixed point (I − M)⁻¹c to 1e-10 within dim x + 4
evaluations, where the plain iteration (contraction factor 0.99) is still far off; its
restart test empties the history when the residual more than doubles.
"""

import jax
import jax.numpy as jnp
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko import anderson

D = 5


def _affine_map(seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    M = Q @ np.diag(np.linspace(0.5, 0.99, D)) @ Q.T  # slow: contraction factor 0.99
    return jnp.asarray(M), jnp.asarray(rng.normal(size=D))


@jax.jit
def _accelerated(hist, x, M, c):
    return anderson.step(hist, x, M @ x + c)


def test_anderson_solves_an_affine_fixed_point_in_dim_plus_four_evaluations():
    M, c = _affine_map()
    exact = np.linalg.solve(np.eye(D) - np.asarray(M), np.asarray(c))
    hist, x = anderson.empty_history(D + 2, D, jnp.float64), jnp.zeros(D)
    for _ in range(D + 4):
        hist, x, _ = _accelerated(hist, x, M, c)
    np.testing.assert_allclose(np.asarray(x), exact, rtol=0, atol=1e-10 * np.abs(exact).max())
    x_plain = np.zeros(D)
    for _ in range(D + 4):
        x_plain = np.asarray(M) @ x_plain + np.asarray(c)
    assert np.abs(x_plain - exact).max() > 0.5 * np.abs(exact).max()  # plain: far off


@jax.jit
def _step(hist, x, t, restart):
    # one program for the four steps below (eagerly, each operation compiles on its own)
    return anderson.step(hist, x, t, restart=restart)


def test_anderson_restarts_when_the_residual_more_than_doubles():
    no = jnp.asarray(False)
    hist = anderson.empty_history(4, 2, jnp.float64)
    hist, _, used = _step(hist, jnp.zeros(2), jnp.ones(2), no)
    assert int(hist.length) == 1 and not bool(used)  # one entry: nothing to mix
    hist, _, used = _step(hist, jnp.ones(2), jnp.full(2, 1.5), no)
    assert int(hist.length) == 2 and bool(used)
    hist, nxt, used = _step(hist, jnp.full(2, 1.5), jnp.full(2, 9.0), no)  # grows ×15
    assert int(hist.length) == 1 and not bool(used)
    np.testing.assert_array_equal(np.asarray(nxt), np.full(2, 9.0))
    hist, _, used = _step(hist, jnp.zeros(2), jnp.ones(2), jnp.asarray(True))
    assert int(hist.length) == 1
