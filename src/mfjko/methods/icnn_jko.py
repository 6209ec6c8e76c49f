r"""Meshless JKO by input-convex networks: μ_{k+1} = (∇ψ_k)#μ_k on m samples (MATH.md).

Each step trains an ICNN ψ_k (:mod:`mfjko.icnn`) on the JKO functional of F + D ∫μ log μ
and pushes the samples by ∇ψ_k; one step advances t by τ. D = 0 is the implicit particle
step restricted to gradients of convex potentials; D > 0 follows mean-field Langevin at D
(the entropy enters as −D mean log det ∇²ψ, exact or Hutchinson + Lanczos). The state
holds the samples, ψ_k (warm start of step k + 1), Adam's state if carried, and the global
step index k that keys step k's randomness, so resumed runs repeat the same computations.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import equinox as eqx
import jax
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfjko.errors import ConfigError
from mfjko.icnn.network import ICNN
from mfjko.icnn.step import (
    ConvergenceWarning,
    ICNNOptions,
    icnn_jko_step,
    init_potential,
    make_optimizer,
    resolve_entropy,
)
from mfjko.methods.base import Diagnostics, MethodInfo, Stepper, check_positive, merge_steps
from mfjko.problem import MeanFieldProblem

__all__ = ["ICNNJKO", "ICNNJKOState", "ICNNJKOConfig", "STEP_DIAGNOSTICS", "METHOD"]

#: per-step diagnostics (recorded by the driver under steps/) and where they come from in
#: :class:`mfjko.icnn.ICNNStepDiagnostics`
STEP_DIAGNOSTICS = {
    "inner_loss": "loss",  # J(ψ_k) at the returned ψ (the JKO functional, final value)
    "inner_loss_start": None,  # J at the starting ψ (warm start): first loss_curve entry
    "inner_iterations": "iterations",
    "inner_grad_norm": "grad_norm",
    "converged": "converged",
    "transport": "transport",  # mean ‖∇ψ(θ) − θ‖²/(2τ)
    "logdet": "logdet",  # mean log det ∇²ψ(θ_i)
    "displacement": "displacement",  # mean ‖∇ψ(θ_i) − θ_i‖
    "min_hessian_eig": "min_hessian_eig",  # convexity check (≥ δ)
    "min_monotonicity": "min_monotonicity",  # monotonicity check on pairs (≥ δ)
    "euler_residual": "euler_residual",  # ‖(T − θ)/τ − v(T)‖/‖v‖
}


@dataclass(frozen=True)
class ICNNJKOState:
    """State of the ICNN JKO method.

    Attributes:
      problem: the :class:`~mfjko.problem.MeanFieldProblem`.
      theta: (m, D) samples of μ_k.
      k: global step count (steps since t = 0); step k + 1 uses fold_in(key, k).
      psi: ψ_k, the potential of the last step (the warm start of the next).
      opt_state: Adam's state when ``carry_optimizer_state`` (else None).
    """

    problem: Any
    theta: Any
    k: int
    psi: ICNN
    opt_state: Any = None


@dataclass(frozen=True)
class ICNNJKO(Stepper):
    """ICNN JKO steps of length τ at diffusion D.

    Attributes:
      tau: the JKO step τ (mean-field time).
      diffusion: D ≥ 0, the entropy weight of the free energy F + D ∫μ log μ.
      options: :class:`mfjko.icnn.ICNNOptions` (network, entropy estimator, inner solver).
      key: PRNG key (or int seed): split(key)[0] initializes ψ_0, step k + 1 uses
        fold_in(split(key)[1], k).

    Per-step diagnostics: :data:`STEP_DIAGNOSTICS`; interval diagnostics: the last step's,
    with ``converged`` = 1.0 only if every step of the interval converged. An interval with
    an unconverged inner loop warns once (ConvergenceWarning).
    """

    name = "icnn_jko"
    diagnostics = {k: float("nan") for k in STEP_DIAGNOSTICS}
    tau: float = 0.1
    diffusion: float = 0.0
    options: ICNNOptions = field(default_factory=ICNNOptions)
    key: object = field(default=0, repr=False, compare=False)

    def __post_init__(self):
        check_positive(self.tau, "tau")
        D = float(self.diffusion)
        if not math.isfinite(D) or D < 0:
            raise ValueError(f"diffusion D must be finite and >= 0, got {D}")
        if not isinstance(self.options, ICNNOptions):
            raise ValueError(f"options must be an ICNNOptions, got {type(self.options).__name__}")
        if isinstance(self.key, int):
            object.__setattr__(self, "key", jax.random.PRNGKey(self.key))

    @property
    def step_size(self) -> float:
        """The JKO step τ (mean-field time)."""
        return float(self.tau)

    def _keys(self):
        return jax.random.split(self.key)

    def _fresh_psi(self, dim: int) -> ICNN:
        return init_potential(self._keys()[0], dim, self.options)

    def init(self, problem, initial) -> ICNNJKOState:
        """Validated samples (m ≥ 2, Euclidean Θ), ψ_0 near the identity map, k = 0."""
        if not isinstance(problem, MeanFieldProblem):
            raise ValueError(f"icnn_jko runs on a MeanFieldProblem, got {type(problem).__name__}")
        if problem.param.on_sphere:
            raise ValueError(f"icnn_jko needs a Euclidean Θ; {problem.param.name!r} lives on a "
                             "sphere (use neuron, signed or pm)")
        theta = problem.check_particles(initial)
        if theta.shape[0] < 2:
            raise ValueError(f"icnn_jko needs m >= 2 samples, got {theta.shape[0]}")
        resolve_entropy(self.options, float(self.diffusion), problem.dim)  # fails early
        return ICNNJKOState(problem, theta, 0, self._fresh_psi(problem.dim), None)

    def advance(self, state: ICNNJKOState, n_steps: int):
        """Make ``n_steps`` ICNN JKO steps of τ: (new state, :class:`Diagnostics`)."""
        p, theta, psi, opt_state = state.problem, state.theta, state.psi, state.opt_state
        k_steps = self._keys()[1]
        reports = []
        for i in range(n_steps):
            k = state.k + i
            start = psi if self.options.warm_start else self._fresh_psi(p.dim)
            carry = opt_state if self.options.carry_optimizer_state else None
            theta, psi, opt_state, diag = icnn_jko_step(
                p, start, theta, self.tau, self.diffusion, jax.random.fold_in(k_steps, k),
                self.options, carry, warn=False)
            d = diag.as_dict()
            d["inner_loss_start"] = float(d["loss_curve"][0])
            reports.append({name: float(d[src or name]) for name, src in
                            STEP_DIAGNOSTICS.items()})
        steps = merge_steps(reports)
        interval = {k: float(v[-1]) for k, v in steps.items()}
        if steps:
            interval["converged"] = float(np.all(steps["converged"] == 1.0))
            if interval["converged"] != 1.0:
                bad = int(np.sum(steps["converged"] != 1.0))
                warnings.warn(
                    f"icnn_jko: {bad} of {n_steps} steps ending at t = "
                    f"{(state.k + n_steps) * self.tau:g} stopped their inner "
                    f"{self.options.optimizer} unconverged (max_iter = {self.options.max_iter}; "
                    f"largest ‖∇J‖ = {float(np.max(steps['inner_grad_norm'])):.3g}); see "
                    "steps/converged", ConvergenceWarning, stacklevel=2)
        new = ICNNJKOState(p, theta, state.k + n_steps, psi,
                           opt_state if self.options.carry_optimizer_state else None)
        return new, Diagnostics(interval, steps)

    def save(self, state: ICNNJKOState) -> dict[str, np.ndarray]:
        """θ, k and the leaves of ψ (``psi_000``…) and of Adam's state (``opt_000``…)."""
        out = {"theta": np.asarray(state.theta), "k": np.asarray(state.k)}
        for i, leaf in enumerate(jax.tree_util.tree_leaves(eqx.filter(state.psi,
                                                                      eqx.is_array))):
            out[f"psi_{i:03d}"] = np.asarray(leaf)
        if state.opt_state is not None:
            for i, leaf in enumerate(jax.tree_util.tree_leaves(state.opt_state)):
                out[f"opt_{i:03d}"] = np.asarray(leaf)
        return out

    def restore(self, problem, arrays: dict) -> ICNNJKOState:
        """Inverse of :meth:`save` (the network's structure comes from ``options``)."""
        template = self._fresh_psi(problem.dim)
        params, static = eqx.partition(template, eqx.is_array)
        leaves, tree = jax.tree_util.tree_flatten(params)
        names = sorted(k for k in arrays if k.startswith("psi_"))
        if len(names) != len(leaves):
            raise ValueError(f"checkpoint has {len(names)} ψ arrays, the network of these "
                             f"options has {len(leaves)}: options changed since the save")
        psi = eqx.combine(jax.tree_util.tree_unflatten(
            tree, [jax.numpy.asarray(arrays[n]) for n in names]), static)
        opt_state = None
        opt_names = sorted(k for k in arrays if k.startswith("opt_"))
        if opt_names:
            tmpl = make_optimizer(self.options).init(eqx.filter(template, eqx.is_inexact_array))
            o_leaves, o_tree = jax.tree_util.tree_flatten(tmpl)
            opt_state = jax.tree_util.tree_unflatten(
                o_tree, [jax.numpy.asarray(arrays[n]) for n in opt_names[: len(o_leaves)]])
        return ICNNJKOState(problem, jax.numpy.asarray(arrays["theta"]), int(arrays["k"]), psi,
                            opt_state)

    def meta(self) -> dict:
        """τ, D and the options (as a dict)."""
        return {"tau": self.tau, "diffusion": float(self.diffusion),
                "options": dataclasses.asdict(self.options)}


