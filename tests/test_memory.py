"""The memory estimate of grid methods: counted from the config (never built), calibrated
against the peak RSS of real JKO runs, and the refusal of `mfjko run` / `mfjko sweep`."""

import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from typer.testing import CliRunner

from mfjko.config import ConfigError, parse_config
from mfjko.memory import BASE_BYTES, MEMORY_ENV, check_memory, grid_costs
from support import tiny_raw


def _cfg(sizes, n_train=8):
    raw = tiny_raw()
    raw["methods"]["jko"]["grid"]["sizes"] = sizes
    raw["data"]["kwargs"]["n_train"] = n_train
    return parse_config(raw)


def test_grid_points_are_counted_without_building_the_grid():
    tic = time.perf_counter()
    (cost,) = grid_costs(_cfg([1000, 1000, 1000]))
    assert cost.points == 10**9 and time.perf_counter() - tic < 5
    fits = r"fits about [\d,]+ points \(e\.g\. sizes = \[\d+, \d+, \d+\]"
    with pytest.raises(ConfigError, match=r"GB of memory.*sizes = \[1000, 1000, 1000\].*" + fits):
        check_memory([_cfg([1000, 1000, 1000])], limit=8 * 2**30)
    line = check_memory([_cfg([7, 7, 7])], limit=8 * 2**30)
    assert line.startswith("estimated memory") and "jko 343 points" in line
    # several local workers hold several grids at once
    with pytest.raises(ConfigError, match="× 4 at once"):
        check_memory([_cfg([150, 150, 150])], copies=4, limit=BASE_BYTES + 8 * 2**30)
    assert "workers" in check_memory([_cfg([1000] * 3)], remote=True)


def test_the_environment_variable_sets_the_limit(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "0.5")
    with pytest.raises(ConfigError, match=r"more than the 512 MB allowed"):
        check_memory([_cfg([31, 31, 31])])
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match=MEMORY_ENV):
        check_memory([_cfg([7, 7, 7])])


def test_cli_run_refuses_a_grid_that_cannot_fit_within_seconds(tmp_path):
    from mfjko.cli import app

    tic = time.perf_counter()
    res = CliRunner().invoke(app, ["run", "configs/default.yaml", "--set",
                                   "methods.jko.grid.sizes=[1000,1000,1000]",
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert time.perf_counter() - tic < 20
    assert "memory" in res.output and "fits about" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_cli_sweep_refuses_a_grid_that_cannot_fit(tmp_path):
    from mfjko.cli import app

    spec = {"name": "big", "base": tiny_raw(), "product": {"jko.grid_n": [7, 2000]}}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "memory" in res.output and "2000" in res.output
    assert not (tmp_path / "o").exists()


_PROBE = textwrap.dedent("""
    import json, resource, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    from support import tiny_raw
    from mfjko.config import parse_config
    from mfjko.runner import run
    peaks = []
    for n in (21, 51):
        raw = tiny_raw()
        raw["methods"] = {"gd": {"h": 0.05}, "jko": {**raw["methods"]["jko"], "grid": {
            "kind": "cartesian", "ranges": [[-2, 2]] * 3, "sizes": [n] * 3}}}
        raw["data"]["kwargs"]["n_train"] = 20
        raw["T"] = raw["record_every"] = 0.2
        raw["metrics"]["measure_gap"] = "final"
        run(parse_config(raw), tempfile.mkdtemp() + "/r", progress=False, render=False)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps(peaks))
""")


@pytest.mark.slow
def test_estimate_is_within_a_factor_two_of_the_measured_peak_rss(tmp_path):
    """Peak RSS of a real process (XLA's buffers are invisible to tracemalloc) on two grid
    sizes: the slope per grid point and the peak of the larger within a factor of 2."""
    import json
    from pathlib import Path

    env = {"MFJKO_XLA_CACHE": "0", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": ":".join(sys.path)}
    res = subprocess.run([sys.executable, "-c", _PROBE, str(Path(__file__).parent)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    small, large = json.loads(res.stdout.strip().splitlines()[-1])
    (c_small,), (c_large,) = grid_costs(_cfg([21] * 3, 20)), grid_costs(_cfg([51] * 3, 20))
    measured_slope = (large - small) / (c_large.points - c_small.points)
    assert 0.5 < c_large.per_point / measured_slope < 2, (c_large.per_point, measured_slope)
    estimate = BASE_BYTES + c_large.bytes
    assert 0.5 < estimate / large < 2, (estimate, large)
