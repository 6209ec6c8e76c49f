r"""Everything a run needs, built and checked before any dynamics run.

Data, the problem, the initial law, m particles drawn from it with the run's seed, the JKO
grid (:meth:`Parametrization.build_grid`) with the same law discretized on it
(:func:`mfjko.initial.discretize`), and the reference optimum F*. Each method's initial
state (:meth:`Setup.initial_of`): the grid weights p0, the sampled particles, or — for the
particle references of a grid run — the grid's own measure as weighted particles at the
grid points, or a ``wfr_jko`` run's ν₀ in its conic view (deterministic, F(0) equal to the
grid method's). Any infeasible setting raises
:class:`~mfjko.config.ConfigError` naming the key; an unusable data or particle file raises
:class:`~mfjko.data.DataError` naming data.path or init.path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import numpy as np

from mfjko import data as data_mod
from mfjko import initial, optimum
from mfjko import methods as _methods
from mfjko.config import ConfigError, RunConfig, check_grid, grid_range_key
from mfjko.methods.base import WeightedParticles
from mfjko.problem import GridProblem, MeanFieldProblem

__all__ = ["Setup", "prepare", "build_geometry", "dataset_for", "law_for", "FSTAR_PARAMS",
           "GRID_PARTICLE_CUT"]

#: parametrizations whose global optimum is the TV-regularized problem of mfjko.optimum
FSTAR_PARAMS = ("neuron", "pm", "sphere")
#: grid points with p0 ≤ this × max p0 are left out of the weighted-particle reference
#: (their mass, ≲ 1e-12 of the total on the shipped grids, is reported as dropped)
GRID_PARTICLE_CUT = 1e-16


@dataclass
class Setup:
    """A prepared run.

    Attributes:
      cfg: the config.  dataset: the data (train and test).  problem: its
      :class:`MeanFieldProblem`.  law: the initial law.  theta0: (m, D) initial particles.
      grid: the :class:`GridProblem` of the JKO grid (None without a grid method).
      p0: (N,) initial grid weights.  mass_outside: the law's mass off the grid.
      F_star, F_star_note: the reference optimum and how it was obtained.
      keys: PRNG keys of the random methods.
    """

    cfg: RunConfig
    dataset: object
    problem: MeanFieldProblem
    law: object
    theta0: np.ndarray
    grid: GridProblem | None = None
    p0: np.ndarray | None = None
    mass_outside: float = 0.0
    F_star: float = math.nan
    F_star_note: str = ""
    keys: dict = field(default_factory=dict)
    _grid_particles: WeightedParticles | None = field(default=None, repr=False)

    @property
    def param(self):
        """The parametrization."""
        return self.problem.param

    @property
    def geom(self):
        """The JKO grid's geometry (None without a grid method)."""
        return None if self.grid is None else self.grid.geom

    @property
    def d(self) -> int:
        """Input dimension, bias column included."""
        return int(self.dataset.X.shape[1])

    def problem_for(self, kind: str):
        """The problem a method of ``kind`` ("particles" or "grid") runs on."""
        return self.grid if kind == "grid" else self.problem

    @property
    def reference_grid(self) -> str | None:
        """The grid method whose initial measure is the run's grid measure (``init: grid``).

        The method on the run's grid over Θ (``jko``: p0) when there is one; else the
        first grid method that gives its initial measure as particles (``wfr_jko``: the
        conic view of ν₀); None without either. With both, the grid over Θ has priority.
        """
        if self.grid is not None:
            return self.cfg.methods.theta_grid()
        for name in self.cfg.methods.grid_methods():
            if getattr(self.cfg.methods, name).initial_measure_fields:
                return name
        return None

    def grid_particles(self) -> WeightedParticles:
        r"""The run's grid measure (:attr:`reference_grid`'s initial one) as weighted particles.

        A grid over Θ: Σ_k p0_k δ_{θ_k}, points with p0_k ≤ :data:`GRID_PARTICLE_CUT`·max p0
        left out (:attr:`dropped_mass` says how much). On grids with an odd number of
        points per w-axis the points with w = 0 are dead neurons: σ(0) = 0 and σ′(0) = 0
        give them no output and no data gradient, so GD keeps their mass at w = 0 (only
        weight decay shrinks α) — the exact gradient flow of this measure; that mass is
        :attr:`frozen_mass`. A ``wfr_jko`` run (no grid over Θ): the conic view of its ν₀
        on the K nonempty cells, K balanced neurons of weight 1/K
        (:meth:`~mfjko.methods.base.GridMethodConfig.initial_particles`). Computed once,
        then cached.

        Raises:
          ConfigError: without a grid method, or when the weighted particles' F differs
            from the grid method's own F at t = 0 (a grid whose points are not neurons of
            Θ with the same F).
        """
        name = self.reference_grid
        if name is None:
            raise ConfigError("a grid-matched reference (init: grid) needs a grid method: jko "
                              "(a grid over Θ) or wfr_jko (a grid of directions)")
        if self._grid_particles is None:
            if self.grid is not None:
                pts, p0 = np.asarray(self.geom.points, np.float64), np.asarray(self.p0)
                keep = _above_cut(p0)
                wp = WeightedParticles(pts[keep], p0[keep])
                F_grid = float(self.grid.objective(p0))
            else:
                try:
                    wp, F_grid = getattr(self.cfg.methods, name).initial_particles(
                        self.problem, self.theta0, self.law)
                except ValueError as e:
                    raise ConfigError(f"methods.{name}: {e}") from None
            F_part = float(self.problem.measure_objective(wp.points, wp.weights))
            if not abs(F_part - F_grid) <= 1e-9 * max(abs(F_grid), 1e-300) + 1e-14:
                raise ConfigError(
                    f"init: grid: the {name} grid's initial measure as particles gives "
                    f"F = {F_part:.10g}, not the grid's F(0) = {F_grid:.10g}; use "
                    "init: particles for this grid")
            self._grid_particles = wp
        return self._grid_particles

    @property
    def dropped_mass(self) -> float:
        """The p0 mass left out of :meth:`grid_particles` (below the cut; wfr_jko: 0)."""
        if self.grid is None:  # only cells with ν₀ = 0 are left out
            return 0.0
        p0 = np.asarray(self.p0)
        return float(p0[~_above_cut(p0)].sum())

    @property
    def frozen_mass(self) -> float:
        """The mass of :meth:`grid_particles` at w = 0 (``neuron``: dead, never moved by GD)."""
        if self.param.name != "neuron":
            return 0.0
        wp = self.grid_particles()
        return float(np.sum(wp.weights[np.all(wp.points[:, :-1] == 0, axis=1)]))

    def reference_init(self, name: str, mode: str) -> str:
        """Resolve a particle method's ``init`` ("auto" → "grid" or "particles").

        ``auto`` is ``grid`` when the run has a grid measure (:attr:`reference_grid`)
        whose particles have the grid's F and the method accepts weighted particles, else
        ``particles``.
        """
        info = _methods.get(name)
        if mode == "auto":
            if self.reference_grid is None or not info.stepper.weighted:
                return "particles"
            try:
                self.grid_particles()
            except ConfigError:
                return "particles"
            return "grid"
        if mode == "grid" and not info.stepper.weighted:
            raise ConfigError(f"methods.{name}.init: grid: {name} steps uniform particles "
                              "only; use init: particles")
        return mode

    def sample_source(self, mode: str) -> str:
        """Where :meth:`sample_particles` draws from: "grid" (grid measure atoms) or "particles"."""
        if mode == "auto":
            return "grid" if self.reference_grid is not None else "particles"
        if mode == "grid" and self.reference_grid is None:
            raise ConfigError("init: grid (particles drawn from the grid's initial measure) "
                              "needs a jko or wfr_jko method")
        return mode

    def sample_particles(self, mode: str, count: int, key) -> np.ndarray:
        """``count`` particles (count, D): atoms of the grid measure (``grid``) or the law."""
        if self.sample_source(mode) == "grid":
            wp = self.grid_particles()
            p = np.asarray(wp.weights) / np.sum(wp.weights)
            idx = jax.random.choice(key, len(p), (count,), p=p)
            return np.asarray(wp.points)[np.asarray(idx)]
        try:
            return np.asarray(initial.sample_particles(self.law, self.param, key, count,
                                                       self.problem.d))
        except (ValueError, OSError) as e:
            raise ConfigError(f"init: {e}") from None

    def starts_on_grid(self, name: str) -> bool:
        """Whether method ``name`` starts from the grid's measure, deterministically.

        A grid method on the grid over Θ (p0), the method :attr:`reference_grid` names,
        or a particle method whose ``init`` resolves to the weighted grid particles; False
        for sampled starts (Langevin, ``init: particles``).
        """
        info = _methods.get(name)
        if info.kind == "grid" or name == self.reference_grid:
            return True
        mc = getattr(self.cfg.methods, name)
        return info.initial is None and self.reference_init(
            name, getattr(mc, "init", "particles")) == "grid"

    def initial_of(self, name: str):
        """The initial state input of method ``name`` (module docstring)."""
        info = _methods.get(name)
        mc = getattr(self.cfg.methods, name)
        if info.initial is not None:
            return info.initial(mc, self)
        if info.kind == "grid":
            return self.p0
        mode = self.reference_init(name, getattr(mc, "init", "particles"))
        return self.grid_particles() if mode == "grid" else self.theta0


