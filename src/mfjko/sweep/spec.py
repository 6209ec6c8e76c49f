r"""Sweep files: a base config plus axes, expanded into points (one run config each).

A sweep YAML has ``base`` (a config path, relative to the sweep file, or an inline
mapping), ``set`` (``--set`` overrides for every point), ``product`` (axes crossed with
each other: key → list of values) and ``zip`` (groups of keys varied together, one axis
per group). Keys use ``--set`` syntax, plus derived keys ``<method>.<name>`` (:data:`DERIVED`)
of any grid method with τ, ε and a spacing (``jko``: its grid; ``wfr_jko``: its directions'
angular spacing), resolved against the point's own grid and data (``jko.grid_n``,
``<method>.eps_over_delta2``, ``<method>.courant``, ``<method>.D``; ``<method>.debias``
sets the debiased step) and labels (``tag.<name>``, a coordinate only). null in a zip
group: not set.
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mfjko import initial
from mfjko.config import (
    ConfigError,
    RunConfig,
    _format_validation_error,
    _yaml_error,
    apply_overrides,
    parse_config,
)
from mfjko.methods import REGISTRY
from mfjko.methods.base import GridMethodConfig, rms_speed
from mfjko.problem import MeanFieldProblem

# private helpers of the runner's setup (issue 19: to become its public API)
from mfjko.runner.setup import dataset_for, law_for
from mfjko.sweep.results import RENAMED, current_name, fact_prefix, upgrade_spec

__all__ = ["SweepSpec", "Point", "load_sweep", "expand", "DERIVED", "derived_key", "resolve_point",
           "grid_spacing", "initial_speed", "check_keys", "stored_spec"]

#: derived keys <method>.<name> → what they set (documented in docs/STUDY.md); <method> is
#: a grid method whose config has tau and eps (jko, wfr_jko)
DERIVED = {
    "<method>.grid_n": "points per axis of a box grid: methods.<method>.grid.sizes = "
                       "[n]·(number of axes) (grids with ranges: jko)",
    "<method>.eps_over_delta2": "ε/δ² at the grid's spacing δ: methods.<method>.eps = value·δ²",
    "<method>.courant": "c = τ·V₀/δ (cells per step at the initial RMS speed V₀ of the "
                        "method's moving coordinates: GD's in Θ for jko, the angular speed "
                        "for wfr_jko): τ = c·δ/V₀, snapped so that record_every/τ is an integer",
    "<method>.D": "the diffusion D = ε/(4τ) the entropy adds: methods.<method>.eps = 4·D·τ "
                  "(after τ)",
    "<method>.debias": "the debiased step (− (ε/2)H(p), docs/MATH.md): "
                       "methods.<method>.debias = value (true/false)",
}
#: keys starting with this label a point (a coordinate of the results) and set nothing
TAG = "tag."
#: the order in which derived keys are applied (each may need the previous ones)
_DERIVED_ORDER = ("debias", "grid_n", "eps_over_delta2", "courant", "D")


def derived_key(key: str) -> tuple[str, str] | None:
    """(method, name) if ``key`` is a derived key ``<method>.<name>``, else None."""
    method, _, name = key.partition(".")
    return (method, name) if method in REGISTRY and name in _DERIVED_ORDER else None


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
    #: vmap a group's JKO runs over ε; None: on an accelerator only (mfjko.sweep.execute)
    vmap_jko: bool | None = None
    #: what ``mfjko study`` draws (phase, refinement, groups; docs/STUDY.md)
    study: dict[str, Any] = Field(default_factory=dict)
    #: where an inline ``base`` came from (the stored DIR/sweep.yaml: the original path)
    base_source: str | None = None
    #: sweep folder relative paths resolve from here (set by :func:`load_sweep`)
    root: str = "."

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):  # old key names (mfjko.sweep.results.RENAMED): a warning
        return upgrade_spec(data) if isinstance(data, dict) else data

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
        if not path.is_file():
            raise ConfigError(f"sweep base config {path} does not exist (base: is a path "
                              "relative to the sweep file, or a mapping)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"sweep base config {path} is not valid YAML "
                              f"({_yaml_error(e)})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"sweep base config {path} cannot be read ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"sweep base config {path} must be a mapping of keys")
        return raw


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
    #: digest of the sweep's base config and ``set`` (:func:`expand`)
    context: str = ""

    @property
    def id(self) -> str:
        """A stable folder name: index and a hash of the coordinates, base config and set.

        A point whose base, ``set`` or coordinates changed gets a new folder, so a resumed
        sweep never takes an edited spec's points for done.
        """
        text = json.dumps(_id_coords(self.coords), sort_keys=True, default=str) + self.context
        return f"{self.index:04d}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


#: new → old names of renamed keys (mfjko.sweep.results.RENAMED)
_OLD_NAMES = {new: old for old, new in RENAMED.items()}


def _id_coords(coords: dict) -> dict:
    """The coordinates a point id hashes: renamed keys under their old names.

    So the ids of points (and the folders of sweeps run before a rename) stay the same.
    """
    def old(k):
        return current_name(k, _OLD_NAMES)

    return {old(k): {old(kk): vv for kk, vv in v.items()} if isinstance(v, dict) else v
            for k, v in coords.items()}


def load_sweep(path) -> SweepSpec:
    """Read and validate a sweep YAML (:class:`ConfigError` naming the key)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep {path} is not valid YAML ({_yaml_error(e)}); fix the "
                          "syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep {path} must be a mapping of keys")
    if "base_config" in raw:  # DIR/sweep.yaml of sweeps before base_source: base inline
        raw = dict(raw)
        source = raw.get("base")
        raw["base"] = raw.pop("base_config")
        raw["base_source"] = source if isinstance(source, str) else None
    try:
        return SweepSpec.model_validate({**raw, "root": str(path.resolve().parent)})
    except ValidationError as e:  # one line: each bad key and what is wrong
        raise ConfigError(_format_validation_error(e, str(path), what="sweep")) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid sweep {path}: {' '.join(str(e).split())}") from None


