r"""Production entropic JKO solver on any grid geometry.

One step (MATH.md "Entropic JKO"): p_{k+1} = argmin_{p ∈ simplex} W_ε(p, p_k) + 2τF(p),
solved by the log-domain generalized Sinkhorn of :mod:`mfjko.jko.sinkhorn` with the
KL-prox of :mod:`mfjko.jko.prox`; with ``JKOSolverOptions.debias`` the debiased step
argmin W_ε(p, p_k) − (ε/2)H(p) + 2τF(p) (no first-order diffusion). The JKO step τ is a
step of mean-field time: k steps reach t = kτ, the axis GD with lr = m·h uses.

Public API: :class:`JKOSolverOptions` (tolerances, caps, ε-scaling, Anderson),
:class:`JKOState` (the warm start: KL-prox dual g (n,); f, ψ (N,) for inspection),
:func:`solve_step` (one step on a :class:`~mfjko.problem.GridProblem`) and :func:`jko_step`
(the same on plain arrays, the stable functional API). The time loop ``run_jko`` (k = T/τ
steps by :func:`mfjko.driver.drive`) drives the stepper of :mod:`mfjko.methods.jko` and
lives one floor up, in :mod:`mfjko.grid_runs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mfjko.jko.dense import check_step_data, report_failure
from mfjko.jko.sinkhorn import (
    SinkhornControls,
    StepData,
    debiased_sinkhorn,
    generalized_sinkhorn,
)
from mfjko.jko.step_types import SinkhornOptions, StepDiagnostics, _Caps
from mfjko.objective import loss_from_features
from mfjko.problem import GridProblem

Array = jax.Array

__all__ = [
    "JKOSolverOptions",
    "JKOState",
    "JKODiagnostics",
    "solve_step",
    "solve_step_batch",
    "jko_step",
    "grid_objective",
]


@dataclass(frozen=True)
class _EpsScaling(_Caps):
    """The ε-scaling fields, placed after the caps (:class:`~mfjko.jko.step_types._Caps`)."""

    eps_scaling: float | None = None
    eps_start_ratio: float = 64.0
    stage_tol: float = 1e-4


@dataclass(frozen=True)
class JKOSolverOptions(SinkhornOptions, _EpsScaling):
    """Settings of the generalized Sinkhorn solver (hashable: static under jit).

    The :class:`~mfjko.jko.step_types.SinkhornOptions` of the balanced step, with ε-scaling;
    fields in the order tol … newton_max_iter, eps_scaling … stage_tol, anderson_depth …
    (the ``methods.jko`` config keys).

    tol: stop when the second-marginal error ‖b ⊙ Kᵀa − q‖₁ ≤ tol.
    max_iter: Sinkhorn iteration cap (over all ε stages).
    newton_tol: KL-prox Newton stops at ‖∇H‖₂ ≤ newton_tol·max(1, ‖y‖₂).
    newton_max_iter: Newton iteration cap per prox.
    eps_scaling: None, or a factor in (0, 1): within a step, solve for
        ε_i = max(ε, eps_start_ratio·ε·factor^i) in turn, each stage to ``stage_tol``
        (a cold-start aid; warm-started steps should not need it).
    eps_start_ratio: ε_0/ε of the ε-scaling schedule.
    stage_tol: marginal error at which an intermediate ε stage ends.
    anderson_depth: m ≥ 2 mixes the last m fixed-point iterates of the KL dual g
        (Anderson acceleration); 0 gives plain generalized Sinkhorn.
    on_failure: "raise" (ConvergenceError) or "warn" (warnings.warn + converged=False)
        when a step misses tol or produces non-finite values.
    debias: solve the debiased step argmin_p W_ε(p, q) − (ε/2)H(p) + 2τF(p) (docs/MATH.md
        "Debiased entropic JKO"): the entropy's first-order diffusion D = ε/(4τ) is
        removed, leaving O(ε²) Fisher-type terms; solved by
        :func:`mfjko.jko.sinkhorn.debiased_sinkhorn` (Anderson on log a ∈ ℝᴺ).
    debias_anderson_depth: the Anderson depth of the debiased fixed point (its state is
        N-dimensional, with more slow modes than g's: 10 by default; 0 gives the plain
        damped map); ``anderson_depth`` applies to the standard step only.
    """

    def __post_init__(self):
        super().__post_init__()  # the shared fields
        if self.eps_scaling is not None and not (0.0 < self.eps_scaling < 1.0):
            raise ValueError(f"eps_scaling must be None or in (0, 1), got {self.eps_scaling}")
        if not (self.eps_start_ratio >= 1.0):
            raise ValueError(f"eps_start_ratio must be ≥ 1, got {self.eps_start_ratio}")


class JKOState(eqx.Module):
    """Warm-start state carried across JKO steps.

    g: (n,) dual variable of the KL-prox; it determines the a-potential,
       f = ε log a = −2τ(λv/2 + Φᵀg), independently of ε, hence warm-starts a (and b,
       which the first half-iteration recomputes exactly from a).
    f, psi: (N,) ε-scaled log-potentials ε log a, ε log b of the last plan (inspection).
    """

    g: Array
    f: Array
    psi: Array


class JKODiagnostics(StepDiagnostics):
    """Per-step figures (scalars) of the balanced step.

    The :class:`~mfjko.jko.step_types.StepDiagnostics` with mass_error and drift_ratio,
    declared in this order (the order of the metrics columns).

    sinkhorn_iterations, marginal_error (‖b ⊙ Kᵀa − q‖₁ at exit), newton_total and
    newton_max (KL-prox Newton iterations), newton_residual (largest final ‖∇H‖),
    objective F(p), step_objective W_ε(p, q) + 2τF(p), mass_error |Σp − 1| before
    renormalization relative to Σq, converged (bool), drift_ratio ρ (the pinning
    diagnostic: RMS barycentric displacement of the step's plan over τ·RMS GD speed
    under q, docs/MATH.md "Pinning"; ρ ≈ 1 when mass moves as GD's velocity field would
    move it, ρ ≈ 0 when the grid pins it; NaN without a parametrization).
    """

    sinkhorn_iterations: Array
    marginal_error: Array
    newton_total: Array
    newton_max: Array
    newton_residual: Array
    objective: Array
    step_objective: Array
    mass_error: Array
    converged: Array
    drift_ratio: Array


def grid_objective(p, phi, y, v, lam):
    """F(p) = (1/(2n))‖Φp − y‖² + (λ/2) vᵀp (:func:`mfjko.objective.loss_from_features`)."""
    return loss_from_features(phi, p, y, v, lam)


def _depth(options: JKOSolverOptions) -> int:
    """The Anderson depth of the step's fixed point (static)."""
    return options.debias_anderson_depth if options.debias else options.anderson_depth


