r"""One meshless JKO step: train a convex potential ψ so that μ_{k+1} = (∇ψ)#μ_k.

On samples θ_1..θ_m of μ_k, ψ minimizes (docs/MATH.md, "Meshless JKO with input-convex
networks") J(ψ) = mean_i ‖∇ψ(θ_i) − θ_i‖²/(2τ) + F(μ̂_{∇ψ}) − D mean_i log det ∇²ψ(θ_i),
the JKO functional of F + D ∫μ log μ (mean-field Langevin at diffusion D). F is the
problem's own (:class:`ProblemEnergy` calls ``MeanFieldProblem.particle_objective``). The
log-det is exact (Cholesky) or stochastic (Hutchinson probes + Lanczos). ψ is trained by
optax (Adam, or L-BFGS directions with Armijo backtracking) in one jitted while loop.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from mfjko.icnn.network import ICNN, init_icnn
from mfjko.problem import MeanFieldProblem

Array = jax.Array

__all__ = [
    "ICNNOptions",
    "ICNNStepDiagnostics",
    "ConvergenceWarning",
    "resolve_entropy",
    "make_optimizer",
    "init_potential",
    "jko_loss",
    "logdet_exact",
    "logdet_lanczos",
    "icnn_jko_step",
    "icnn_prox_step",
    "ProblemEnergy",
    "QuadraticEnergy",
    "lanczos_logdet_solve",
    "step_checks",
    "strong_types",
]

ENTROPIES = ("auto", "none", "exact", "stochastic")
OPTIMIZERS = ("lbfgs", "adam")


class ConvergenceWarning(RuntimeWarning):
    """An inner ICNN optimization stopped at max_iter above its tolerance."""


@dataclass(frozen=True)
class ICNNOptions:
    """Settings of the ICNN JKO step (hashable: static under jit).

    Network (:func:`mfjko.icnn.network.init_icnn`): ``hidden`` widths, ``delta``
    strong-convexity floor (∇²ψ ⪰ δI), ``init_scale`` (output weight at init: ∇ψ ≈
    identity), ``input_scale`` (typical ‖θ‖), ``sharpness`` β of the activation
    softplus(βu)/β (β = 4 follows the ReLU kinks of the mean-field map better than 1).
    Entropy (used only when the diffusion D > 0): ``"auto"`` = exact if Θ's dimension
    ≤ ``exact_max_dim`` else stochastic; ``"exact"``; ``"stochastic"`` with ``n_probes``
    Rademacher probes per sample and ``lanczos_steps`` Lanczos steps (capped at the
    dimension, where Lanczos is exact and only the Hutchinson error remains); ``"none"``
    only for D = 0.
    Inner solver: ``optimizer`` ``"lbfgs"`` (optax.scale_by_lbfgs directions, Armijo
    backtracking; deterministic losses only) or ``"adam"`` (cosine-decayed from
    ``learning_rate`` over ``max_iter``, runs ``max_iter`` iterations; needed by the
    stochastic entropy). L-BFGS stops after ``min_iter`` evaluations at the earliest, when
    ‖∇_params J‖₂ ≤ ``tol`` or J decreased by ≤ ``ftol``·max(1, |J|) over the last 50
    evaluations (converged), or at ``max_iter`` evaluations (unconverged: warns).
    ``warm_start``: start ψ_k from ψ_{k−1} (else from the same fresh init every step);
    ``carry_optimizer_state``: keep Adam's moments across steps.
    Checks: the smallest eigenvalue of ∇²ψ on the first ``check_samples`` samples and the
    smallest monotonicity ratio ⟨∇ψ(a) − ∇ψ(b), a − b⟩/‖a − b‖² over ``check_pairs``
    random sample pairs. ``on_failure``: ``"warn"`` (ConvergenceWarning) or ``"raise"``
    (RuntimeError) when the inner loop ends unconverged; non-finite results always raise.
    """

    hidden: tuple[int, ...] = (32, 32)
    delta: float = 1e-3
    init_scale: float = 1e-2
    input_scale: float = 1.0
    sharpness: float = 4.0
    entropy: str = "auto"
    exact_max_dim: int = 32
    n_probes: int = 1
    lanczos_steps: int = 16
    optimizer: str = "lbfgs"
    learning_rate: float = 1e-2
    max_iter: int = 1000
    min_iter: int = 1
    tol: float = 1e-6
    ftol: float = 1e-7
    warm_start: bool = True
    carry_optimizer_state: bool = False
    check_samples: int = 256
    check_pairs: int = 1024
    on_failure: str = "warn"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        if not (0.0 < self.delta < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        for name in ("init_scale", "input_scale", "learning_rate", "tol", "ftol", "sharpness"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if self.entropy not in ENTROPIES:
            raise ValueError(f"entropy must be one of {ENTROPIES}, got {self.entropy!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("exact_max_dim", "n_probes", "lanczos_steps", "max_iter", "min_iter",
                     "check_samples", "check_pairs"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.min_iter > self.max_iter:
            raise ValueError(f"min_iter = {self.min_iter} exceeds max_iter = {self.max_iter}")
        if self.entropy == "stochastic" and self.optimizer == "lbfgs":
            raise ValueError("entropy='stochastic' gives noisy gradients: use optimizer='adam'")
        if self.on_failure not in ("warn", "raise"):
            raise ValueError(f"on_failure must be 'warn' or 'raise', got {self.on_failure!r}")


def resolve_entropy(options: ICNNOptions, diffusion: float, dim: int) -> str:
    """The entropy estimator actually used: "none" when D = 0, else exact/stochastic."""
    if diffusion == 0.0:
        return "none"
    if options.entropy == "none":
        raise ValueError(
            f"diffusion D = {diffusion} > 0 needs an entropy estimator: set entropy to "
            "'exact', 'stochastic' or 'auto'"
        )
    if options.entropy == "auto":
        mode = "exact" if dim <= options.exact_max_dim else "stochastic"
        if mode == "stochastic" and options.optimizer == "lbfgs":
            raise ValueError(
                f"entropy='auto' picks the stochastic estimator at dimension {dim} > "
                f"exact_max_dim = {options.exact_max_dim}: use optimizer='adam' (or raise "
                "exact_max_dim)"
            )
        return mode
    return options.entropy


def make_optimizer(options: ICNNOptions) -> optax.GradientTransformation:
    """The optax transformation of the inner loop (L-BFGS: its direction part)."""
    if options.optimizer == "lbfgs":
        return optax.scale_by_lbfgs()
    schedule = optax.cosine_decay_schedule(options.learning_rate, options.max_iter, alpha=1e-2)
    return optax.adam(schedule)


def init_potential(key: Array, dim: int, options: ICNNOptions) -> ICNN:
    """A fresh ψ for Θ = ℝ^dim with the options' architecture (∇ψ ≈ identity)."""
    return init_icnn(key, dim, options.hidden, options.delta, options.init_scale,
                     options.input_scale, options.sharpness)


