r"""Type-II Anderson acceleration of a fixed-point map x ← T(x), with a restart safeguard.

The one implementation behind the one Sinkhorn loop (:func:`mfjko.jko.sinkhorn.sinkhorn_loop`,
balanced and WFR steps). A :class:`History` is a ring buffer of the last
m evaluation points x_j and their images T(x_j), newest in row 0; :func:`step` records
one evaluation, restarts the history when the residual ‖T(x) − x‖ more than doubles (or is
not finite, or the caller asks), and returns the mixed point Σ_j c_j T(x_j), Σ c_j = 1,
that minimizes ‖Σ_j c_j (T(x_j) − x_j)‖ (Tikhonov-regularized least squares). Pure and
jittable; a leaf module (JAX only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

Array = jax.Array

__all__ = ["History", "empty_history", "mix", "step"]


class History(NamedTuple):
    """Anderson history: ring buffers of points and images, newest in row 0.

    x: (m, d) evaluation points x_j.  t: (m, d) their images T(x_j).
    length: how many rows are in use.  last_res: the last residual norm (restart test).
    """

    x: Array
    t: Array
    length: Array
    last_res: Array


def empty_history(m: int, d: int, dtype) -> History:
    """An empty :class:`History` of depth ``m`` for points of dimension ``d``."""
    return History(
        x=jnp.zeros((m, d), dtype),
        t=jnp.zeros((m, d), dtype),
        length=jnp.asarray(0),
        last_res=jnp.asarray(jnp.inf, dtype),
    )


def mix(hist: History, reg: float = 1e-10, weight: Array | None = None) -> Array:
    """Type-II Anderson point Σ_j c_j T(x_j) with Σ c_j = 1 from the stored history.

    Args:
      hist: a :class:`History` with at least one row in use.
      reg: Tikhonov regularization, relative to the trace of the Gram matrix.
      weight: optional (d,) weights of the norm the residuals are measured in.

    Returns:
      (d,) the mixed point (non-finite if the least squares broke down).
    """
    m = hist.x.shape[0]
    R = hist.t - hist.x  # (m, d) residuals
    if weight is not None:
        R = R * weight
    valid = (jnp.arange(1, m) < hist.length)[:, None]
    # differences relative to the newest entry (row 0); unused rows are zero
    dR = jnp.where(valid, R[1:] - R[0], 0.0)
    dT = jnp.where(valid, hist.t[1:] - hist.t[0], 0.0)
    gram = dR @ dR.T
    gram = gram + (reg * (jnp.trace(gram) + 1e-300)) * jnp.eye(m - 1)
    gram = gram + jnp.diag(jnp.where(valid[:, 0], 0.0, 1.0))  # unused slots: γ_j = 0
    gamma = cho_solve((jnp.linalg.cholesky(gram), True), -(dR @ R[0]))  # SPD
    return hist.t[0] + gamma @ dT


def _push(hist: History, x: Array, t: Array, res: Array, restart: Array) -> History:
    m = hist.x.shape[0]
    hx = jnp.where(restart, 0.0, hist.x)
    ht = jnp.where(restart, 0.0, hist.t)
    length = jnp.where(restart, 0, hist.length)
    return History(
        x=jnp.roll(hx, 1, axis=0).at[0].set(x),
        t=jnp.roll(ht, 1, axis=0).at[0].set(t),
        length=jnp.minimum(length + 1, m),
        last_res=res,
    )


def step(hist: History, x: Array, t: Array, *, restart=False, reg: float = 1e-10,
         weight: Array | None = None,
         admissible: Callable[[Array], Array] | None = None) -> tuple[History, Array, Array]:
    """Record the evaluation T(x) = t and propose the next iterate.

    Args:
      hist: the :class:`History` before this evaluation (its depth m is static; m < 2:
        plain iterations).
      x: (d,) the evaluation point.
      t: (d,) its image T(x).
      restart: also restart the history (e.g. when the map changes).
      reg: Tikhonov regularization of the least squares (:func:`mix`).
      weight: optional (d,) weights of the residual norm (restart test and least squares).
      admissible: optional ``mixed -> bool``: a mixed point it rejects is not used.

    Returns:
      (new history, next iterate (the mixed point, else t), whether it is the mixed point).
    """
    diff = t - x
    res = jnp.linalg.norm(diff if weight is None else weight * diff)
    restart = restart | (res > 2.0 * hist.last_res) | ~jnp.isfinite(res)
    hist = _push(hist, x, t, res, restart)
    if hist.x.shape[0] < 2:
        return hist, t, jnp.asarray(False)
    mixed = mix(hist, reg, weight)
    use_mix = (hist.length >= 2) & jnp.all(jnp.isfinite(mixed))
    if admissible is not None:
        use_mix = use_mix & admissible(mixed)
    return hist, jnp.where(use_mix, mixed, t), use_mix