def stored_spec(spec: SweepSpec) -> dict:
    """The spec as stored in DIR/sweep.yaml: runnable again with ``mfjko sweep``.

    The base config is stored inline (a relative ``base`` path would not resolve from
    DIR), its file in ``base_source``.
    """
    doc = spec.model_dump(mode="json")
    doc.pop("root")
    if isinstance(spec.base, str):
        doc["base_source"] = str(Path(spec.root) / spec.base)
    doc["base"] = spec.base_config()
    return doc


def check_keys(spec: SweepSpec) -> None:
    """Fail (:class:`ConfigError`) on a ``set`` or axis key that no config has.

    A key ``<method>.<name>`` must be a derived key (:data:`DERIVED`); any other key must
    exist in the run config (the message names the full key as written in the sweep).
    Values are checked later, point by point (:func:`resolve_point`).
    """
    base = spec.base_config()
    if not isinstance(base, dict):
        raise ConfigError(f"sweep base config must be a mapping, got {type(base).__name__}")
    items = []
    for i, item in enumerate(spec.set):
        key = item.split("=", 1)[0].strip()
        items.append((f"set[{i}]", key, item))
    for name, values in spec.axes():
        first = values[0]
        pairs = first.items() if isinstance(first, dict) else [(name, first)]
        for key, value in pairs:
            where = "zip" if isinstance(first, dict) else "product"
            items.append((f"{where} axis", key, _to_override(key, value)))
    derived = ", ".join(f"<method>.{n}" for n in _DERIVED_ORDER)
    for where, key, override in items:
        if where.startswith("set") and (derived_key(key) is not None or key.startswith(TAG)):
            raise ConfigError(f"sweep {where} key {key}: derived keys and tags go on an axis "
                              f"(product: {{{key}: [value]}}), not in set")
        if key.startswith(TAG) or derived_key(key) is not None:
            continue
        method, dot, _ = key.partition(".")
        if dot and method in REGISTRY:
            raise ConfigError(f"sweep {where} key {key}: unknown derived key (derived keys: "
                              f"{derived}); write a config key in full, e.g. "
                              f"methods.{key}")
        raw = apply_overrides(base, [override])
        try:
            RunConfig.model_validate(raw)
        except ValidationError as err:
            parts = tuple(key.split("."))
            for e in err.errors():
                loc = tuple(str(p) for p in e["loc"])
                if e["type"] == "extra_forbidden" and loc and parts[:len(loc)] == loc:
                    parent = ".".join(loc[:-1]) or "the top level"
                    raise ConfigError(f"sweep {where} key {key}: unknown key ({loc[-1]} is not "
                                      f"a key of {parent}); check its spelling against the "
                                      "documented keys (src/mfjko/config.py)") from None
        except Exception:  # noqa: BLE001 — values are checked point by point
            pass