# ---------------------------------------------------------------------------------------
# Energies F of the pushed samples: hashable callables energy(T, args) -> F(μ̂), so that
# jit caches one program per energy kind while the data (args) stay traced.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemEnergy:
    """F(μ̂) of a :class:`~mfjko.problem.MeanFieldProblem` for μ̂ = (1/m) Σ δ_{T_i}.

    The problem is the traced argument: ``ProblemEnergy()(T, problem)`` =
    ``problem.particle_objective(T)`` (the one place F is computed).
    """

    def __call__(self, T, problem):
        """F of the uniform measure on the rows of T (m, D)."""
        return problem.particle_objective(T)


@dataclass(frozen=True)
class QuadraticEnergy:
    """Potential energy F(μ̂) = mean_i ½ T_iᵀ A T_i + bᵀT_i; args = (A (D, D), b (D,))."""

    def __call__(self, T, args):
        """mean_i ½ T_iᵀ A T_i + bᵀT_i for T (m, D)."""
        A, b = args
        return jnp.mean(0.5 * jnp.einsum("md,de,me->m", T, A, T) + T @ b)


# ---------------------------------------------------------------------------------------
# Log-determinants of ∇²ψ
# ---------------------------------------------------------------------------------------


def logdet_exact(psi: ICNN, thetas: Array, cache: dict | None = None) -> Array:
    """Log det ∇²ψ(θ_i), shape (m,), by Cholesky (∇²ψ ⪰ δI is SPD by construction)."""
    L = jnp.linalg.cholesky(psi.hessian_batch(thetas, cache))
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def lanczos_logdet_solve(matvec, Z: Array, k: int) -> tuple[Array, Array]:
    """K Lanczos steps per row on SPD operators, batched, with full reorthogonalization.

    Args: ``matvec`` maps V (m, D) to (H_i v_i)_i; Z (m, D) starting vectors; k ≤ D.
    Returns: (zᵢᵀ log(H_i) zᵢ (m,), H_i⁻¹ zᵢ (m, D)), both from the Krylov space
    K_k(H_i, zᵢ): ‖z‖² e₁ᵀ log(T) e₁ and ‖z‖ Q T⁻¹ e₁ with T = QᵀHQ (exact when the space
    is H-invariant, e.g. k = D; the solve is then the conjugate-gradient iterate k).
    """
    m, D = Z.shape
    beta0 = jnp.sqrt(jnp.sum(Z * Z, axis=1))
    tiny = 1e-12 * beta0

    def body(j, carry):
        Q, alpha, beta, q, q_prev, b_prev, live = carry
        Q = Q.at[j].set(q)
        w = matvec(q)
        a = jnp.sum(q * w, axis=1)
        w = w - a[:, None] * q - b_prev[:, None] * q_prev
        for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
            w = w - jnp.einsum("kmd,km->md", Q, jnp.einsum("kmd,md->km", Q, w))
        b = jnp.sqrt(jnp.sum(w * w, axis=1))
        # After a breakdown (an invariant subspace is found) the remaining rows are
        # decoupled (β = 0) with α = 1: they carry no weight on e₁ and log(1) = 0.
        alpha = alpha.at[j].set(jnp.where(live, a, 1.0))
        new_live = live & (b > tiny)
        beta = beta.at[j].set(jnp.where(new_live, b, 0.0))
        q_next = jnp.where(new_live[:, None], w / jnp.where(new_live, b, 1.0)[:, None], 0.0)
        return Q, alpha, beta, q_next, q, jnp.where(new_live, b, 0.0), new_live

    init = (jnp.zeros((k, m, D)), jnp.zeros((k, m)), jnp.zeros((k, m)), Z / beta0[:, None],
            jnp.zeros((m, D)), jnp.zeros(m), jnp.ones(m, bool))
    Q, alpha, beta, *_ = lax.fori_loop(0, k, body, init)
    eye = jnp.eye(k)
    off = jnp.eye(k, k=1)
    Tm = (alpha.T[:, :, None] * eye + beta.T[:, :, None] * off
          + beta.T[:, None, :] * off.T)  # (m, k, k); β_j couples rows j and j + 1
    lam, U = jnp.linalg.eigh(Tm)
    lam = jnp.maximum(lam, 1e-300)
    u0 = U[:, 0, :]
    quad = beta0**2 * jnp.sum(u0 * u0 * jnp.log(lam), axis=1)
    coef = jnp.einsum("mij,mj->mi", U, u0 / lam)  # T⁻¹e₁ (m, k)
    solve = beta0[:, None] * jnp.einsum("kmd,mk->md", Q, coef)
    return quad, solve


