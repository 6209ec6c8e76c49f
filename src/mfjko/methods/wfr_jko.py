r"""Entropic WFR (unbalanced) JKO on a fixed grid of directions as a stepper (MATH.md "WFR").

Balanced neurons are signed masses ν = (ν₊, ν₋) on directions s_k ∈ S^{d−1}; one step of
length τ is ν ← argmin_ν WFR_{ρ,ε}²(ν, ν_k)/(2τ) + G(ν), solved by :func:`mfjko.wfr.wfr_jko_step`
(warm-started, Anderson-accelerated). The measure a record reports is the *conic view*:
2N balanced neurons, one per (direction, sign), uniform weights 1/(2N), carrying mass
2Nν_±,k in their radius; F of it equals G(ν) and it is a probability measure, so every
metric of the runner applies (hence the stepper's kind is "particles"). ``neuron`` and
``sphere`` problems only (their F is G on balanced neurons).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
from pydantic import Field, create_model, model_validator

from mfjko.errors import ConfigError
from mfjko.geometry.costs import squared_geodesic_sphere
from mfjko.initial import BalancedLaw, FileLaw, GaussianLaw
from mfjko.methods.base import (
    Diagnostics,
    GridMethodConfig,
    MethodInfo,
    Stepper,
    WeightedParticles,
    check_positive,
    merge_steps,
)
from mfjko.parametrizations import get as get_param
from mfjko.problem import MeanFieldProblem
from mfjko.wfr import solver as _wfr
from mfjko.wfr.directions import (
    bin_particles,
    direction_features,
    lifted_objective,
    sphere_directions,
)

__all__ = ["WFRJKO", "WFRStepperState", "WFRJKOConfig", "WFR_PARAMETRIZATIONS",
           "initial_masses", "conic_view", "direction_spacing", "METHOD"]

#: parametrizations whose F equals the lifted G on balanced neurons (MATH.md "WFR")
WFR_PARAMETRIZATIONS = ("neuron", "sphere")
#: per-step solver figures reported (the masses are record diagnostics, F is the driver's)
_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(_wfr.WFRDiagnostics)
                     if f.name not in ("objective", "mass_plus", "mass_minus"))


def _check_param(problem) -> None:
    if problem.param.name not in WFR_PARAMETRIZATIONS:
        raise ValueError(f"the WFR methods need model.parametrization in "
                         f"{WFR_PARAMETRIZATIONS} (F = G on balanced neurons), got "
                         f"{problem.param.name!r}")


def _as_sphere_particles(problem: MeanFieldProblem, theta) -> np.ndarray:
    """(s, β) of the problem's particles: ``neuron`` (w, α) ↦ (w/‖w‖, α‖w‖)."""
    theta = np.asarray(problem.check_particles(theta))
    if problem.param.name == "sphere":
        return theta
    return np.asarray(get_param("sphere").from_classic(theta[:, :-1], theta[:, -1]))


def _mean_lift_mass(law, d: int) -> float:
    """E|α|‖w‖ of an isotropic law of classic neurons (w ∈ ℝ^d): the lift's total mass."""
    s = law.scale
    if isinstance(law, BalancedLaw):  # |α| = ‖w‖, E‖w‖² = d s²
        return d * s * s
    # independent α ~ N(0, s²), w ~ N(0, s² I_d): E|α| = s√(2/π), E‖w‖ = s√2 Γ((d+1)/2)/Γ(d/2)
    e_norm = s * math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    return s * math.sqrt(2.0 / math.pi) * e_norm


def initial_masses(S, problem: MeanFieldProblem, initial, *, law=None,
                   mode: str = "particles") -> np.ndarray:
    r"""Masses ν₀ (2, N) on the directions S of the run's initial measure.

    ``"particles"``: the run's particles θ_i, each putting mass |α_i|‖w_i‖/m (= |β_i|/m)
    on the sign of α_i at its nearest direction (:func:`~mfjko.wfr.bin_particles`), so
    the WFR run and GD start from the same empirical measure up to an angular rounding
    ≤ half the spacing. ``"law"``: the exact lift of the law (GaussianLaw, BalancedLaw:
    isotropic, hence uniform in direction with E|α|‖w‖/2 per sign; a FileLaw: all its
    rows binned).

    Args:
      S: (N, d) unit directions.
      problem: the (``neuron`` or ``sphere``) problem.
      initial: (m, D) particles of the problem's Θ (used by ``"particles"``).
      law: the initial law (needed by ``"law"``).
      mode: "particles" or "law".

    Returns:
      (2, N) nonnegative masses.
    """
    S = np.asarray(S, np.float64)
    if mode == "particles":
        return bin_particles(S, _as_sphere_particles(problem, initial))
    if mode != "law":
        raise ValueError(f"initial must be 'particles' or 'law', got {mode!r}")
    if isinstance(law, GaussianLaw | BalancedLaw):
        return np.full((2, S.shape[0]), 0.5 * _mean_lift_mass(law, S.shape[1]) / S.shape[0])
    if isinstance(law, FileLaw):
        W, alpha = law.load()
        return bin_particles(S, np.asarray(get_param("sphere").from_classic(W, alpha)))
    raise ValueError(f"init 'law' needs a GaussianLaw, BalancedLaw or FileLaw, got {law!r}")