def _controls(options: JKOSolverOptions, eps) -> SinkhornControls:
    """The options that may be traced (changing them does not recompile)."""
    factor = 1.0 if options.eps_scaling is None else options.eps_scaling
    ratio = 1.0 if options.eps_scaling is None else options.eps_start_ratio
    return SinkhornControls(
        tol=jnp.asarray(options.tol),
        max_iter=jnp.asarray(options.max_iter),
        newton_tol=jnp.asarray(options.newton_tol),
        newton_max_iter=jnp.asarray(options.newton_max_iter),
        eps_start=eps * jnp.asarray(ratio),
        eps_factor=jnp.asarray(factor),
        stage_tol=jnp.asarray(options.stage_tol),
    )


def _solve_impl(grid: GridProblem, q, tau, eps, g0, controls, eps_scaling: bool, depth: int,
                debias: bool = False):
    dtype = jnp.float64
    q = jnp.asarray(q, dtype)
    log_q = jnp.where(q > 0, jnp.log(jnp.where(q > 0, q, 1.0)), -jnp.inf)
    geom = grid.geom
    if not eps_scaling:
        # ε is fixed: build the kernel operator (e.g. the factor kernels) once, outside
        # the Sinkhorn while_loop.
        op = geom.lse_operator(eps)
        apply_lse = lambda u, e: op(u)
    else:
        apply_lse = geom.apply_lse  # ε changes along the schedule
    data = StepData(q=q, log_q=log_q, phi=grid.phi, y=grid.y, shift=0.5 * grid.lam * grid.v)
    if debias:
        res = debiased_sinkhorn(apply_lse, data, tau, eps, g0, controls, depth)
    else:
        res = generalized_sinkhorn(apply_lse, data, tau, eps, g0, controls, depth)
    p_raw = jnp.exp(res.log_p)
    mass = jnp.sum(p_raw)
    q_mass = jnp.sum(q)
    p = p_raw * (q_mass / mass)  # πᵀ1 = q fixes the mass: Σp = Σq
    f = eps * res.log_a
    psi = jnp.where(res.col > 0, eps * res.log_b, 0.0)
    # W_ε of the returned plan π = diag(a)K diag(b): since C_kl + ε log π_kl = f_k + h_l,
    # ⟨C,π⟩ + εΣπ(log π − 1) = ⟨π1, f⟩ + ⟨πᵀ1, ψ⟩ − ε Σπ.
    w_eps = jnp.dot(p_raw, jnp.where(p_raw > 0, f, 0.0)) + jnp.dot(res.col, psi) - eps * mass
    F = grid.objective(p)
    step_obj = w_eps + 2.0 * tau * F
    if debias:  # − (ε/2)H(p), H(p) = Σ p(log p − 1) (the −1 is a constant: Σp = Σq)
        step_obj = step_obj - 0.5 * eps * jnp.sum(
            jnp.where(p_raw > 0, p_raw * (res.log_p - 1.0), 0.0))
    # reference plan of the drift ratio: the bare kernel (a = 1) for Peyré's step; for the
    # debiased one the F = 0 step's a ≈ q^{1/2} (its un-blurring is not drift)
    log_a_ref = (0.5 * jnp.maximum(log_q, jnp.log(jnp.finfo(dtype).tiny)) if debias
                 else jnp.zeros_like(log_q))
    ratio = _drift_ratio(grid, q, res.log_a, tau, apply_lse, eps, log_a_ref)
    finite = jnp.all(jnp.isfinite(p)) & jnp.isfinite(w_eps) & jnp.all(jnp.isfinite(res.g))
    converged = finite & (res.marginal_error <= controls.tol) & (res.final_eps <= eps)
    diag = JKODiagnostics(
        sinkhorn_iterations=res.iterations,
        marginal_error=res.marginal_error,
        newton_total=res.newton_total,
        newton_max=res.newton_max,
        newton_residual=res.newton_residual,
        objective=F,
        step_objective=step_obj,
        mass_error=jnp.abs(mass - q_mass) / q_mass,
        converged=converged,
        drift_ratio=ratio,
    )
    return p, JKOState(g=res.g, f=f, psi=psi), diag