def logdet_lanczos(psi: ICNN, thetas: Array, probes: Array, k: int,
                   cache: dict | None = None) -> tuple[Array, Array]:
    """Stochastic log det ∇²ψ(θ_i): Hutchinson (E zᵀ log(H) z = tr log H) + Lanczos.

    Args: thetas (m, D); probes (P, m, D) Rademacher vectors; k Lanczos steps (≤ D).
    Returns: (estimates (m,), the mean over the P probes of zᵀ log(H) z; solves
    (P, m, D), H⁻¹z).
    """
    cache = psi.cache(thetas) if cache is None else cache
    mv = partial(psi.hvp_batch, cache)
    quad, solve = jax.vmap(lambda Z: lanczos_logdet_solve(mv, Z, k))(probes)
    return jnp.mean(quad, axis=0), solve


# ---------------------------------------------------------------------------------------
# The step objective
# ---------------------------------------------------------------------------------------


def jko_loss(psi, energy, energy_args, thetas, tau, diffusion, entropy: str, probes=None,
             lanczos_steps: int = 16):
    """(surrogate, (J, parts)) of ψ on the samples ``thetas`` (m, D) (module docstring).

    F = ``energy(T, energy_args)`` (e.g. :class:`ProblemEnergy`).

    ``surrogate`` has the gradient of J (for "stochastic" an unbiased estimate:
    −D·mean_i vᵢᵀ ∂(∇²ψ(θ_i) zᵢ) with vᵢ = H⁻¹zᵢ frozen, E zzᵀ = I); J is the value (for
    "stochastic" with the Lanczos-quadrature log-det). ``parts`` = dict(transport =
    mean‖∇ψ(θ) − θ‖²/(2τ), F = F(push-forward), logdet = mean log det ∇²ψ(θ_i)).
    """
    cache = psi.cache(thetas)
    T = psi.grad_batch(thetas, cache)
    transport = jnp.mean(jnp.sum((T - thetas) ** 2, axis=1)) / (2.0 * tau)
    F = energy(T, energy_args)
    if entropy == "none":
        logdet = jnp.zeros(())
        surrogate = transport + F
    elif entropy == "exact":
        logdet = jnp.mean(logdet_exact(psi, thetas, cache))
        surrogate = transport + F - diffusion * logdet
    else:
        frozen = lax.stop_gradient(psi)
        est, solves = logdet_lanczos(frozen, thetas, probes, lanczos_steps,
                                     lax.stop_gradient(cache))
        logdet = jnp.mean(est)
        solves = lax.stop_gradient(solves)
        hz = jax.vmap(lambda Z: psi.hvp_batch(cache, Z))(probes)  # (P, m, D)
        sur = jnp.mean(jnp.sum(solves * hz, axis=-1))
        # value: logdet (Lanczos quadrature); gradient: that of the surrogate vᵀ(Hz)
        surrogate = transport + F - diffusion * (logdet + sur - lax.stop_gradient(sur))
    J = transport + F - diffusion * logdet
    return surrogate, (J, {"transport": transport, "F": F, "logdet": logdet})


