r"""Run configuration: YAML files validated with pydantic v2 (unknown keys are errors).

A run compares every listed method with particle gradient descent (GD) on one data set,
one initial law and one mean-field time axis t (MATH.md: GD with step h advances t by h,
i.e. lr = m·h; a JKO step advances t by τ). Sections: ``name``, ``description``, ``data``,
``model``, ``init``, ``methods`` (one per registered method; GD is required), ``T``,
``record_every``, ``seed``, ``out``, ``metrics``; ``configs/default.yaml`` shows them all.
A method runs when its section is present: ``{}`` or ``true`` gives its defaults, ``null``
or ``false`` switches it off (``--set methods.flow=null``).

Static checks (here): types, unknown keys, λ ≥ 0, T a positive multiple of record_every,
record_every a multiple of every step h and τ, Langevin's D given exactly one way.
Checks that need the data and the grid (the initial mass outside the grid, ε versus the
grid spacing δ) are :func:`check_grid`, called before any dynamics run.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from mfjko import data as _data
from mfjko import methods as _methods
from mfjko import parametrizations as _params
from mfjko.errors import ConfigError  # re-exported: its historical home
from mfjko.geometry.spec import GridSpec  # re-exported: its historical home
from mfjko.methods.base import GridMethodConfig

__all__ = [
    "ConfigError",
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "InitConfig",
    "GridSpec",
    "JKOConfig",
    "MethodsConfig",
    "MetricsConfig",
    "load_config",
    "parse_config",
    "apply_overrides",
    "check_grid",
    "grid_range_key",
    "is_multiple",
    "MAX_MASS_OUTSIDE",
    "EPS_SAFETY",
    "METHOD_ORDER",
]

#: largest fraction of the initial law allowed to fall outside the JKO grid
MAX_MASS_OUTSIDE = 0.05
#: ε must be at least EPS_SAFETY · δ² (δ = grid spacing): below, a neighbour's kernel entry
#: exp(−δ²/ε) < e^{−100} is lost next to the diagonal's 1 in float64 (resolution 1e-16), so
#: the Gibbs kernel acts as the identity and no mass can move
EPS_SAFETY = 1e-2
#: order in which methods run and appear (GD first: it is every other method's reference)
METHOD_ORDER = tuple(m.name for m in _methods.runnable())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class DataConfig(_Strict):
    """The data set: a generator of :func:`mfjko.data.make_dataset` or a user file."""

    name: Literal["regression_1d", "teacher", "orthogonal", "digits", "file"] = "regression_1d"
    path: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _path_iff_file(self):
        if self.name == "file" and not self.path:
            raise ValueError("data.name = file needs data.path (a .npz with X, y or a .csv)")
        if self.name != "file" and self.path:
            raise ValueError(f"data.path is only used with data.name = file (got {self.name})")
        return self

    @model_validator(mode="after")
    def _known_kwargs(self):
        allowed = set(inspect.signature(_data.DATASETS[self.name]).parameters) - {"path"}
        unknown = sorted(str(k) for k in self.kwargs if k not in allowed)
        if unknown:
            raise ValueError(f"data.kwargs.{unknown[0]}: unknown option of the {self.name} "
                             f"data set; allowed: {', '.join(sorted(allowed))}")
        return self


class ModelConfig(_Strict):
    """The parametrization of a neuron and the weight decay λ ≥ 0."""

    parametrization: Literal["neuron", "signed", "pm", "sphere"] = "neuron"
    lam: float = Field(0.01, allow_inf_nan=False)

    @model_validator(mode="after")
    def _lam_nonnegative(self):
        if self.lam < 0:
            raise ValueError(f"model.lam must be ≥ 0 (weight decay), got {self.lam}")
        return self


class InitConfig(_Strict):
    """Initial law of classic neurons (mfjko.initial), shared by particles and grids."""

    law: Literal["gaussian", "balanced", "file"] = "gaussian"
    scale: PositiveFloat = 1.0
    path: str | None = None
    m: Annotated[int, Field(ge=1)] = 1000

    @model_validator(mode="after")
    def _path_iff_file(self):
        if self.law == "file" and not self.path:
            raise ValueError("init.law = file needs init.path (.npz with W, alpha or .csv)")
        if self.law != "file" and self.path:
            raise ValueError(f"init.path is only used with init.law = file (got {self.law})")
        return self


def _normalize_methods(value):
    """Normalize the ``methods`` section (list form, on/off values).

    ``methods: [gd, flow]`` enables methods with defaults; in the mapping form a section
    ``{}`` or ``true`` enables its method with defaults and ``null`` or ``false`` switches
    it off (``--set methods.flow=null``).
    """
    if isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("methods as a list must be method names, e.g. [gd, flow]")
        return {v: {} for v in value}
    if isinstance(value, dict):
        return {k: ({} if v is True else v) for k, v in value.items()
                if v is not None and v is not False}
    return value


class _MethodsBase(_Strict):
    _normalize = model_validator(mode="before")(_normalize_methods)

    def enabled(self) -> list[str]:
        """Names of the configured methods, in the registry's run order (GD first)."""
        return [name for name in METHOD_ORDER if getattr(self, name) is not None]

    def grid_methods(self) -> list[str]:
        """The configured grid methods (config a :class:`GridMethodConfig`), in run order."""
        return [name for name in self.enabled()
                if isinstance(getattr(self, name), GridMethodConfig)]

    def theta_grid(self) -> str | None:
        """The grid method whose ``grid`` over Θ the run builds (kind "grid", e.g. jko).

        The first in run order; None without one. Every such method runs on that one grid
        (:meth:`RunConfig._grid_matches_parametrization` checks that their grids agree).
        """
        names = [n for n in self.grid_methods() if _methods.get(n).kind == "grid"]
        return names[0] if names else None

    @model_validator(mode="after")
    def _gd_required(self):
        if self.gd is None:
            raise ValueError("methods.gd is required: GD is the reference every method is "
                             "compared with (add `gd: {h: 0.01}`)")
        if self.langevin is not None and self.langevin.match_jko and not self.grid_methods():
            raise ValueError("methods.langevin.match_jko needs a jko or wfr_jko method (its ε "
                             "and τ give D = ε/(4τ)); or set methods.langevin.D")
        return self


