r"""Sweep files: a base config plus axes, expanded into points (one run config each).

A sweep YAML has ``base`` (a config path, relative to the sweep file, or an inline
mapping), ``set`` (``--set`` overrides for every point), ``product`` (axes crossed with
each other: key → list of values) and ``zip`` (groups of keys varied together, one axis
per group). Keys use ``--set`` syntax, plus derived keys (:data:`DERIVED`) resolved
against the point's own grid and data (``jko.grid_n``, ``jko.eps_over_h2``, ``jko.courant``,
``jko.D``) and labels (``tag.<name>``, a coordinate only). null in a zip group: not set.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfjko.config import ConfigError, RunConfig, apply_overrides, parse_config

__all__ = ["SweepSpec", "Point", "load_sweep", "expand", "DERIVED", "resolve_point"]

#: derived keys: name → what it sets (documented in docs/STUDY.md)
DERIVED = {
    "jko.grid_n": "points per axis of a box grid: methods.jko.grid.sizes = [n]·(number of axes)",
    "jko.eps_over_h2": "ε/δ² at the grid's spacing δ: methods.jko.eps = value·δ²",
    "jko.courant": "c = τ·V₀/δ (cells per step at the initial RMS GD speed V₀): τ = c·δ/V₀, "
                   "snapped so that record_every/τ is an integer",
    "jko.D": "the diffusion D = ε/(4τ) the entropy adds: methods.jko.eps = 4·D·τ (after τ)",
}
#: keys starting with this label a point (a coordinate of the results) and set nothing
TAG = "tag."
#: the order in which derived keys are applied (each may need the previous ones)
_DERIVED_ORDER = ("jko.grid_n", "jko.eps_over_h2", "jko.courant", "jko.D")


class SweepSpec(BaseModel):
    """A validated sweep file (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "sweep"
    description: str = ""
    base: str | dict
    set: list[str] = Field(default_factory=list)
    product: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    batch: bool = True
    #: what ``mfjko study`` draws (phase, refinement, groups; docs/STUDY.md)
    study: dict[str, Any] = Field(default_factory=dict)
    #: sweep folder relative paths resolve from here (set by :func:`load_sweep`)
    root: str = "."

    @model_validator(mode="after")
    def _axes(self):
        for key, values in self.product.items():
            if not values:
                raise ValueError(f"product.{key} has no values")
        for i, group in enumerate(self.zip):
            lengths = {len(v) for v in group.values()}
            if len(lengths) != 1 or 0 in lengths:
                raise ValueError(f"zip[{i}]: the lists must be nonempty and of equal lengths, "
                                 f"got {[len(v) for v in group.values()]}")
        keys = list(self.product) + [k for g in self.zip for k in g]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a key appears on two axes: {keys}")
        return self

    def axes(self) -> list[tuple[str, list]]:
        """The sweep's axes in order, as (name, values) pairs.

        A zip group is one axis named by its keys joined with '+', whose values are dicts.
        """
        out = [(k, list(v)) for k, v in self.product.items()]
        for group in self.zip:
            keys = list(group)
            n = len(group[keys[0]])
            out.append(("+".join(keys), [{k: group[k][i] for k in keys} for i in range(n)]))
        return out

    def base_config(self) -> dict:
        """The base config as a raw mapping."""
        if isinstance(self.base, dict):
            return json.loads(json.dumps(self.base))
        path = Path(self.root) / self.base
        if not path.exists():
            raise ConfigError(f"sweep base config {path} does not exist")
        return yaml.safe_load(path.read_text()) or {}


@dataclass
class Point:
    """One point of a sweep: its index, coordinates (axis → value) and config overrides.

    The overrides make its config from the base. ``resolved`` holds the derived keys'
    actual values.
    """

    index: int
    coords: dict[str, Any]
    overrides: list[str]
    resolved: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """A stable folder name: index and a hash of the coordinates."""
        digest = hashlib.sha1(json.dumps(self.coords, sort_keys=True, default=str).encode())
        return f"{self.index:04d}-{digest.hexdigest()[:8]}"


def load_sweep(path) -> SweepSpec:
    """Read and validate a sweep YAML (:class:`ConfigError` naming the key)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep {path} must be a mapping of keys")
    try:
        return SweepSpec.model_validate({**raw, "root": str(path.resolve().parent)})
    except Exception as e:  # pydantic's ValidationError: one message per bad key
        raise ConfigError(f"invalid sweep {path}: {e}") from None


def _to_override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep (the Cartesian product of its axes), in a stable order."""
    axes = spec.axes()
    points = []
    for index, combo in enumerate(itertools.product(*(values for _, values in axes))):
        coords, overrides = {}, []
        for (name, _), value in zip(axes, combo, strict=True):
            coords[name] = value
            items = value.items() if isinstance(value, dict) else [(name, value)]
            # null in a zip group means "this key is not set at this position"
            overrides += [_to_override(k, v) for k, v in items
                          if k not in DERIVED and v is not None and not k.startswith(TAG)]
        points.append(Point(index, coords, overrides))
    return points


def _derived_values(point: Point) -> dict[str, Any]:
    out = {}
    for value in point.coords.values():
        if isinstance(value, dict):
            out.update({k: v for k, v in value.items() if k in DERIVED})
    out.update({k: v for k, v in point.coords.items() if k in DERIVED})
    return out


def resolve_point(spec: SweepSpec, point: Point) -> RunConfig:
    """The point's validated run config: base, ``set``, its overrides, then derived keys.

    The derived keys need the grid's spacing δ and the initial GD speed V₀.
    """
    raw = apply_overrides(spec.base_config(), list(spec.set) + point.overrides)
    derived = _derived_values(point)
    for key in _DERIVED_ORDER:
        if derived.get(key) is not None:
            raw = _apply_derived(key, float(derived[key]), raw, point)
    return parse_config(raw, f"point {point.id}")


def _grid_spacing(raw: dict) -> float:
    cfg = parse_config(raw, "sweep point")
    from mfjko.parametrizations import get

    param = get(cfg.model.parametrization)
    d = _input_dim(cfg)
    return float(param.build_grid(cfg.methods.jko.grid, d).spacing)


def _input_dim(cfg: RunConfig) -> int:
    from mfjko.runner.setup import _make_dataset

    return int(_make_dataset(cfg).X.shape[1])


def initial_speed(cfg: RunConfig) -> float:
    """V₀ = (mean_i ‖v_i‖²)^{1/2}, the RMS GD speed of the initial particles.

    v_i is the mean-field velocity −∇F′(μ₀)(θ_i) of particles drawn with the run's seed
    and law.
    """
    from mfjko import initial
    from mfjko.problem import MeanFieldProblem
    from mfjko.runner.setup import _make_dataset, _make_law

    ds = _make_dataset(cfg)
    problem = MeanFieldProblem.create(cfg.model.parametrization, ds.X, ds.y, cfg.model.lam)
    key = jax.random.split(jax.random.PRNGKey(cfg.seed), 4)[0]
    theta = initial.sample_particles(_make_law(cfg), problem.param, key, cfg.init.m, problem.d)
    v = np.asarray(problem.particle_velocity(theta))
    return float(np.sqrt(np.mean(np.sum(v * v, axis=1))))


def _apply_derived(key: str, value: float, raw: dict, point: Point) -> dict:
    if key == "jko.grid_n":
        n_axes = len(raw["methods"]["jko"]["grid"]["ranges"])
        point.resolved["grid_n"] = int(value)
        return apply_overrides(raw, [_to_override("methods.jko.grid.sizes",
                                                  [int(value)] * n_axes)])
    if key == "jko.D":
        eps = 4.0 * value * float(raw["methods"]["jko"]["tau"])
        point.resolved["eps"] = eps
        return apply_overrides(raw, [_to_override("methods.jko.eps", eps)])
    delta = _grid_spacing(raw)
    point.resolved["delta"] = delta
    if key == "jko.eps_over_h2":
        eps = value * delta**2
        point.resolved["eps"] = eps
        return apply_overrides(raw, [_to_override("methods.jko.eps", eps)])
    cfg = parse_config(raw, "sweep point")
    speed = initial_speed(cfg)
    tau_raw = value * delta / speed
    k = max(1, round(cfg.record_every / tau_raw))
    tau = cfg.record_every / k
    point.resolved.update(speed0=speed, tau=tau, courant=tau * speed / delta)
    return apply_overrides(raw, [_to_override("methods.jko.tau", tau)])