def _above_cut(p0: np.ndarray) -> np.ndarray:
    """The grid points kept as weighted particles: p0_k > GRID_PARTICLE_CUT · max p0."""
    return p0 > GRID_PARTICLE_CUT * p0.max()


def dataset_for(cfg: RunConfig):
    """The data set of ``cfg.data``.

    A bad file raises :class:`~mfjko.data.DataError`
    naming data.path, a bad generator option :class:`ConfigError` naming data.kwargs.
    """
    kwargs = dict(cfg.data.kwargs)
    try:
        if cfg.data.name == "file":
            return data_mod.make_dataset("file", path=cfg.data.path, **kwargs)
        return data_mod.make_dataset(cfg.data.name, **kwargs)
    except data_mod.DataFileNotFoundError as e:
        raise data_mod.DataFileNotFoundError(f"data.path: {e}") from None
    except data_mod.DataError as e:
        raise data_mod.DataError(f"data.path: {e}") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"data.kwargs: {e} (options of the {cfg.data.name} data set; fix "
                          "them in the config or with --set data.kwargs.<option>=...)") from None


def _data_error(e: Exception) -> type:
    return (data_mod.DataFileNotFoundError if isinstance(e, FileNotFoundError)
            else data_mod.DataError)


def law_for(cfg: RunConfig):
    """The initial law of ``cfg.init`` (a Gaussian, balanced or file law)."""
    ic = cfg.init
    if ic.law == "gaussian":
        return initial.GaussianLaw(ic.scale)
    if ic.law == "balanced":
        return initial.BalancedLaw(ic.scale)
    return initial.FileLaw(ic.path)