#: ``methods``: one optional section per registered method (mfjko.methods.REGISTRY)
MethodsConfig = create_model(
    "MethodsConfig", __base__=_MethodsBase,
    __doc__="The methods of a run: one optional section per registered method.",
    **{m.name: (m.config | None, None) for m in _methods.runnable()})
JKOConfig = _methods.jko.JKOConfig


class MetricsConfig(_Strict):
    """How gaps are measured.

    ``sinkhorn_eps`` is the absolute ε of the Sinkhorn divergence
    (squared Θ-distance units), fixed for the whole run; its Sinkhorn solves stop at an
    L1 marginal error ``sinkhorn_tol``. ``max_support``: particle measures use their
    first max_support particles (an iid subsample, the same indices for GD). Grid measures
    with more than max_grid_support points: on a Cartesian box (squared Euclidean cost)
    the gap is exact (:func:`mfjko.metrics.grid_sinkhorn_divergence`, self-term on OTT's
    separable Grid; measure_gap_grid_tv is the pruned mass, < N·1e-14); on other grids
    the measure is compressed to max_grid_support atoms by systematic resampling
    (:func:`mfjko.metrics.compress_measure`; the moved mass is reported as
    measure_gap_grid_tv). ``direction_gap``: also record the lift-free directional gap
    (neuron and sphere runs, when ``measure_gap`` asks for a gap); unset, it is on exactly
    when a directional (WFR) method runs, ``conic`` or ``wfr_jko`` (its Sinkhorn solves on
    the sphere cost several times the measure gap's). ``particles_saved``:
    particles per record kept in trajectories.zarr. ``measure_gap``: at every record
    ("all"), at T only ("final", sweeps) or never ("none"). ``f_star``: compute the
    reference optimum F* (false: skip it; its convex program takes many minutes for
    high-dimensional Θ, e.g. digits with 16 PCA components).
    """

    sinkhorn_eps: PositiveFloat = 0.05
    sinkhorn_tol: PositiveFloat = 1e-6
    sinkhorn_max_iter: Annotated[int, Field(ge=10)] = 5000
    max_support: Annotated[int, Field(ge=16)] = 600
    max_grid_support: Annotated[int, Field(ge=16)] = 1500
    particles_saved: Annotated[int, Field(ge=1)] = 300
    measure_gap: Literal["all", "final", "none"] = "all"
    direction_gap: bool | None = None
    f_star: bool = True


