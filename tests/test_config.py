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
            "langevin": {"h": 0.05, "match_jko": True, "m": 400, "seeds": 2},
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


def test_direction_gap_is_on_exactly_with_a_directional_method_unless_set():
    assert parse_config(base()).metrics.direction_gap is False
    raw = base()
    raw["methods"]["conic"] = {"h": 0.05}
    assert parse_config(raw).metrics.direction_gap is True
    raw["metrics"] = {"direction_gap": False}
    assert parse_config(raw).metrics.direction_gap is False
    raw = base()
    raw["metrics"] = {"direction_gap": True}
    assert parse_config(raw).metrics.direction_gap is True


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


def test_methods_as_list_and_empty_or_true_sections_enable_defaults():
    raw = base()
    raw["methods"] = ["gd", "flow"]
    cfg = parse_config(raw)
    assert cfg.methods.enabled() == ["gd", "flow"]
    assert cfg.methods.flow.rtol == 1e-8
    raw["methods"] = {"gd": {}, "implicit": True}
    raw["record_every"] = 0.2
    assert parse_config(raw).methods.enabled() == ["gd", "implicit"]


def test_null_or_false_switches_a_method_off(tmp_path):
    """Issue 10.7: `--set methods.flow=null` turned flow on (None meant "defaults")."""
    raw = base()
    raw["methods"]["flow"] = {"rtol": 1e-6}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert "flow" in load_config(path).methods.enabled()
    for off in ("null", "false", "~"):
        cfg = load_config(path, [f"methods.flow={off}"])
        assert cfg.methods.enabled() == ["gd", "langevin", "jko"] and cfg.methods.flow is None
    assert load_config(path, ["methods.flow={}"]).methods.flow.rtol == 1e-8
    assert load_config(path, ["methods.flow=true"]).methods.flow.rtol == 1e-8
    raw["methods"] = ["gd", "flow"]  # the list form can be switched too
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path, ["methods.flow=null"]).methods.enabled() == ["gd"]
    with pytest.raises(ConfigError, match="methods.gd is required"):
        load_config(path, ["methods.gd=null"])


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


def test_unknown_data_option_is_a_config_error_naming_it():
    raw = base()
    raw["data"]["kwargs"]["n_trian"] = 20
    msg = _error(raw)
    assert "data.kwargs.n_trian" in msg and "n_train" in msg and "\n" not in msg
    raw = base()
    raw["data"] = {"name": "file", "path": "x.npz", "kwargs": {"test_frac": 0.1}}
    assert "data.kwargs.test_frac" in _error(raw) and "test_fraction" in _error(raw)


def test_errors_are_one_line_naming_every_key():
    raw = base()
    raw["T"] = -1
    raw["methods"]["gd"]["step"] = 0.1
    msg = _error(raw)
    assert "\n" not in msg and "T:" in msg and "methods.gd.step" in msg


def test_yaml_errors_say_where(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("T: 1\nmethods: {gd: {h: 0.1}\nrecord_every: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "line 3" in str(e.value) and "\n" not in str(e.value)
    path.write_bytes(b"T: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)
    with pytest.raises(ConfigError, match="folder"):
        load_config(tmp_path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_extreme_time_axis_is_a_config_error_not_an_overflow():
    raw = base()
    raw["T"], raw["record_every"] = 1e308, 1e-308
    assert "record_every" in _error(raw)
    raw = base()
    raw["seed"] = 2**80
    assert "seed" in _error(raw)


# --------------------------------------------------------------------------- fuzzing
# Random malformed configs never escape as anything but ConfigError: no traceback.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from support import examples  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4)
                       | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12)
_KEYS = ["name", "description", "data", "data.name", "data.path", "data.kwargs",
         "data.kwargs.n_train", "data.kwargs.seed", "data.kwargs.noise", "model",
         "model.parametrization", "model.lam", "init", "init.law", "init.scale", "init.m",
         "init.path", "methods", "methods.gd", "methods.gd.h", "methods.flow",
         "methods.langevin", "methods.langevin.D", "methods.langevin.match_jko",
         "methods.jko", "methods.jko.tau", "methods.jko.eps", "methods.jko.grid",
         "methods.jko.grid.kind", "methods.jko.grid.ranges", "methods.jko.grid.sizes",
         "T", "record_every", "seed", "out", "metrics", "metrics.sinkhorn_eps",
         "metrics.max_support", "metrics.measure_gap", "nonsense", "methods.nonsense"]


def _set(raw: dict, key: str, value) -> dict:
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return raw


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _values), min_size=1, max_size=4))
def test_fuzz_mutated_configs_validate_or_raise_config_error(mutations):
    raw = base()
    for key, value in mutations:
        raw = _set(raw, key, value)
    try:
        cfg = parse_config(raw)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert cfg.T > 0 and cfg.n_segments >= 1 and cfg.methods.gd is not None


@settings(max_examples=examples(150), deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_fuzz_config_files_load_or_raise_config_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    try:
        load_config(path)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_fuzz_set_overrides_apply_or_raise_config_error(tmp_path_factory, overrides):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(base()))
    try:
        load_config(path, overrides)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