# ---------------------------------------------------------------------------------------
# The jitted inner loop
# ---------------------------------------------------------------------------------------


class ICNNStepDiagnostics(eqx.Module):
    """Per-step figures. Scalars unless noted.

    iterations: loss-and-gradient evaluations of the inner loop (its cost);
    loss_curve (max_iter,): J of the current iterate after each evaluation (L-BFGS: of the
    last accepted point, so non-increasing; Adam: at the evaluated point; NaN beyond
    ``iterations``); loss: J of the returned ψ; grad_norm: ‖∇_params J‖₂ there;
    converged: ``grad_norm ≤ tol`` or the ``ftol`` plateau test passed (L-BFGS), or Adam
    ran its ``max_iter`` (its schedule ends there); transport, objective (F of μ_{k+1}),
    logdet (mean log det ∇²ψ): the parts of J; displacement: mean ‖∇ψ(θ_i) − θ_i‖;
    min_hessian_eig: smallest eigenvalue of ∇²ψ on the checked samples; min_monotonicity:
    smallest ⟨∇ψ(a) − ∇ψ(b), a − b⟩/‖a − b‖² over the checked pairs (both ≥ δ for a
    δ-convex ψ); euler_residual: ‖(∇ψ(θ) − θ)/τ − v_{μ_{k+1}}(∇ψ(θ))‖/‖v‖ (root mean
    squares over the samples, v = −∇F'), the backward-Euler residual of the drift (0 for
    an exact, unrestricted D = 0 step).
    """

    iterations: Array
    loss_curve: Array
    loss: Array
    grad_norm: Array
    converged: Array
    transport: Array
    objective: Array
    logdet: Array
    displacement: Array
    min_hessian_eig: Array
    min_monotonicity: Array
    euler_residual: Array

    def as_dict(self) -> dict:
        """The fields as floats (``loss_curve`` as an array)."""
        out = {}
        for f in fields(self):
            v = np.asarray(getattr(self, f.name))
            out[f.name] = v if v.ndim else v.item()
        return out


