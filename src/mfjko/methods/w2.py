r"""W₂ proximal steps between particle measures: θ_{k+1} = argmin G(θ) + W₂²(μ_θ, μ_{θ_k})/(2h).

W₂ is exact (network simplex, POT ``ot.emd``, uniform weights). For uniform m-atom measures
W₂²(μ_θ, μ_a) = min_σ (1/m) Σ_i ‖θ_i − a_{σ(i)}‖² over permutations, and G is invariant
under relabeling, so the global W₂ prox equals the Frobenius prox with the identity
coupling; they can differ only when the inner solver stops at a non-global stationary
point. So we alternate: solve the prox with the anchor permuted by the current assignment
σ, recompute σ by ``ot.emd`` between the solution and θ_k, until σ is stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_int,
    check_positive,
)
from mfjko.methods.implicit import ImplicitConfig, _implicit_advance, warn_unconverged

__all__ = ["W2Prox", "W2Config", "optimal_assignment", "METHOD"]


def optimal_assignment(theta, anchor) -> np.ndarray:
    """The optimal W₂ coupling of two uniform m-atom measures as a permutation.

    Args:
      theta: (m, D) particles.
      anchor: (m, D) particles of the measure to couple with.

    Returns:
      σ (m,) with σ[i] the anchor index coupled to θ_i: the optimal transport plan of two
      uniform m-atom measures is a permutation (a vertex of the Birkhoff polytope), found
      by the Hungarian algorithm (SciPy's ``linear_sum_assignment``) on the squared
      Euclidean cost.
    """
    # loaded on the first W2 step (start-up cost), not for a circle
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    theta = np.asarray(theta, dtype=np.float64)
    anchor = np.asarray(anchor, dtype=np.float64)
    C = cdist(theta, anchor, metric="sqeuclidean")
    rows, sigma = linear_sum_assignment(C)
    assert np.array_equal(rows, np.arange(theta.shape[0]))  # rows come sorted, all of them
    return sigma


_DIAGNOSTICS = {"alternations_max": 0.0, "inner_iterations_total": 0.0, "inner_residual": 0.0,
                "identity_coupling": 1.0, "converged": 1.0}


@dataclass(frozen=True)
class W2Prox(Stepper):
    """Exact-W₂ proximal steps of length h (module docstring).

    Attributes:
      h: time step (mean-field time).
      tol: inner Newton tolerance (backward Euler residual, velocity units).
      max_iter: Newton cap.
      max_alternations: assignment/prox alternations.

    Interval diagnostics: ``alternations_max``, ``inner_iterations_total``,
    ``inner_residual`` (max), ``identity_coupling`` (1.0 if every step ended with the
    identity coupling to its anchor), ``converged`` (inner tol met and σ stable).
    """

    name = "w2"
    diagnostics = _DIAGNOSTICS
    h: float = 0.01
    tol: float = 1e-10
    max_iter: int = 50
    max_alternations: int = 10

    def __post_init__(self):
        check_positive(self.h, "h")
        check_positive(self.tol, "tol")
        check_int(self.max_alternations, "max_alternations")

    def _prox(self, p, anchor):
        theta, it_max, it_sum, res, ok, frac = _implicit_advance(
            p.param, jnp.asarray(anchor), p.X, p.y, p.lam, jnp.float64(self.h),
            jnp.float64(self.tol), jnp.int32(1), jnp.int32(self.max_iter))
        return np.asarray(theta), float(it_sum), float(res), bool(ok)

    def _step(self, p, anchor):
        sigma = np.arange(anchor.shape[0])
        its, res, ok = 0.0, 0.0, True
        for alt in range(1, self.max_alternations + 1):
            new, it, r, conv = self._prox(p, anchor[sigma])
            its, res, ok = its + it, max(res, r), ok and conv
            # new[i] was anchored at anchor[sigma[i]]; recompute the optimal coupling.
            new_sigma = optimal_assignment(new, anchor)
            if np.array_equal(new_sigma, sigma):
                identity = bool(np.array_equal(sigma, np.arange(len(sigma))))
                return new, alt, its, res, ok, identity
            sigma = new_sigma
        return new, self.max_alternations, its, res, False, False

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` W₂-prox steps of h; warns if a step misses ``tol`` or σ is unstable."""
        p, th = state.problem, np.asarray(state.theta)
        alt_max, its_tot, res_max, ident, conv = 0, 0.0, 0.0, True, True
        for _ in range(n_steps):
            th, alt, its, res, ok, idc = self._step(p, th)
            alt_max, its_tot, res_max = max(alt_max, alt), its_tot + its, max(res_max, res)
            ident, conv = ident and idc, conv and ok
        diag = dict(alternations_max=float(alt_max), inner_iterations_total=its_tot,
                    inner_residual=res_max, identity_coupling=float(ident),
                    converged=float(conv))
        if not conv:
            warn_unconverged(self.name, self.tol, state.k, n_steps, self.h, diag)
        return ParticleState(p, jnp.asarray(th), state.k + n_steps), Diagnostics(diag)


class W2Config(ImplicitConfig):
    """``methods.w2``: exact-W₂ proximal steps of length h, inner Newton to ``tol``.

    ``init`` resolves to ``particles`` only: the step couples equal masses by a permutation
    (``init: grid`` is a ConfigError).
    """


def _build(mc: W2Config, setup) -> W2Prox:
    return W2Prox(h=mc.h, tol=mc.tol)


METHOD = MethodInfo("w2", W2Prox, W2Config, _build, color="tab:purple",
                    summary="proximal steps in exact W₂ between particle measures (POT)")