class RunConfig(_Strict):
    """A whole run (module docstring): data, model, initial law, methods, time axis."""

    name: str = "run"
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    methods: MethodsConfig
    T: PositiveFloat
    record_every: PositiveFloat
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    out: str = "runs/run"
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _grid_matches_parametrization(self):
        for name in self.methods.enabled():  # methods that run on some parametrizations only
            allowed = getattr(type(getattr(self.methods, name)), "parametrizations", None)
            if allowed is not None and self.model.parametrization not in allowed:
                raise ValueError(f"methods.{name} runs on model.parametrization in "
                                 f"{list(allowed)}, not {self.model.parametrization}")
        want = _params.get(self.model.parametrization).grid_kind
        first = self.methods.theta_grid()
        for name in self.methods.grid_methods():
            if _methods.get(name).kind != "grid":
                continue
            jc = getattr(self.methods, name)
            if jc.grid.kind != want:
                raise ValueError(
                    f"methods.{name}.grid.kind = {jc.grid.kind} does not fit "
                    f"model.parametrization = {self.model.parametrization}: use kind {want}"
                )
            if jc.grid != getattr(self.methods, first).grid:
                raise ValueError(f"methods.{name}.grid differs from methods.{first}.grid: the "
                                 "grid methods of a run share one grid; give them the same")
        return self

    @model_validator(mode="after")
    def _resolve_direction_gap(self):
        if self.metrics.direction_gap is None:  # the resolved config records the choice
            on = any(_methods.get(name).directional for name in self.methods.enabled())
            # configs are frozen: the resolved section replaces the unresolved one
            object.__setattr__(self, "metrics",
                               self.metrics.model_copy(update={"direction_gap": on}))
        return self

    @model_validator(mode="after")
    def _time_axis(self):
        if not is_multiple(self.T, self.record_every):
            raise ValueError(
                f"T = {self.T} is not a multiple of record_every = {self.record_every}: "
                f"set T to a multiple (e.g. {round_up(self.T, self.record_every):g})"
            )
        for name in self.methods.enabled():
            mc = getattr(self.methods, name)
            step = mc.step_size()
            key = "tau" if "tau" in type(mc).model_fields else "h"
            if step is None:
                continue
            if not is_multiple(self.record_every, step):
                raise ValueError(
                    f"record_every = {self.record_every} is not a multiple of "
                    f"methods.{name}.{key} = {step}, so T = {self.T} is not reached on the "
                    f"recording grid: choose methods.{name}.{key} dividing record_every "
                    f"(e.g. {self.record_every / max(1, round(self.record_every / step)):g})"
                )
        return self

    def langevin_D(self) -> float | None:
        """The Langevin diffusion D, or None without Langevin.

        When matched: ε/(4τ) of the first grid method in run order (jko before wfr_jko).
        """
        lc = self.methods.langevin
        if lc is None:
            return None
        if lc.match_jko:
            mc = getattr(self.methods, self.methods.grid_methods()[0])
            return mc.eps / (4.0 * mc.tau)
        return lc.D

    def steps_per_record(self, name: str) -> int:
        """Steps of method ``name`` per recording interval (1 for the adaptive flow)."""
        step = getattr(self.methods, name).step_size()
        return 1 if step is None else int(round(self.record_every / step))

    @property
    def n_segments(self) -> int:
        """Recording intervals up to T."""
        return int(round(self.T / self.record_every))


def is_multiple(a: float, b: float, rel: float = 1e-9) -> bool:
    """Whether a = k·b for an integer k ≥ 1, up to relative rounding.

    ``rel`` is the relative tolerance; False when a/b is not a finite number.
    """
    ratio = a / b if b != 0 else math.inf
    if not math.isfinite(ratio):
        return False
    k = round(ratio)
    return k >= 1 and abs(a - k * b) <= rel * max(abs(a), abs(b))


def round_up(a: float, b: float) -> float:
    """The smallest multiple of b that is ≥ a (a itself when a/b overflows)."""
    ratio = a / b
    return math.ceil(ratio - 1e-9) * b if math.isfinite(ratio) else a