def strong_types(tree):
    """The same pytree with weakly typed leaves made strong.

    jit then sees one signature whether a leaf comes from Python scalars (init) or from
    a previous compiled step.
    """
    return jax.tree_util.tree_map(
        lambda x: x.astype(x.dtype) if isinstance(x, jax.Array) else x, tree
    )


_strong = eqx.filter_jit(strong_types)


@eqx.filter_jit
def _fresh_state(options, psi):
    """(ψ with strong types, a fresh optimizer state), in one compiled program."""
    psi = strong_types(psi)
    return psi, strong_types(make_optimizer(options).init(eqx.filter(psi, eqx.is_inexact_array)))


def _tree_norm(tree) -> Array:
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(tree)))


def _tree_vdot(a, b) -> Array:
    return sum(jnp.sum(x * y) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _rademacher(key, shape):
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0)


# The L-BFGS loop evaluates J and ∇J exactly once per iteration (one trace of the loss,
# a third of the compile time of optax.lbfgs with its line search): an iteration either
# accepts the trial point x − t·d (Armijo: J decreases by ≥ 1e-4·t·⟨g, d⟩) and computes
# the next direction d = P g with optax.scale_by_lbfgs, or shrinks t by the minimizer of
# the quadratic interpolant (clipped to [0.1t, 0.5t]). A direction that is not a descent
# direction (negative-curvature pair in the memory) is replaced by the scaled gradient.
_ARMIJO = 1e-4
_FTOL_WINDOW = 50