_solve = eqx.filter_jit(_solve_impl)


@eqx.filter_jit
def _solve_batch(grid: GridProblem, q, tau, eps, g0, controls, eps_scaling: bool, depth: int,
                 debias: bool = False):
    """:func:`_solve_impl` vmapped over a batch of (q, ε, g0, controls)."""
    return jax.vmap(lambda q_, e_, g_, c_: _solve_impl(grid, q_, tau, e_, g_, c_, eps_scaling,
                                                       depth, debias))(q, eps, g0, controls)


def solve_step_batch(grid: GridProblem, q, tau: float, eps, state: JKOState | None = None,
                     options: JKOSolverOptions | None = None
                     ) -> tuple[Array, JKOState, JKODiagnostics]:
    r"""B JKO steps on one grid at once, differing in ε (and their weights).

    One compiled program (vmap; the kernel applications contract the whole batch per axis).

    Args:
      grid: the :class:`~mfjko.problem.GridProblem`.
      q: (B, N) previous weights.
      tau: the common JKO step τ (mean-field time).
      eps: (B,) entropic ε of each member (units of the cost).
      state: batched warm start (fields with a leading B axis) or None.
      options: the common :class:`JKOSolverOptions`.

    Returns:
      (p (B, N), batched :class:`JKOState`, batched :class:`JKODiagnostics`); a member
      missing ``options.tol`` raises or warns as :func:`solve_step`.
    """
    options = JKOSolverOptions() if options is None else options
    q = jnp.asarray(q, jnp.float64)
    B, n = q.shape[0], grid.phi.shape[0]
    eps = jnp.asarray(eps, jnp.float64).reshape(B)
    g0 = jnp.zeros((B, n)) if state is None else jnp.asarray(state.g, jnp.float64)
    controls = jax.tree.map(lambda x: jnp.broadcast_to(x, (B,)), _controls(options, eps))
    p, new_state, diag = _solve_batch(grid, q, jnp.asarray(float(tau)), eps, g0, controls,
                                      options.eps_scaling is not None, _depth(options),
                                      options.debias)
    bad = np.flatnonzero(~np.asarray(diag.converged))
    if bad.size:
        msg = (f"entropic JKO step did not converge for batch members {bad.tolist()} (ε = "
               f"{np.asarray(eps)[bad].tolist()}): marginal errors "
               f"{np.asarray(diag.marginal_error)[bad].tolist()} (tol {options.tol:.1e})")
        report_failure(msg, options.on_failure)
    return p, new_state, diag