def _to_override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the sweep (the Cartesian product of its axes), in a stable order."""
    axes = spec.axes()
    try:
        base = spec.base_config()
    except ConfigError:  # reported when the points are resolved
        base = None
    context = hashlib.sha1(json.dumps({"base": base, "set": list(spec.set)}, sort_keys=True,
                                      default=str).encode()).hexdigest()
    points = []
    for index, combo in enumerate(itertools.product(*(values for _, values in axes))):
        coords, overrides = {}, []
        for (name, _), value in zip(axes, combo, strict=True):
            coords[name] = value
            items = value.items() if isinstance(value, dict) else [(name, value)]
            # null in a zip group means "this key is not set at this position"
            overrides += [_to_override(k, v) for k, v in items
                          if derived_key(k) is None and v is not None and not k.startswith(TAG)]
        points.append(Point(index, coords, overrides, context=context))
    return points


def _derived_values(point: Point) -> dict[str, Any]:
    out = {}
    for value in point.coords.values():
        if isinstance(value, dict):
            out.update({k: v for k, v in value.items() if derived_key(k) is not None})
    out.update({k: v for k, v in point.coords.items() if derived_key(k) is not None})
    return out


def resolve_point(spec: SweepSpec, point: Point) -> RunConfig:
    """The point's validated run config.

    Base, ``set``, its overrides, then its derived keys (which need the method's grid
    spacing δ and initial speed V₀), by name in the order grid_n, eps_over_delta2, courant, D.
    """
    raw = apply_overrides(spec.base_config(), list(spec.set) + point.overrides)
    derived = _derived_values(point)
    for name in _DERIVED_ORDER:
        for key, value in derived.items():
            method, kname = derived_key(key)
            if kname == name and value is not None:
                value = _as_bool(key, value) if name == "debias" else float(value)
                raw = _apply_derived(method, name, value, raw, point)
    return parse_config(raw, f"point {point.id}")


def _grid_method(cfg: RunConfig, method: str) -> GridMethodConfig:
    """The config section of a grid method (a :class:`GridMethodConfig`), else ConfigError."""
    mc = getattr(cfg.methods, method, None)
    if not isinstance(mc, GridMethodConfig):
        raise ConfigError(f"derived keys {method}.*: methods.{method} must be configured and "
                          "have tau and eps")
    return mc


def grid_spacing(cfg: RunConfig, method: str = "jko", d: int | None = None) -> float:
    """δ of a grid method: its config's :meth:`~GridMethodConfig.spacing`.

    jko: the spacing of its grid built by the parametrization; wfr_jko: the angular
    spacing of its directions.
    """
    mc = _grid_method(cfg, method)
    d = _input_dim(cfg) if d is None else d
    return float(mc.spacing(d, cfg.model.parametrization))


def _input_dim(cfg: RunConfig) -> int:
    return int(dataset_for(cfg).X.shape[1])


def initial_speed(cfg: RunConfig, method: str = "jko") -> float:
    """V₀, the initial RMS speed a grid method's Courant number is measured with.

    The method's :meth:`GridMethodConfig.initial_speed` of the initial particles (the
    run's seed and law): by default (jko, or ``method`` not configured) the RMS GD speed
    (mean_i ‖v_i‖²)^{1/2} of the mean-field velocity −∇F′(μ₀)(θ_i); wfr_jko: the angular
    speed.
    """
    ds = dataset_for(cfg)
    problem = MeanFieldProblem.create(cfg.model.parametrization, ds.X, ds.y, cfg.model.lam)
    key = jax.random.split(jax.random.PRNGKey(cfg.seed), 4)[0]
    law = law_for(cfg)
    theta = initial.sample_particles(law, problem.param, key, cfg.init.m, problem.d)
    mc = getattr(cfg.methods, method, None)
    if isinstance(mc, GridMethodConfig):
        return float(mc.initial_speed(problem, np.asarray(theta), law))
    return rms_speed(problem, theta)


def _as_bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"sweep key {key} takes true or false, got {value!r}")


def _apply_derived(method: str, name: str, value, raw: dict, point: Point) -> dict:
    prefix = fact_prefix(method)
    section = f"methods.{method}"
    if name == "debias":
        if method not in raw.get("methods", {}):
            raise ConfigError(f"{method}.debias needs methods.{method} in the config")
        point.resolved[prefix + "debias"] = value
        return apply_overrides(raw, [_to_override(f"{section}.debias", value)])
    if name == "grid_n":
        ranges = raw["methods"][method].get("grid", {}).get("ranges")
        if ranges is None:
            raise ConfigError(f"{method}.grid_n needs a box grid ({section}.grid.ranges)")
        point.resolved[prefix + "grid_n"] = int(value)
        return apply_overrides(raw, [_to_override(f"{section}.grid.sizes",
                                                  [int(value)] * len(ranges))])
    cfg = parse_config(raw, "sweep point")
    mc = _grid_method(cfg, method)
    if name == "D":
        eps = 4.0 * value * float(mc.tau)
        point.resolved[prefix + "eps"] = eps
        return apply_overrides(raw, [_to_override(f"{section}.eps", eps)])
    delta = grid_spacing(cfg, method)
    point.resolved[prefix + "delta"] = delta
    if name == "eps_over_delta2":
        eps = value * delta**2
        point.resolved[prefix + "eps"] = eps
        return apply_overrides(raw, [_to_override(f"{section}.eps", eps)])
    speed = initial_speed(cfg, method)
    tau_raw = value * delta / speed
    k = max(1, round(cfg.record_every / tau_raw))
    tau = cfg.record_every / k
    point.resolved.update({prefix + "speed0": speed, prefix + "tau": tau,
                           prefix + "courant": tau * speed / delta})
    return apply_overrides(raw, [_to_override(f"{section}.tau", tau)])