# Long on purpose (≈95 lines): the inner optimization of one ICNN JKO step under one jit,
# L-BFGS (an Armijo/quadratic-backtracking while_loop) or Adam (a fori_loop) over the same
# loss closure (value_and_grad, the probes); the L-BFGS body is a single state machine
# whose accept/reject branches share the carry.
@partial(jax.jit, static_argnames=("energy", "options", "entropy"))
def _train(energy, options, entropy, psi, opt_state, thetas, energy_args, tau, diffusion, key):
    params, static = eqx.partition(psi, eqx.is_inexact_array)
    m, D = thetas.shape
    k_lanczos = min(options.lanczos_steps, D)
    n_it = options.max_iter

    def probes_at(i):
        if entropy != "stochastic":
            return None
        return _rademacher(jax.random.fold_in(key, i), (options.n_probes, m, D))

    def loss_fn(p, probes):
        return jko_loss(eqx.combine(p, static), energy, energy_args, thetas, tau, diffusion,
                        entropy, probes, k_lanczos)

    vg = jax.value_and_grad(loss_fn, has_aux=True)
    curve0 = jnp.full((n_it,), jnp.nan)

    if options.optimizer == "lbfgs":
        lbfgs = optax.scale_by_lbfgs()
        zero = jax.tree_util.tree_map(jnp.zeros_like, params)

        def cond(c):
            it, done = c[0], c[-1]
            return (it < n_it) & ~done

        def body(c):
            it, x, fx, gx, d, t, gtd, ls, curve, parts, _ = c
            trial = jax.tree_util.tree_map(lambda a, b: a - t * b, x, d)
            (f, (J, parts_t)), g = vg(trial, None)
            ok = jnp.isfinite(f) & (f <= fx - _ARMIJO * t * gtd)
            accept = (it == 0) | ok

            def on_accept(_):
                d_new, ls_new = lbfgs.update(g, ls, trial)
                gtd_new = _tree_vdot(g, d_new)
                # a pair of negative curvature can make P indefinite: fall back to the
                # gradient (scaled to norm ≤ 1) for this iteration
                descent = gtd_new > 0
                gn = _tree_norm(g)
                scale = jnp.minimum(1.0, 1.0 / gn)
                d_new = jax.tree_util.tree_map(
                    lambda u, v: jnp.where(descent, u, scale * v), d_new, g)
                gtd_new = jnp.where(descent, gtd_new, scale * gn * gn)
                return trial, f, g, d_new, jnp.ones(()), gtd_new, ls_new

            def on_reject(_):
                # minimizer of the quadratic through f(x), f'(x; −d) = −gtd and f(trial)
                curv = f - fx + t * gtd
                t_q = jnp.where(jnp.isfinite(f) & (curv > 0), gtd * t * t / (2.0 * curv),
                                0.1 * t)
                return x, fx, gx, d, jnp.clip(t_q, 0.1 * t, 0.5 * t), gtd, ls

            x, fx, gx, d, t, gtd, ls = lax.cond(accept, on_accept, on_reject, None)
            parts = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), parts_t, parts)
            curve = curve.at[it].set(jnp.where(it == 0, J, fx))
            gnorm = _tree_norm(gx)
            past = curve[jnp.maximum(it - _FTOL_WINDOW, 0)]
            plateau = (it >= _FTOL_WINDOW) & (past - fx <= options.ftol * jnp.maximum(1.0,
                                                                                    jnp.abs(fx)))
            stuck = t < 1e-14
            done = (it + 1 >= options.min_iter) & ((gnorm <= options.tol) | plateau | stuck)
            return it + 1, x, fx, gx, d, t, gtd, ls, curve, parts, done

        parts0 = {k: jnp.zeros(()) for k in ("transport", "F", "logdet")}
        init = (jnp.asarray(0), params, jnp.asarray(jnp.inf), zero, zero, jnp.zeros(()),
                jnp.zeros(()), lbfgs.init(params), curve0, parts0, jnp.asarray(False))
        it, params, J, gx, _, t, _, _, curve, parts, _ = lax.while_loop(cond, body, init)
        gnorm = _tree_norm(gx)
        last = curve[jnp.maximum(it - 1, 0)]
        past = curve[jnp.maximum(it - 1 - _FTOL_WINDOW, 0)]
        plateau = (it > _FTOL_WINDOW) & (past - last <= options.ftol * jnp.maximum(1.0,
                                                                                  jnp.abs(last)))
        converged = (gnorm <= options.tol) | plateau
        psi = eqx.combine(params, static)
    else:
        opt = make_optimizer(options)

        def body(i, c):
            p, s, curve, _ = c
            (_, (J, _)), grad = vg(p, probes_at(i))
            updates, s = opt.update(grad, s, p)
            return optax.apply_updates(p, updates), s, curve.at[i].set(J), _tree_norm(grad)

        params, opt_state, curve, gnorm = lax.fori_loop(
            0, n_it, body, (params, opt_state, curve0, jnp.asarray(jnp.inf)))
        it = jnp.asarray(n_it)
        converged = jnp.asarray(True)
        psi = eqx.combine(params, static)
        # J at the returned ψ (the curve holds J before each update); stochastic log-det
        # with fresh probes
        _, (J, parts) = jko_loss(psi, energy, energy_args, thetas, tau, diffusion, entropy,
                                 probes_at(n_it + 1), k_lanczos)
    return psi, opt_state, it, curve, J, gnorm, converged, parts


