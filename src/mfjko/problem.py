r"""The mean-field problem (MATH.md "Mean-field objective"): data, neuron and weight decay.

:class:`MeanFieldProblem` (parametrization, X, y, λ) owns F, F′, ∇F′ and the predictor of
any weighted point set μ = Σ_k p_k δ_{θ_k}; :class:`GridProblem` adds a fixed support
(a geometry) and caches Φ (n, N) and V (N,) on it, so that F(p) is a convex quadratic in
the grid weights. Every method takes one of them (as OTT-JAX solvers take a problem).
The formulas themselves are :mod:`mfjko.objective` (one place each).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mfjko import objective as _obj
from mfjko.parametrizations import Parametrization
from mfjko.parametrizations import get as get_param

Array = jax.Array

__all__ = ["MeanFieldProblem", "GridProblem", "as_data"]


def as_data(X, y) -> tuple[Array, Array]:
    """Validated float64 data: X (n, d) and y (n,), finite, n ≥ 1 (ValueError otherwise)."""
    X = jnp.asarray(X, dtype=jnp.float64)
    y = jnp.asarray(y, dtype=jnp.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    if not (bool(jnp.isfinite(X).all()) and bool(jnp.isfinite(y).all())):
        raise ValueError("X or y contain NaN or inf")
    return X, y


class MeanFieldProblem(eqx.Module):
    """F(μ) = (1/(2n)) Σ_j (f_μ(x_j) − y_j)² + (λ/2) ∫ V dμ for one data set and neuron.

    Attributes:
      param: the :class:`~mfjko.parametrizations.Parametrization` of Θ (static).
      X: (n, d) inputs, bias column included.  y: (n,) targets.  lam: λ ≥ 0 (a float64
        array, so new values do not recompile jitted solvers).
    """

    param: Parametrization = eqx.field(static=True)
    X: Array
    y: Array
    lam: Array

    @classmethod
    def create(cls, param, X, y, lam) -> MeanFieldProblem:
        """Validated problem: ``param`` a Parametrization or its name, λ finite ≥ 0."""
        X, y = as_data(X, y)
        lam = float(lam)
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam (weight decay) must be finite and >= 0, got {lam}")
        return cls(param=get_param(param), X=X, y=y, lam=jnp.float64(lam))

    @property
    def n(self) -> int:
        """Number n of data points."""
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Input dimension d (bias column included)."""
        return int(self.X.shape[1])

    @property
    def dim(self) -> int:
        """D, the dimension of Θ."""
        return self.param.dim(self.d)

    def check_particles(self, theta0) -> Array:
        """Validated particles (m, D) of this problem's Θ (ValueError naming the fix)."""
        theta = jnp.asarray(theta0, dtype=jnp.float64)
        D = self.dim
        if theta.ndim != 2 or theta.shape[1] != D or theta.shape[0] == 0:
            raise ValueError(
                f"theta0 must have shape (m, {D}) for {self.param.name!r} on d = {self.d} "
                f"data, got {theta.shape}"
            )
        if not bool(jnp.isfinite(theta).all()):
            raise ValueError("theta0 contains NaN or inf")
        if self.param.on_sphere:
            norms = jnp.linalg.norm(theta[:, :-1], axis=1)
            if float(jnp.max(jnp.abs(norms - 1.0))) > 1e-8:
                raise ValueError(
                    f"theta0 for {self.param.name!r}: the direction part must be unit vectors "
                    "(apply param.project first)"
                )
        return theta

    # ------------------------------------------------------------------ measures
    def predict(self, thetas: Array, weights: Array, X: Array | None = None) -> Array:
        """f_μ(x_j) on X (default: the training inputs), shape (n,)."""
        return _obj.predict(self.param, thetas, weights, self.X if X is None else X)

    def objective(self, thetas: Array, weights: Array) -> Array:
        """F(μ) for μ = Σ_k p_k δ_{θ_k}: thetas (K, D), weights (K,)."""
        return _obj.objective(self.param, thetas, weights, self.X, self.y, self.lam)

    def measure_objective(self, points: Array, weights: Array) -> Array:
        """F of the measure Σ_k weights_k δ_{points_k} (jitted; the driver's records)."""
        return _objective_jit(self, jnp.asarray(points), jnp.asarray(weights))

    def first_variation(self, thetas: Array, weights: Array, at: Array) -> Array:
        """F′(μ)(θ) at the points ``at`` (L, D), shape (L,)."""
        return _obj.first_variation(self.param, thetas, weights, self.X, self.y, self.lam, at)

    def first_variation_grad(self, thetas, weights, at=None) -> Array:
        """∇_θ F′(μ)(θ) at ``at`` (default: the support), shape (L, D)."""
        return _obj.first_variation_grad(self.param, thetas, weights, self.X, self.y,
                                         self.lam, at)

    def velocity(self, thetas: Array, weights: Array) -> Array:
        """−∇F′(μ) at the support, tangent to Θ, shape (K, D)."""
        return _obj.velocity(self.param, thetas, weights, self.X, self.y, self.lam)

    # ------------------------------------------------------------------ particles
    def particle_objective(self, thetas: Array) -> Array:
        """G(θ_1..θ_m) = F(μ_m), μ_m the uniform measure on the rows of ``thetas``."""
        return _obj.particle_objective(self.param, thetas, self.X, self.y, self.lam)

    def particle_velocity(self, thetas: Array) -> Array:
        """v_i = −∇F′(μ_m)(θ_i) = −m ∇_{θ_i} G (tangent on the sphere), shape (m, D)."""
        return _particle_velocity_jit(self, jnp.asarray(thetas))

    def losses(self, thetas, weights, X_test=None, y_test=None) -> dict:
        """F, its data part and (with test data) the test loss and both predictions.

        Returns:
          dict with floats ``loss``, ``data_loss`` (and ``test_loss``) and arrays
          ``pred_train`` (n,) (and ``pred_test`` (n_test,)).
        """
        test = None if X_test is None else (jnp.asarray(X_test), jnp.asarray(y_test))
        loss, data_loss, f, tested = _losses_jit(self, jnp.asarray(thetas),
                                                 jnp.asarray(weights), test)
        out = {"loss": float(loss), "data_loss": float(data_loss), "pred_train": np.asarray(f)}
        if tested is not None:
            out["test_loss"] = float(tested[0])
            out["pred_test"] = np.asarray(tested[1])
        return out