def build_geometry(cfg: RunConfig, param, d: int):
    """The run's grid over Θ (``methods.jko.grid``: :meth:`MethodsConfig.theta_grid`'s).

    d counts the bias column; a grid that does not fit the parametrization raises
    :class:`ConfigError` naming the key.
    """
    try:
        return param.build_grid(getattr(cfg.methods, cfg.methods.theta_grid()).grid, d)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def prepare(cfg: RunConfig) -> Setup:
    """Build and check everything a run needs.

    Build data, problem, law, particles, grid and p0, and run every check that needs
    them (grid mass, ε vs spacing). Raises :class:`ConfigError` before any dynamics run.
    """
    dataset = dataset_for(cfg)
    problem = MeanFieldProblem.create(cfg.model.parametrization, dataset.X, dataset.y,
                                      cfg.model.lam)
    law = law_for(cfg)
    root = jax.random.PRNGKey(cfg.seed)
    k_particles, k_grid, k_langevin, k_peers = jax.random.split(root, 4)
    try:
        theta0 = np.asarray(initial.sample_particles(law, problem.param, k_particles,
                                                     cfg.init.m, problem.d))
    except (ValueError, OSError) as e:
        if cfg.init.law != "file":
            raise ConfigError(f"init: {e}") from None
        # a particle file that is missing, unreadable or does not fit the data / init.m
        raise _data_error(e)(f"init.path: {e}; fix the file or init.path / init.m") from None
    _check_initial_objective(problem, theta0, dataset, cfg)
    setup = Setup(cfg=cfg, dataset=dataset, problem=problem, law=law, theta0=theta0,
                  keys={"langevin": k_langevin, "peers": k_peers,
                        "langevin_init": jax.random.fold_in(k_langevin, 1 << 20)})
    grid_method = cfg.methods.theta_grid()
    if grid_method is not None:
        geom = build_geometry(cfg, problem.param, problem.d)
        spec = getattr(cfg.methods, grid_method).grid
        try:
            p0, outside = initial.discretize(law, problem.param, geom, k_grid,
                                             n_samples=spec.discretize_samples)
        except ValueError as e:
            raise ConfigError(f"methods.{grid_range_key(cfg)}: {e}") from None
        check_grid(cfg, float(geom.spacing), float(outside))
        # p0 sums to 1, except for `signed` where the grid points carry |α| = 1 and p0
        # sums to E|α| (initial.discretize); the JKO step preserves that mass.
        setup.grid = GridProblem.create(problem, geom)
        setup.p0, setup.mass_outside = np.asarray(p0, dtype=np.float64), float(outside)
    setup.F_star, setup.F_star_note = _reference_value(cfg, dataset)
    return setup