class ICNNJKOConfig(BaseModel):
    """``methods.icnn_jko``: meshless JKO steps by input-convex networks.

    D: the diffusion (default 0), or ``match_jko: true`` for D = ε/(4τ) of the jko method.
    ``entropy``: auto (exact up to Θ of dimension 32, else stochastic), exact,
    stochastic (needs optimizer adam) or none (D = 0 only). ``max_iter``: inner
    optimizer iterations per step (L-BFGS: loss evaluations; Adam: updates).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    tau: float = Field(0.1, gt=0, allow_inf_nan=False)
    D: float | None = Field(None, ge=0, allow_inf_nan=False)
    match_jko: bool = False
    entropy: Literal["auto", "exact", "stochastic", "none"] = "auto"
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    max_iter: int = Field(500, ge=1)
    learning_rate: float = Field(1e-2, gt=0, allow_inf_nan=False)
    tol: float = Field(1e-6, gt=0, allow_inf_nan=False)
    hidden: list[int] = Field(default_factory=lambda: [32, 32])
    sharpness: float = Field(4.0, gt=0, allow_inf_nan=False)
    delta: float = Field(1e-3, gt=0, lt=1)
    n_probes: int = Field(1, ge=1)
    lanczos_steps: int = Field(16, ge=1)
    warm_start: bool = True
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        if self.D is not None and self.match_jko:
            raise ValueError("methods.icnn_jko: give D: <value> or match_jko: true, not both")
        if self.entropy == "none" and (self.D or 0.0) > 0:
            raise ValueError(f"methods.icnn_jko: D = {self.D} > 0 needs an entropy estimator "
                             "(entropy: auto, exact or stochastic)")
        self.options()  # the ICNNOptions checks (e.g. stochastic entropy needs adam)
        return self

    def options(self) -> ICNNOptions:
        """The :class:`~mfjko.icnn.ICNNOptions` of this section."""
        return ICNNOptions(hidden=tuple(self.hidden), delta=self.delta, sharpness=self.sharpness,
                           entropy=self.entropy, n_probes=self.n_probes,
                           lanczos_steps=self.lanczos_steps, optimizer=self.optimizer,
                           learning_rate=self.learning_rate, max_iter=self.max_iter,
                           tol=self.tol, warm_start=self.warm_start)

    def step_size(self) -> float:
        """The JKO step τ (mean-field time), to check it divides ``record_every``."""
        return self.tau


def _build(mc: ICNNJKOConfig, setup) -> ICNNJKO:

    cfg = setup.cfg
    if mc.match_jko:
        if cfg.methods.jko is None:
            raise ConfigError("methods.icnn_jko.match_jko needs a jko method (its ε and τ give "
                              "D = ε/(4τ)); or set methods.icnn_jko.D")
        D = cfg.methods.jko.eps / (4.0 * cfg.methods.jko.tau)
    else:
        D = mc.D or 0.0
    if setup.problem.param.on_sphere:
        raise ConfigError("methods.icnn_jko needs a Euclidean Θ (model.parametrization neuron, "
                          "signed or pm), not sphere")
    try:
        resolve_entropy(mc.options(), D, setup.problem.dim)
    except ValueError as e:
        raise ConfigError(f"methods.icnn_jko: {e}") from None
    return ICNNJKO(tau=mc.tau, diffusion=D, options=mc.options(),
                   key=jax.random.fold_in(setup.keys["peers"], mc.seed))


METHOD = MethodInfo("icnn_jko", ICNNJKO, ICNNJKOConfig, _build, color="tab:olive",
                    linestyle="--", summary="meshless JKO steps by input-convex networks (ICNN)")
