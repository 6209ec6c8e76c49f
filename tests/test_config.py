"""Config validation: every invalid class fails before any work, naming the key and fix."""

from pathlib import Path

import jax
import pytest
import yaml

import mfjko  # noqa: F401
from mfjko import grids, initial, parametrizations
from mfjko.config import (
    ConfigError,
    apply_overrides,
    check_grid,
    load_config,
    parse_config,
)
from mfjko.runner import build_geometry

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def base() -> dict:
    return {
        "data": {"name": "regression_1d", "kwargs": {"n_train": 8}},
        "model": {"parametrization": "neuron", "lam": 0.01},
        "init": {"law": "gaussian", "scale": 0.5, "m": 50},
        "methods": {
            "gd": {"h": 0.05},
            "langevin": {"h": 0.05, "match_jko": True},
            "jko": {"tau": 0.1, "eps": 0.05,
                    "grid": {"kind": "cartesian", "ranges": [[-2, 2]] * 3, "sizes": [9] * 3}},
        },
        "T": 0.6,
        "record_every": 0.2,
    }


def test_shipped_configs_are_valid():
    files = sorted(CONFIGS.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"default", "signed", "sphere", "orthogonal", "teacher", "digits"} <= names
    for f in files:
        cfg = load_config(f)
        assert cfg.description, f"{f.name} needs a one-line description"
        assert cfg.methods.gd is not None


def test_valid_config_resolves_defaults_and_langevin_D():
    cfg = parse_config(base())
    assert cfg.methods.enabled() == ["gd", "langevin", "jko"]
    assert cfg.langevin_D() == pytest.approx(0.05 / (4 * 0.1))
    assert cfg.n_segments == 3
    assert cfg.steps_per_record("gd") == 4 and cfg.steps_per_record("jko") == 2


def _error(raw) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    return str(e.value)


def test_unknown_key_is_named():
    raw = base()
    raw["methods"]["jko"]["epsilon"] = 0.1
    msg = _error(raw)
    assert "methods.jko.epsilon" in msg and "unknown key" in msg
    raw = base()
    raw["horizon"] = 3
    assert "horizon" in _error(raw)


def test_wrong_type_is_named():
    raw = base()
    raw["methods"]["jko"]["tau"] = "fast"
    msg = _error(raw)
    assert "methods.jko.tau" in msg and "'fast'" in msg
    raw = base()
    raw["init"]["m"] = 2.5
    assert "init.m" in _error(raw)


def test_T_not_multiple_of_tau_or_record_every():
    raw = base()
    raw["methods"]["jko"]["tau"] = 0.15
    msg = _error(raw)
    assert "methods.jko.tau" in msg and "multiple" in msg
    raw = base()
    raw["T"] = 0.7
    msg = _error(raw)
    assert "record_every" in msg and "T = 0.7" in msg and "0.8" in msg
    raw = base()
    raw["methods"]["gd"]["h"] = 0.03
    assert "methods.gd.h" in _error(raw)


def test_impossible_settings():
    raw = base()
    raw["model"]["lam"] = -0.1
    assert "model.lam" in _error(raw)
    raw = base()
    raw["methods"]["langevin"] = {"h": 0.05, "D": 0.1, "match_jko": True}
    assert "exactly one of D" in _error(raw)
    raw = base()
    del raw["methods"]["gd"]
    assert "methods.gd is required" in _error(raw)
    raw = base()
    raw["methods"]["jko"]["grid"]["kind"] = "sphere_line"
    assert "n_dirs" in _error(raw)
    raw = base()
    raw["model"]["parametrization"] = "sphere"
    assert "use kind sphere_line" in _error(raw)
    raw = base()
    raw["methods"]["jko"]["grid"]["ranges"] = [[2, -2]] * 3
    assert "lo < hi" in _error(raw)
    raw = base()
    raw["data"] = {"name": "file"}
    assert "data.path" in _error(raw)


def test_methods_as_list_and_null_values_enable_defaults():
    raw = base()
    raw["methods"] = ["gd", "flow"]
    cfg = parse_config(raw)
    assert cfg.methods.enabled() == ["gd", "flow"]
    assert cfg.methods.flow.rtol == 1e-8
    raw["methods"] = {"gd": None, "implicit": None}
    raw["record_every"] = 0.2
    assert parse_config(raw).methods.enabled() == ["gd", "implicit"]


def test_overrides_with_dotted_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base()))
    cfg = load_config(path, ["methods.jko.eps=0.01", "T=0.4", "seed=3",
                             "methods.jko.grid.sizes=[5, 5, 5]", "methods.flow.rtol=1e-6"])
    assert cfg.methods.jko.eps == 0.01 and isinstance(cfg.methods.jko.eps, float)
    assert cfg.T == 0.4 and cfg.seed == 3
    assert cfg.methods.jko.grid.sizes == [5, 5, 5]
    assert cfg.methods.flow.rtol == 1e-6
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["methods.jko.eps"])
    with pytest.raises(ConfigError, match="methods.jko.nonsense"):
        load_config(path, ["methods.jko.nonsense=1"])
    with pytest.raises(ConfigError, match="T = 0.5"):
        load_config(path, ["T=0.5"])
    raw = apply_overrides({"a": 1}, ["b.c=x"])
    assert raw == {"a": 1, "b": {"c": "x"}}


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def _grid_mass(raw):
    cfg = parse_config(raw)
    param = parametrizations.get("neuron")
    geom = build_geometry(cfg, param, 2)
    p0, outside = grids.discretize(initial.GaussianLaw(cfg.init.scale), param, geom,
                                   jax.random.PRNGKey(0))
    return cfg, geom, outside


def test_grid_missing_the_mass_is_an_error():
    raw = base()
    raw["methods"]["jko"]["grid"]["ranges"] = [[-0.3, 0.3]] * 3
    cfg, geom, outside = _grid_mass(raw)
    assert outside > 0.05
    with pytest.raises(ConfigError) as e:
        check_grid(cfg, float(geom.spacing), outside)
    assert "methods.jko.grid.ranges" in str(e.value) and "widen" in str(e.value)
    cfg, geom, outside = _grid_mass(base())  # [-2, 2]³ holds N(0, 0.25) but ~1e-4
    assert outside < 1e-3
    check_grid(cfg, float(geom.spacing), outside)


def test_eps_too_small_for_spacing_names_smallest_safe_value():
    raw = base()
    raw["methods"]["jko"]["eps"] = 1e-4
    cfg, geom, outside = _grid_mass(raw)
    h = float(geom.spacing)
    assert h == pytest.approx(0.5)
    with pytest.raises(ConfigError) as e:
        check_grid(cfg, h, outside)
    assert "methods.jko.eps" in str(e.value) and "0.0025" in str(e.value)


def test_grid_axes_must_match_parametrization():
    raw = base()
    raw["methods"]["jko"]["grid"]["ranges"] = [[-2, 2]] * 2
    raw["methods"]["jko"]["grid"]["sizes"] = [9, 9]
    cfg = parse_config(raw)
    with pytest.raises(ConfigError, match="needs 3"):
        build_geometry(cfg, parametrizations.get("neuron"), 2)