def _drift_ratio(grid: GridProblem, q, log_a, tau, apply_lse, eps, log_a_ref=None):
    """Drift ratio ρ = (Σ_l q_l ‖B_l − B⁰_l‖²)^{1/2} / (τ (Σ_l q_l ‖v_l‖²)^{1/2}).

    B_l = Σ_k π_kl θ_k / Σ_k π_kl is the barycentre of where the plan π = diag(a)K diag(b)
    sends the mass of θ_l, B⁰_l the same for the bare kernel (a = 1: the entropic blur,
    whose barycentre moves only where the grid's box truncates K; ``log_a_ref``, if
    given, replaces a = 1: the debiased step's F = 0 plan, a ≈ q^{1/2}) and v_l = −∇F′(q)(θ_l),
    restricted to the directions the grid can move along. K is symmetric: 2(D + 1) kernel
    applications. NaN where GD's velocity field vanishes (τ‖v‖ ≤ 1e-12 × the grid's extent).
    """
    if grid.problem is None:
        return jnp.asarray(jnp.nan)
    points = grid.geom.points
    low = jnp.min(points, axis=0) - 1.0  # shift every coordinate to ≥ 1: logs exist
    log_shifted = jnp.log(points - low)

    def barycentres(log_w):
        norm = apply_lse(log_w, eps)
        num = jax.vmap(lambda c: apply_lse(log_w + c, eps), in_axes=1, out_axes=1)(log_shifted)
        return jnp.exp(num - norm[:, None]) + low

    ref = jnp.zeros_like(log_a) if log_a_ref is None else log_a_ref
    shift = barycentres(log_a) - barycentres(ref)
    mass = jnp.sum(q)
    drift2 = jnp.sum(q * jnp.sum(shift**2, axis=1)) / mass
    prob = grid.problem
    v = prob.param.tangent(points, prob.first_variation_grad(points, q, points))
    mask = grid.geom.movable_mask() if hasattr(grid.geom, "movable_mask") else None
    if mask is not None:
        v = jnp.where(mask, v, 0.0)
    speed2 = jnp.sum(q * jnp.sum(v * v, axis=1)) / mass
    # no velocity to compare with (e.g. an initialization at scale → 0, where ∇F′ → 0):
    # the ratio is undefined, not huge
    travel = tau * jnp.sqrt(speed2)
    floor = 1e-12 * jnp.max(jnp.ptp(points, axis=0))  # of the grid's extent
    return jnp.where(travel > floor, jnp.sqrt(drift2) / jnp.maximum(travel, floor), jnp.nan)