@eqx.filter_jit
def _particle_velocity_jit(problem: MeanFieldProblem, thetas):
    m = thetas.shape[0]
    return problem.velocity(thetas, jnp.full((m,), 1.0 / m))


@eqx.filter_jit
def _losses_jit(problem: MeanFieldProblem, pts, w, test):
    """:meth:`MeanFieldProblem.losses` compiled (op by op, vmap tracing dominated)."""
    phi = problem.param.features(pts, problem.X)
    f = phi @ w
    loss = _obj.loss_from_features(phi, w, problem.y, problem.param.potentials(pts),
                                   problem.lam)
    if test is None:
        return loss, _obj.fit_loss(f, problem.y), f, None
    f_test = problem.predict(pts, w, test[0])
    return loss, _obj.fit_loss(f, problem.y), f, (_obj.fit_loss(f_test, test[1]), f_test)


@eqx.filter_jit
def _objective_jit(problem: MeanFieldProblem, points, weights):
    return problem.objective(points, weights)


class GridProblem(eqx.Module):
    """F on a fixed support: μ = Σ_k p_k δ_{θ_k}, θ_k the points of ``geom``.

    F(p) = (1/(2n)) ‖Φp − y‖² + (λ/2) Vᵀp with Φ (n, N) and V (N,) cached.

    Attributes:
      geom: the geometry (support ``geom.points`` (N, D)).
      phi: (n, N) features Φ[j, k] = m(θ_k; x_j).
      y: (n,) targets.
      v: (N,) potentials V(θ_k).
      lam: weight decay λ.
      problem: the :class:`MeanFieldProblem` it was built from (None when built from
      arrays by :meth:`from_arrays`).
    """

    geom: object
    phi: Array
    y: Array
    v: Array
    lam: Array
    problem: MeanFieldProblem | None = None

    @classmethod
    def create(cls, problem: MeanFieldProblem, geom) -> GridProblem:
        """Evaluate Φ and V once on the grid's points (which live in Θ of the problem)."""
        D = problem.dim
        if geom.points.ndim != 2 or geom.points.shape[1] != D:
            raise ValueError(f"grid points have shape {geom.points.shape}; the "
                             f"{problem.param.name} problem on d = {problem.d} needs (N, {D})")
        phi = problem.param.features(geom.points, problem.X)
        v = problem.param.potentials(geom.points)
        return cls(geom=geom, phi=phi, y=problem.y, v=v, lam=problem.lam, problem=problem)

    @classmethod
    def from_arrays(cls, geom, phi, y, v, lam) -> GridProblem:
        """A grid problem from its pieces (no parametrization needed)."""
        return cls(geom=geom, phi=jnp.asarray(phi, jnp.float64), y=jnp.asarray(y, jnp.float64),
                   v=jnp.asarray(v, jnp.float64), lam=jnp.asarray(lam, jnp.float64))

    @property
    def size(self) -> int:
        """Number N of grid points."""
        return int(self.phi.shape[1])

    def objective(self, p: Array) -> Array:
        """F(p), p (N,) grid weights."""
        return _obj.loss_from_features(self.phi, p, self.y, self.v, self.lam)

    def measure_objective(self, points: Array, weights: Array) -> Array:
        """F of the grid measure with weights ``weights`` (``points`` are the grid's)."""
        return self.objective(jnp.asarray(weights))

    def predict(self, p: Array) -> Array:
        """f_p(x_j) = (Φp)_j on the training inputs, (n,)."""
        return self.phi @ p