def _stratified_order(N: int) -> np.ndarray:
    """Order of the 2N (sign, direction) points: van der Corput order of the direction index.

    Signs interleaved; every prefix is spread over the whole grid (the runner keeps the
    first ``max_support`` / ``particles_saved`` particles of a record).
    """
    bits = max(1, (N - 1).bit_length())
    k = np.arange(N)
    rev = np.zeros(N, dtype=np.int64)
    for b in range(bits):
        rev |= ((k >> b) & 1) << (bits - 1 - b)
    dirs = np.argsort(rev, kind="stable")
    return np.stack([dirs, N + dirs], axis=1).reshape(-1)


def conic_view(param: str, S, nu, *, drop_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The conic view of masses ν (2, N): K = 2N balanced neurons with uniform weights 1/K.

    Neuron (k, ±) carries mass r = Kν_±,k: ``neuron`` θ = (√r s_k, ±√r), ``sphere``
    θ = (s_k, ±r); weights 1/K. Its predictor is Σ_k (ν₊ − ν₋)_k σ(s_kᵀx) and its F is
    G(ν) (V = 2r on balanced neurons). Rows are in the stratified order of
    :func:`_stratified_order`. ``drop_empty``: leave out the (direction, sign) cells with
    ν = 0 (K = their number: same predictor and F, and no neuron at w = 0 or β = 0).

    Args:
      param: "neuron" or "sphere".
      S: (N, d) unit directions.
      nu: (2, N) masses.
      drop_empty: keep only the K cells with ν > 0 (default: all 2N).

    Returns:
      (points (K, d + 1), weights (K,)).
    """
    S, nu = np.asarray(S, np.float64), np.asarray(nu, np.float64)
    N = S.shape[0]
    order = _stratified_order(N)
    mass = nu.reshape(-1)[order]
    sign = np.repeat([1.0, -1.0], N)[order]
    dirs = np.concatenate([S, S])[order]
    if drop_empty:
        keep = mass > 0
        mass, sign, dirs = mass[keep], sign[keep], dirs[keep]
    K = mass.shape[0]
    r = K * mass
    if param == "sphere":
        pts = np.concatenate([dirs, (sign * r)[:, None]], axis=1)
    else:
        c = np.sqrt(r)
        pts = np.concatenate([c[:, None] * dirs, (sign * c)[:, None]], axis=1)
    return pts, np.full(K, 1.0 / K)


def direction_spacing(S) -> float:
    """δ of a direction grid: the median nearest-neighbour geodesic distance (2π/N on S¹)."""
    S = np.asarray(S, np.float64)
    best = np.empty(S.shape[0])
    for i in range(0, S.shape[0], 512):  # row blocks: O(512·N) memory
        d2 = np.asarray(squared_geodesic_sphere(S[i:i + 512], S))
        d2[np.arange(d2.shape[0]), np.arange(i, i + d2.shape[0])] = np.inf
        best[i:i + 512] = d2.min(axis=1)
    return float(np.sqrt(np.median(best)))


@dataclass(frozen=True)
class WFRStepperState:
    """State of a WFR JKO run.

    Attributes:
      problem: the :class:`~mfjko.problem.MeanFieldProblem`.  nu: (2, N) masses (ν₊, ν₋).
      solver: warm start (:class:`~mfjko.wfr.WFRState`, None before the first step).
      k: steps since t = 0.  directions: (N, d).  kernel: the
      :class:`~mfjko.wfr.WFRKernel`.  phi: (n, N) direction features.  potential: optional
      (2, N) linear potential added to G (:func:`~mfjko.wfr.wfr_jko_step`; None in runs).
    """

    problem: MeanFieldProblem
    nu: object
    solver: _wfr.WFRState | None
    k: int
    directions: np.ndarray
    kernel: _wfr.WFRKernel
    phi: object
    potential: object = None


@dataclass(frozen=True)
class WFRJKO(Stepper):
    """Entropic WFR JKO steps of length τ on N directions (module docstring).

    Attributes:
      tau: JKO step (mean-field time).  eps: entropic ε (radians²); its diffusion on the
        directions is D = ε/(4τ).  n_dirs: N.  rho: marginal weight ρ (2: GD on balanced
        neurons).  rho_old: weight ρ′ of the old-marginal KL (None: ρ − ε, which makes the
        no-transport step the exact Hellinger JKO; MATH.md).  initial: "particles" (bin
        the run's particles) or "law" (:func:`initial_masses`).  law: the initial law
        (``initial="law"``).  seed, repulsion_steps: direction set for d > 3
        (:func:`~mfjko.wfr.sphere_directions`).  options: :class:`~mfjko.wfr.WFRSolverOptions`.
      on_step: optional ``on_step(k, t, nu, diag_dict)`` after every step (k counted from
        t = 0, t = kτ; diag_dict: all :class:`~mfjko.wfr.WFRDiagnostics` fields).
      drift: compute each step's drift ratio (False: not reported; saves its cost).

    Interval diagnostics: the last step's solver figures and drift ratio (NaN at the
    initial record); per-step: all of them; record diagnostics: mass_plus, mass_minus.
    """

    name = "wfr_jko"
    kind = "particles"
    diagnostics = {k: float("nan") for k in _STEP_FIELDS + ("drift_ratio",)}
    tau: float = 0.1
    eps: float = 2.5e-4
    n_dirs: int = 512
    rho: float = 2.0
    rho_old: float | None = None
    initial: str = "particles"
    law: object = field(default=None, repr=False, compare=False)
    seed: int = 0
    repulsion_steps: int = 50
    options: _wfr.WFRSolverOptions = field(default_factory=_wfr.WFRSolverOptions)
    on_step: Callable | None = field(default=None, repr=False, compare=False)
    drift: bool = field(default=True, repr=False)

    def __post_init__(self):
        check_positive(self.tau, "tau")
        check_positive(self.eps, "eps")
        check_positive(self.rho, "rho")
        if self.rho_old is not None:
            check_positive(self.rho_old, "rho_old")
        elif not self.eps < self.rho:
            raise ValueError(f"rho_old = rho − eps needs eps < rho, got eps = {self.eps}, "
                             f"rho = {self.rho}; give rho_old")
        if int(self.n_dirs) != self.n_dirs or self.n_dirs < 3:
            raise ValueError(f"n_dirs must be an integer >= 3, got {self.n_dirs!r}")
        if self.initial not in ("particles", "law"):
            raise ValueError(f"initial must be 'particles' or 'law', got {self.initial!r}")

    @property
    def step_size(self) -> float:
        """The step τ."""
        return float(self.tau)

    @property
    def diffusion(self) -> float:
        """D = ε/(4τ), the angular diffusion the entropy adds (MATH.md)."""
        return self.eps / (4.0 * self.tau)

    @property
    def rho_prime(self) -> float:
        """ρ′ actually used (ρ − ε unless given)."""
        return float(self.rho - self.eps if self.rho_old is None else self.rho_old)

    def directions(self, d: int) -> np.ndarray:
        """The N unit directions of S^{d−1} (d includes the bias coordinate)."""
        return sphere_directions(d, int(self.n_dirs), seed=self.seed, steps=self.repulsion_steps)

    def _grid(self, problem: MeanFieldProblem, S=None):
        _check_param(problem)
        S = self.directions(problem.d) if S is None else S
        kernel = _wfr.wfr_kernel(S, self.eps, self.rho)
        return S, kernel, jnp.asarray(direction_features(S, problem.X))

    def initial_measure(self, problem: MeanFieldProblem, initial) -> tuple[np.ndarray,
                                                                           np.ndarray]:
        """The directions S (N, d) and the masses ν₀ (2, N) a run starts from.

        :func:`initial_masses` of ``initial`` (the run's particles) on :meth:`directions`;
        what :meth:`init` steps from, and what the run's grid-matched references start
        from (their conic view, :meth:`_WFRBase.initial_particles`). ValueError if ν₀ has
        no mass.
        """
        _check_param(problem)
        S = self.directions(problem.d)
        nu = initial_masses(S, problem, initial, law=self.law, mode=self.initial)
        if not nu.sum() > 0:
            raise ValueError("the initial measure has no mass on the direction grid")
        return S, nu

    def init(self, problem: MeanFieldProblem, initial) -> WFRStepperState:
        """Directions, kernel, features and ν₀ (:meth:`initial_measure`) for ``problem``."""
        S, nu = self.initial_measure(problem, initial)
        S, kernel, phi = self._grid(problem, S)
        return WFRStepperState(problem, jnp.asarray(nu), None, 0, S, kernel, phi)

    def advance(self, state: WFRStepperState, n_steps: int):
        """n_steps WFR JKO steps, with the drift ratio of each (:func:`mfjko.wfr.drift_ratio`)."""
        p = state.problem
        nu, solver, reports = state.nu, state.solver, []
        for i in range(n_steps):
            q = nu
            nu, solver, diag = _wfr.wfr_jko_step(state.kernel, q, state.phi, p.y, float(p.lam),
                                                 self.tau, solver, self.options,
                                                 state.potential, self.rho_prime)
            d = diag.as_dict()
            rep = {k: float(d[k]) for k in _STEP_FIELDS}
            if self.drift:
                rep["drift_ratio"] = float(_wfr.drift_ratio(state.kernel, state.directions, q,
                                                            solver.log_a, p.X, p.y, self.tau))
            reports.append(rep)
            if self.on_step is not None:
                k = state.k + i + 1
                self.on_step(k, k * self.tau, nu, d)
        steps = merge_steps(reports)
        interval = {k: float(v[-1]) for k, v in steps.items()}
        new = dataclasses.replace(state, nu=nu, solver=solver, k=state.k + n_steps)
        return new, Diagnostics(interval, steps)

    def record_diagnostics(self, state: WFRStepperState) -> dict[str, float]:
        """|ν₊| and |ν₋| at every record (the initial one included)."""
        nu = np.asarray(state.nu)
        return {"mass_plus": float(nu[0].sum()), "mass_minus": float(nu[1].sum())}

    def measure(self, state: WFRStepperState):
        """The conic view (:func:`conic_view`): 2N balanced neurons, weights 1/(2N)."""
        return conic_view(state.problem.param.name, state.directions, state.nu)

    def save(self, state: WFRStepperState) -> dict[str, np.ndarray]:
        """ν, k and the warm start (the grid is rebuilt from the settings)."""
        out = {"nu": np.asarray(state.nu), "k": np.asarray(state.k)}
        if state.solver is not None:
            out.update(g=np.asarray(state.solver.g), log_a=np.asarray(state.solver.log_a),
                       log_b=np.asarray(state.solver.log_b))
        return out

    def restore(self, problem: MeanFieldProblem, arrays: dict) -> WFRStepperState:
        """Inverse of :meth:`save`."""
        S, kernel, phi = self._grid(problem)
        solver = None
        if "g" in arrays:
            solver = _wfr.WFRState(g=jnp.asarray(arrays["g"]), log_a=jnp.asarray(arrays["log_a"]),
                                   log_b=jnp.asarray(arrays["log_b"]))
        return WFRStepperState(problem, jnp.asarray(arrays["nu"]), solver,
                               int(arrays.get("k", 0)), S, kernel, phi)

    def meta(self) -> dict:
        """τ, ε, N, ρ, ρ′, the initial measure and D."""
        return {"tau": self.tau, "eps": self.eps, "n_dirs": int(self.n_dirs), "rho": self.rho,
                "rho_old": self.rho_prime, "initial": self.initial, "diffusion": self.diffusion}


def _solver_fields() -> dict:
    """The pydantic fields of every :class:`~mfjko.wfr.WFRSolverOptions` field."""
    hints = typing.get_type_hints(_wfr.WFRSolverOptions)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(_wfr.WFRSolverOptions)}


class _WFRBase(GridMethodConfig):
    #: parametrizations this method runs on (checked against model.parametrization)
    parametrizations: typing.ClassVar[tuple[str, ...]] = WFR_PARAMETRIZATIONS
    #: the settings ν₀ (:meth:`initial_particles`) depends on
    initial_measure_fields: typing.ClassVar[tuple[str, ...]] = (
        "n_dirs", "seed", "repulsion_steps", "initial")
    tau: float = Field(0.1, gt=0, allow_inf_nan=False)
    eps: float = Field(2.5e-4, gt=0, allow_inf_nan=False)
    n_dirs: int = Field(512, ge=3)
    rho: float = Field(2.0, gt=0, allow_inf_nan=False)
    rho_old: typing.Literal["auto"] | typing.Annotated[float, Field(gt=0, allow_inf_nan=False)] \
        = "auto"
    initial: typing.Literal["particles", "law"] = "particles"
    seed: int = Field(0, ge=0)
    repulsion_steps: int = Field(50, ge=0)

    @model_validator(mode="after")
    def _valid(self):
        self.solver_options()  # WFRSolverOptions checks its own values
        if self.rho_old == "auto" and not self.eps < self.rho:
            raise ValueError(f"rho_old: auto (= rho − eps) needs eps < rho, got eps = "
                             f"{self.eps}, rho = {self.rho}")
        return self

    def solver_options(self) -> _wfr.WFRSolverOptions:
        """The :class:`~mfjko.wfr.WFRSolverOptions` of this section."""
        return _wfr.WFRSolverOptions(**{k: getattr(self, k) for k in _solver_fields()})

    def stepper(self, law=None) -> WFRJKO:
        """The :class:`WFRJKO` of these settings (``law``: the run's initial law)."""
        return WFRJKO(tau=self.tau, eps=self.eps, n_dirs=self.n_dirs, rho=self.rho,
                      rho_old=None if self.rho_old == "auto" else self.rho_old,
                      initial=self.initial, law=law, seed=self.seed,
                      repulsion_steps=self.repulsion_steps, options=self.solver_options())

    def grid_size(self, d: int | None = None, parametrization: str | None = None) -> int:
        """Number of grid points, 2N (two signs per direction)."""
        return 2 * self.n_dirs

    def grid_shape(self) -> str:
        """``n_dirs = N`` (for messages)."""
        return f"n_dirs = {self.n_dirs}"

    def spacing(self, d: int, parametrization: str | None = None) -> float:
        """Angular spacing δ of the direction grid (:func:`direction_spacing`)."""
        return direction_spacing(self.stepper().directions(d))

    def initial_speed(self, problem: MeanFieldProblem, theta0, law) -> float:
        """V₀, the RMS angular speed of the transport under ν₀.

        :func:`mfjko.wfr.direction_speed`; the Courant number of the direction grid is
        c = τV₀/δ.
        """
        S, nu = self.stepper(law).initial_measure(problem, theta0)
        return float(_wfr.direction_speed(jnp.asarray(S), jnp.asarray(nu), problem.X, problem.y))

    def initial_particles(self, problem: MeanFieldProblem, theta0,
                          law) -> tuple[WeightedParticles, float]:
        r"""ν₀'s conic view on its K nonempty cells, and G(ν₀): the grid-matched start.

        The run's particle references start from it when the run has no grid over Θ
        (:meth:`mfjko.runner.setup.Setup.grid_particles`): K balanced neurons, weights
        1/K, mass Kν₀ each (:func:`conic_view` with ``drop_empty``; the empty cells would
        be dead neurons at w = 0, or β = 0 on ``sphere``), so F(0) and f(0) are the WFR
        JKO's. ν₀ is :meth:`WFRJKO.initial_measure`'s, as the stepper's own start.

        Returns:
          (the weighted particles, G(ν₀) by :func:`mfjko.wfr.lifted_objective`).
        """
        S, nu = self.stepper(law).initial_measure(problem, theta0)
        pts, w = conic_view(problem.param.name, S, nu, drop_empty=True)
        G0 = lifted_objective(nu, direction_features(S, problem.X), problem.y, problem.lam)
        return WeightedParticles(pts, w), float(G0)


#: ``methods.wfr_jko``: τ, ε, the directions, ρ, ρ′, the initial measure and the solver
#: options (WFRSolverOptions' fields)
WFRJKOConfig = create_model(
    "WFRJKOConfig", __base__=_WFRBase,
    __doc__="``methods.wfr_jko``: entropic WFR JKO on n_dirs directions, ν_{k+1} = argmin "
            "WFR²_ε(ν, ν_k)/(2τ) + G(ν); rho_old: auto = ρ − ε.",
    **_solver_fields())


def _build(mc, setup) -> WFRJKO:

    try:
        _check_param(setup.problem)
    except ValueError as e:
        raise ConfigError(f"methods.wfr_jko: {e}") from None
    return mc.stepper(setup.law)


METHOD = MethodInfo("wfr_jko", WFRJKO, WFRJKOConfig, _build, color="tab:purple",
                    summary="entropic WFR (unbalanced) JKO on a grid of directions",
                    directional=True)