def solve_step(grid: GridProblem, q, tau: float, eps: float, state: JKOState | None = None,
               options: JKOSolverOptions | None = None
               ) -> tuple[Array, JKOState, JKODiagnostics]:
    r"""One entropic JKO step p = argmin_{p ∈ simplex} W_ε(p, q) + 2τF(p) on a grid problem.

    Args:
      grid: the :class:`~mfjko.problem.GridProblem` (geometry, Φ, y, V, λ).
      q: (N,) previous weights (nonnegative, not checked here: see :func:`jko_step`).
      tau: JKO step τ (mean-field time).
      eps: entropic ε (units of the cost, θ-distance²).
      state: warm start from the previous step (None: cold start, g = 0).
      options: :class:`JKOSolverOptions`.

    Returns:
      (p (N,) with Σp = Σq, new :class:`JKOState`, :class:`JKODiagnostics`). If the
      marginal error misses ``options.tol`` or a value is non-finite, raises
      :class:`ConvergenceError` (on_failure="raise") or warns and sets converged=False.
    """
    options = JKOSolverOptions() if options is None else options
    n = grid.phi.shape[0]
    g0 = jnp.zeros(n) if state is None else jnp.asarray(state.g, jnp.float64)
    if g0.shape != (n,):
        raise ValueError(f"state.g has shape {g0.shape}, expected ({n},)")
    # Scalars travel as arrays so that new (τ, ε) values do not trigger recompilation.
    tau, eps = jnp.asarray(float(tau)), jnp.asarray(float(eps))
    p, new_state, diag = _solve(grid, jnp.asarray(q, jnp.float64), tau, eps, g0,
                                _controls(options, eps), options.eps_scaling is not None,
                                _depth(options), options.debias)
    if not bool(diag.converged):
        d = diag.as_dict()
        msg = (
            f"entropic JKO step did not converge: marginal error {d['marginal_error']:.3e} "
            f"(tol {options.tol:.1e}) after {d['sinkhorn_iterations']} Sinkhorn iterations, "
            f"Newton residual {d['newton_residual']:.3e}, mass error {d['mass_error']:.3e}, "
            f"finite p: {bool(jnp.all(jnp.isfinite(p)))}"
        )
        report_failure(msg, options.on_failure)
    return p, new_state, diag


def check_grid_inputs(grid: GridProblem, q, tau, eps) -> None:
    """ValueError naming the input when q, Φ, y, V, λ, τ or ε are malformed."""
    N = grid.geom.points.shape[0]
    q = jnp.asarray(q, jnp.float64)
    if q.shape != (N,):
        raise ValueError(f"q must have shape (N,) = ({N},) of the geometry, got {q.shape}")
    check_step_data(q, grid.phi, grid.y, grid.v, float(grid.lam), float(tau), float(eps))


def jko_step(geom, q, phi, y, v, lam: float, tau: float, eps: float,
             state: JKOState | None = None, options: JKOSolverOptions | None = None
             ) -> tuple[Array, JKOState, JKODiagnostics]:
    r"""One entropic JKO step on plain arrays (stable functional API; :func:`solve_step`).

    Args:
      geom: a geometry (``points`` (N, D), ``apply_lse(u, eps)``).
      q: (N,) previous weights (nonnegative; need not sum to 1: ``signed`` grids carry
        mass E|α|, and p keeps the mass of q since πᵀ1 = q fixes Σp = Σq).
      phi: (n, N) features Φ[j, k] = m(θ_k; x_j).
      y: (n,) targets.
      v: (N,) weight-decay potential V(θ_k).
      lam: weight decay λ ≥ 0.
      tau: JKO step τ (mean-field time).
      eps: entropic ε (units of the cost, θ-distance²).
      state: warm start (None: cold start).
      options: :class:`JKOSolverOptions` (None: defaults).

    Returns:
      (p, new :class:`JKOState`, :class:`JKODiagnostics`) as :func:`solve_step`.
    """
    grid = GridProblem.from_arrays(geom, phi, y, v, float(lam))
    check_grid_inputs(grid, q, tau, eps)
    return solve_step(grid, q, tau, eps, state, options)