def _format_validation_error(err: ValidationError, source: str, what: str = "config") -> str:
    """One line: every invalid key with what is wrong, separated by "; ".

    ``what`` names the document ("config", "sweep") in the message.
    """
    def key(part) -> str:  # a key with a line break or other control character: quoted
        text = str(part)
        return text if text.isprintable() else repr(text)

    items = []
    for e in err.errors():
        loc = ".".join(key(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = ".".join(key(p) for p in e["loc"][:-1]) or "top level"
            items.append(f"{loc}: unknown key (not allowed under {parent}); "
                         "check its spelling against the documented keys")
        elif e["type"] == "missing":
            items.append(f"{loc}: required key is missing")
        else:
            msg = " ".join(e["msg"].removeprefix("Value error, ").split())
            got = e.get("input")
            got_s = "" if isinstance(got, dict | list) else f" (got {_short(got)})"
            items.append(f"{loc or what}: {msg}{got_s}")
    return f"invalid {what} {source}: " + "; ".join(items)


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_config(raw: dict, source: str = "<dict>") -> RunConfig:
    """Validate a config dict; raise :class:`ConfigError` naming each bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config {source} must be a mapping of keys, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
    except RecursionError:
        raise ConfigError(f"config {source} is nested too deeply to be a config") from None
    except (TypeError, ArithmeticError) as e:  # a validator meeting a value of a wrong kind
        raise ConfigError(f"invalid config {source}: {type(e).__name__}: {e}") from None


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key=value`` overrides with dotted keys.

    E.g. ``methods.jko.eps=0.01``; values are parsed as YAML scalars/flow collections
    (``[11, 11]``, ``true``, ``1e-3``).
    """
    raw = _deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. methods.jko.eps=0.01")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty component in key {key!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({_yaml_error(e)})"
                              ) from None
        node = raw
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return raw


def _deepcopy(x):
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


def _resolve_path(path: str | None, base: Path) -> str | None:
    """Resolve a relative path of a config.

    A relative path is taken from the working directory if it exists there, else from
    the config file's folder (so shipped configs can reference files beside them).
    """
    if path is None:
        return None
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or p.exists():
        return str(p.resolve())
    return str((base / p).resolve())


def _yaml_error(e: yaml.YAMLError) -> str:
    """A YAML error on one line: where and what."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    return where + " ".join(str(problem).split())


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config, apply ``--set`` overrides, validate (:class:`ConfigError`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist (see `mfjko examples`)")
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder, not a YAML file (see `mfjko examples`)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML ({_yaml_error(e)}); fix the "
                          "syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"config {path} is nested too deeply to be a config") from None
    except OSError as e:
        raise ConfigError(f"config {path} cannot be read ({e.strerror or e})") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of keys (name: ..., methods: ...), "
                          f"got a {type(raw).__name__}")
    if isinstance(raw.get("methods"), list | tuple):  # list form, so --set can address it
        raw["methods"] = _normalize_methods(raw["methods"]) if all(
            isinstance(v, str) for v in raw["methods"]) else raw["methods"]
    raw = apply_overrides(raw, overrides)
    cfg = parse_config(raw, str(path))
    base = path.resolve().parent
    data = cfg.data.model_copy(update={"path": _resolve_path(cfg.data.path, base)})
    init = cfg.init.model_copy(update={"path": _resolve_path(cfg.init.path, base)})
    return cfg.model_copy(update={"data": data, "init": init})


def check_grid(cfg: RunConfig, spacing: float, mass_outside: float) -> None:
    """Checks that need the built grid.

    Raise :class:`ConfigError` if more than MAX_MASS_OUTSIDE of the initial law falls
    outside it, or if ε < EPS_SAFETY · spacing²
    (the Gibbs kernel exp(−C/ε) would be the identity to float64: no transport at all).
    """
    name = cfg.methods.theta_grid()
    if name is None:
        return
    jc = getattr(cfg.methods, name)
    if mass_outside > MAX_MASS_OUTSIDE:
        key = grid_range_key(cfg)
        raise ConfigError(
            f"methods.{key}: the grid misses {100 * mass_outside:.1f} % of the initial law "
            f"(init.{cfg.init.law}, scale {cfg.init.scale}); at most "
            f"{100 * MAX_MASS_OUTSIDE:.0f} % is allowed: widen methods.{key} or reduce "
            "init.scale"
        )
    safe = EPS_SAFETY * spacing**2
    for name in cfg.methods.grid_methods():  # every method on the run's grid
        jc = getattr(cfg.methods, name)
        if _methods.get(name).kind == "grid" and jc.eps < safe:
            raise ConfigError(
                f"methods.{name}.eps = {jc.eps:g} is too small for the grid spacing δ = "
                f"{spacing:.4g}: a neighbour's kernel entry exp(-δ²/ε) is below float64 "
                f"resolution, no mass can move. Use methods.{name}.eps ≥ {safe:.3g} "
                f"(= {EPS_SAFETY:g}·δ²), or refine the grid"
            )


def grid_range_key(cfg: RunConfig) -> str:
    """The key of the run's grid extent: ``<method>.grid.ranges`` (or ``.beta_range``)."""
    name = cfg.methods.theta_grid()
    kind = getattr(cfg.methods, name).grid.kind
    return f"{name}.grid.beta_range" if kind == "sphere_line" else f"{name}.grid.ranges"