@partial(jax.jit, static_argnames=("energy", "check_samples", "check_pairs"))
def step_checks(energy, psi, thetas, energy_args, tau, key, check_samples=256,
                check_pairs=1024):
    """(T = ∇ψ(θ), displacement, min_hessian_eig, min_monotonicity, euler_residual) of ψ.

    On the samples ``thetas`` (m, D) (definitions in ICNNStepDiagnostics); the velocity
    is v_i = −m ∇_{T_i} F(μ̂) = −∇F'(μ̂)(T_i).
    """
    m = thetas.shape[0]
    T = psi.grad_batch(thetas)
    disp = jnp.mean(jnp.sqrt(jnp.sum((T - thetas) ** 2, axis=1)))
    H = psi.hessian_batch(thetas[: min(check_samples, m)])
    min_eig = jnp.min(jnp.linalg.eigvalsh(H)[:, 0])
    ia, ib = jax.random.randint(key, (2, check_pairs), 0, m)
    ib = jnp.where(ia == ib, (ib + 1) % m, ib)
    da, dT = thetas[ia] - thetas[ib], T[ia] - T[ib]
    dd = jnp.sum(da * da, axis=1)
    ratio = jnp.where(dd > 0, jnp.sum(dT * da, axis=1) / jnp.where(dd > 0, dd, 1.0), jnp.inf)
    min_mono = jnp.min(ratio) if m > 1 else jnp.asarray(jnp.nan)
    v = -m * jax.grad(energy)(T, energy_args)
    res = (T - thetas) / tau - v
    euler = jnp.sqrt(jnp.sum(res * res) / jnp.maximum(jnp.sum(v * v), 1e-300))
    return T, disp, min_eig, min_mono, euler


def _check_scalars(tau, diffusion):
    for name, v, positive in (("tau", tau, True), ("diffusion", diffusion, False)):
        v = float(v)
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, "
                             f"got {v}")


def _checked_step_inputs(options, psi, thetas, tau, diffusion):
    """Validate :func:`icnn_prox_step`'s inputs; (options or the defaults, thetas as float64)."""
    options = ICNNOptions() if options is None else options
    if not isinstance(options, ICNNOptions):
        raise ValueError(f"options must be an ICNNOptions, got {type(options).__name__}")
    if not isinstance(psi, ICNN):
        raise ValueError(f"psi must be an ICNN, got {type(psi).__name__}")
    thetas = jnp.asarray(thetas, jnp.float64)
    if thetas.ndim != 2 or thetas.shape[1] != psi.dim or thetas.shape[0] < 2:
        raise ValueError(f"thetas must have shape (m, {psi.dim}) with m >= 2, got "
                         f"{thetas.shape}")
    if not bool(jnp.isfinite(thetas).all()):
        raise ValueError("thetas contains NaN or inf")
    _check_scalars(tau, diffusion)
    return options, thetas


