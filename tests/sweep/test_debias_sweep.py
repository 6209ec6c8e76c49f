"""The debiased JKO step as a config key and a sweep axis (issue 20)."""

import pytest
import yaml

from mfjko.config import ConfigError, apply_overrides, parse_config
from mfjko.methods import REGISTRY
from mfjko.sweep import expand, load_sweep, resolve_point

BASE = {
    "data": {"name": "regression_1d", "kwargs": {"n_train": 8, "n_test": 30, "seed": 1}},
    "model": {"parametrization": "neuron", "lam": 0.01},
    "init": {"law": "gaussian", "scale": 0.5, "m": 40},
    "methods": {"gd": {"h": 0.05},
                "jko": {"tau": 0.1, "eps": 0.05,
                        "grid": {"kind": "cartesian", "ranges": [[-2, 2]] * 3,
                                 "sizes": [5, 5, 5]}}},
    "T": 0.4, "record_every": 0.2,
}


def test_config_key_reaches_the_solver_options():
    cfg = parse_config(apply_overrides(BASE, ["methods.jko.debias=true"]), "test")
    assert cfg.methods.jko.debias is True
    stepper = REGISTRY["jko"].build(cfg.methods.jko, None)
    assert stepper.options.debias is True
    assert parse_config(BASE, "test").methods.jko.solver_options().debias is False


@pytest.mark.parametrize("key", ["jko.debias", "methods.jko.debias"])
def test_debias_as_a_sweep_axis(tmp_path, key):
    spec = {"name": "d", "base": BASE,
            "product": {key: [False, True], "jko.eps_over_delta2": [0.5]}}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep = load_sweep(path)
    points = expand(sweep)
    assert len({p.id for p in points}) == 2
    flags = [resolve_point(sweep, p).methods.jko.debias for p in points]
    assert flags == [False, True]
    if key == "jko.debias":
        assert points[1].resolved["debias"] is True


def test_debias_axis_rejects_non_booleans(tmp_path):
    spec = {"name": "d", "base": BASE, "product": {"jko.debias": ["maybe"]}}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep = load_sweep(path)
    with pytest.raises(ConfigError, match="true or false"):
        resolve_point(sweep, expand(sweep)[0])


def test_report_verdict_names_the_debiased_step():
    from mfjko.report import _verdict

    class Store:  # the two calls _verdict makes on a run store
        def has(self, path):
            return path == "jko/steps/drift_ratio"

        def get(self, path):
            return [0.95, 0.97]

    t = [0.0, 1.0, 2.0]
    series = {"gd": {"t": t, "loss": [1.0, 0.5, 0.25]},
              "jko": {"t": t, "loss": [1.0, 0.501, 0.251]}}
    cfg = {"methods": {"jko": {"tau": 0.2, "eps": 0.03, "debias": True}}}
    assert _verdict(Store(), series, cfg).startswith("jko (debiased step): GD-like")
    assert _verdict(Store(), series, {}).startswith("jko: GD-like")
