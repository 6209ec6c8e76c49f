r"""Stable functional API of the peer proximal particle methods.

The steppers live in :mod:`mfjko.methods`: :mod:`~mfjko.methods.frobenius`,
:mod:`~mfjko.methods.w2`, :mod:`~mfjko.methods.sliced`. One step of length h replaces θ_k
by argmin_θ G(θ) + d(μ_θ, μ_{θ_k})²/(2h) with d the Frobenius distance of the particles
(the implicit step), exact W₂ (POT ``ot.emd``) or sliced W₂; mean-field time advances by
h. Each returns a :class:`~mfjko.trajectory.Trajectory` with inner-solver diagnostics per
record.
"""

from __future__ import annotations

import dataclasses

import jax

from mfjko.methods.frobenius import FrobeniusProx
from mfjko.methods.sliced import SlicedProx, sliced_w2_squared
from mfjko.methods.w2 import W2Prox, optimal_assignment
from mfjko.particles import run_particles
from mfjko.trajectory import Trajectory

__all__ = [
    "frobenius_prox",
    "w2_prox",
    "sliced_prox",
    "optimal_assignment",
    "sliced_w2_squared",
]


def frobenius_prox(param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-10,
                   max_iter: int = 50, t0: float = 0.0) -> Trajectory:
    """θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²_F/(2mh), as a peer method.

    Exactly :func:`mfjko.particles.implicit_steps` (same arguments), with method name
    "frobenius_prox".
    """
    traj = run_particles(FrobeniusProx(h=h, tol=tol, max_iter=max_iter), param, theta0, X, y,
                         lam, T, record_every, t0)
    return dataclasses.replace(traj, method="frobenius_prox")


def w2_prox(param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-10,
            max_iter: int = 50, max_alternations: int = 10, t0: float = 0.0) -> Trajectory:
    """θ_{k+1} = argmin_θ G(θ) + W₂²(μ_θ, μ_{θ_k})/(2h), exact W₂.

    Alternates the prox with the optimal assignment (:class:`mfjko.methods.w2.W2Prox`);
    arguments as :func:`mfjko.particles.implicit_steps`, plus ``max_alternations``
    (assignment/prox alternations per step). Diagnostics per record:
    ``alternations_max``, ``inner_iterations_total``, ``inner_residual``,
    ``identity_coupling``, ``converged``.
    """
    stepper = W2Prox(h=h, tol=tol, max_iter=max_iter, max_alternations=max_alternations)
    traj = run_particles(stepper, param, theta0, X, y, lam, T, record_every, t0)
    return dataclasses.replace(traj, method="w2_prox")


def sliced_prox(param, theta0, X, y, lam, h, T, record_every: int = 1, tol: float = 1e-8,
                n_projections: int = 64, seed: int = 0, key=None, max_iter: int = 20_000,
                t0: float = 0.0) -> Trajectory:
    """θ_{k+1} = argmin_θ G(θ) + SW²(μ_θ, μ_{θ_k})/(2h), sliced W₂.

    See :class:`mfjko.methods.sliced.SlicedProx`; other arguments as
    :func:`mfjko.particles.implicit_steps`. ``n_projections`` directions per step are
    drawn from ``key`` (default PRNGKey(seed)) folded with the global step index
    round(t0/h) + k; ``max_iter`` caps the inner Barzilai–Borwein iterations.
    """
    key = jax.random.PRNGKey(int(seed)) if key is None else key
    stepper = SlicedProx(h=h, tol=tol, n_projections=n_projections, key=key, max_iter=max_iter)
    traj = run_particles(stepper, param, theta0, X, y, lam, T, record_every, t0)
    return dataclasses.replace(traj, method="sliced_prox")