def icnn_prox_step(energy, energy_args, psi: ICNN, thetas, tau, diffusion=0.0, key=None,
                   options: ICNNOptions | None = None, opt_state=None, warn: bool = True):
    """One ICNN JKO step of a generic energy F = ``energy(T, energy_args)``.

    Args:
      energy: a hashable callable, F of the empirical measure of the rows of T (m, D)
        (:class:`ProblemEnergy`, :class:`QuadraticEnergy`).
      energy_args: its traced argument (a MeanFieldProblem; (A, b) for the quadratic).
      psi: starting potential (ψ_{k−1} for a warm start, or :func:`init_potential`).
      thetas: (m, D) samples of μ_k, m ≥ 2.
      tau: τ > 0 (mean-field time).
      diffusion: D ≥ 0.
      key: PRNG key (stochastic log-det probes, monotonicity pairs).
      options: :class:`ICNNOptions`.
      opt_state: Adam state to continue (``carry_optimizer_state``).
      warn: emit the ConvergenceWarning here (the stepper collects them instead).

    Returns:
      (T (m, D) = ∇ψ(θ_i), psi, opt_state (Adam; None for L-BFGS), ICNNStepDiagnostics).
      Raises FloatingPointError on non-finite results; an unconverged inner loop warns
      (ConvergenceWarning) or raises RuntimeError (``on_failure="raise"``).
    """
    options, thetas = _checked_step_inputs(options, psi, thetas, tau, diffusion)
    entropy = resolve_entropy(options, float(diffusion), psi.dim)
    key = jax.random.PRNGKey(0) if key is None else key
    if options.optimizer == "lbfgs" or opt_state is None:
        psi, opt_state = _fresh_state(options, psi)
    else:
        psi, opt_state = _strong(psi), _strong(opt_state)
    k_train, k_check = jax.random.split(key)
    tau, diffusion = jnp.float64(tau), jnp.float64(diffusion)
    psi, opt_state, it, curve, J, gnorm, converged, parts = _train(
        energy, options, entropy, psi, opt_state, thetas, energy_args, tau, diffusion,
        k_train)
    T, disp, min_eig, min_mono, euler = step_checks(
        energy, psi, thetas, energy_args, tau, k_check, options.check_samples,
        options.check_pairs)
    diag = ICNNStepDiagnostics(
        iterations=it, loss_curve=curve, loss=J, grad_norm=gnorm, converged=converged,
        transport=parts["transport"], objective=parts["F"], logdet=parts["logdet"],
        displacement=disp, min_hessian_eig=min_eig, min_monotonicity=min_mono,
        euler_residual=euler)
    if not (bool(jnp.isfinite(T).all()) and bool(jnp.isfinite(J))):
        raise FloatingPointError(
            "ICNN JKO step produced non-finite values (lower learning_rate or tau)"
        )
    if not bool(converged):
        msg = (f"ICNN JKO step: inner {options.optimizer} stopped unconverged after "
               f"{int(it)} evaluations (‖∇J‖ = {float(gnorm):.3g} > tol = {options.tol:g}, "
               f"no plateau at ftol = {options.ftol:g})")
        if options.on_failure == "raise":
            raise RuntimeError(msg)
        if warn:
            warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    return T, psi, (opt_state if options.optimizer == "adam" else None), diag


def icnn_jko_step(problem: MeanFieldProblem, psi: ICNN, thetas, tau, diffusion=0.0, key=None,
                  options: ICNNOptions | None = None, opt_state=None, warn: bool = True):
    """One ICNN JKO step of the mean-field objective F of ``problem`` from samples of μ_k.

    Args:
      problem: a :class:`~mfjko.problem.MeanFieldProblem` on a Euclidean Θ (``neuron``,
        ``signed``, ``pm``; ``sphere`` raises: a gradient map leaves the sphere).
      psi: the starting potential (ψ_{k−1} for a warm start, or :func:`init_potential`).
      thetas: (m, D) samples of μ_k.
      tau: JKO step τ > 0 in mean-field time.
      diffusion: D ≥ 0.
      key: PRNG key (stochastic probes, monotonicity pairs).
      options: :class:`ICNNOptions`.
      opt_state: Adam state to continue.
      warn: emit the ConvergenceWarning here.

    Returns:
      (thetas_next (m, D) = ∇ψ(θ_i), psi, opt_state, :class:`ICNNStepDiagnostics`).
    """
    if not isinstance(problem, MeanFieldProblem):
        raise ValueError(f"problem must be a MeanFieldProblem, got {type(problem).__name__}")
    if problem.param.on_sphere:
        raise ValueError(f"icnn_jko needs a Euclidean Θ; {problem.param.name!r} lives on a "
                         "sphere (use neuron, signed or pm)")
    if psi.dim != problem.dim:
        raise ValueError(f"psi lives in dimension {psi.dim}, Θ of {problem.param.name!r} on "
                         f"d = {problem.d} data has dimension {problem.dim}")
    return icnn_prox_step(ProblemEnergy(), problem, psi, thetas, tau, diffusion, key, options,
                          opt_state, warn)