def _check_initial_objective(problem, theta0, dataset, cfg) -> None:
    """Check that F at t = 0 is finite.

    F at t = 0 (and the test loss) must be finite: data of extreme magnitude would
    otherwise fill the results with inf/NaN. Raises :class:`~mfjko.data.DataError`.
    """
    m = theta0.shape[0]
    losses = problem.losses(theta0, np.full(m, 1.0 / m), dataset.X_test, dataset.y_test)
    if not (math.isfinite(losses["loss"]) and math.isfinite(losses["test_loss"])):
        where = "data.path" if cfg.data.name == "file" else "data.kwargs"
        scale = max(float(np.abs(dataset.X).max()), float(np.abs(dataset.y).max()))
        raise data_mod.DataError(
            f"{where}: F at t = 0 is not finite ({losses['loss']:g}; largest |value| in the "
            f"data {scale:.3g}): rescale the data (e.g. standardize X and y)")


def _reference_value(cfg: RunConfig, dataset) -> tuple[float, str]:
    if not cfg.metrics.f_star:
        return math.nan, "F* not reported: metrics.f_star is false in the config"
    if cfg.model.parametrization not in FSTAR_PARAMS:
        return math.nan, (f"F* not reported: the {cfg.model.parametrization} weight decay is "
                          "not the TV-regularized problem mfjko.optimum solves")
    try:
        ref = optimum.reference_value(dataset, cfg.model.lam)
    except Exception as e:  # noqa: BLE001 — F* is an optional reference line; say why
        return math.nan, f"F* not reported: reference_value failed ({type(e).__name__}: {e})"
    return float(ref.value), f"F* = {ref.value:.10g} by mfjko.optimum ({ref.method}: {ref.reason})"
