"""End-to-end runs of a tiny config: every output exists, resume after an interruption
reproduces an uninterrupted run's metrics.csv byte for byte, existing folders are safe."""

import csv
import re

import numpy as np
import pytest
import zarr

from mfjko.config import ConfigError, parse_config
from mfjko.runner import INTERRUPT_ENV, RunExistsError, RunInterrupted, run
from support import tiny_raw


def test_end_to_end_outputs(full_run):  # the fixture: tests/runner/conftest.py
    out = full_run
    for name in ("config.yaml", "metrics.csv", "report.html", "timings.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    methods = [r["method"] for r in rows]
    assert methods == ["gd"] * 3 + ["langevin"] * 3 + ["jko"] * 3
    assert [float(r["t"]) for r in rows[:3]] == [0.0, 0.2, 0.4]
    for r in rows:
        assert float(r["loss"]) > 0 and float(r["test_loss"]) > 0
        fstar = float(r["F_star"])
        assert float(r["loss_minus_F_star"]) == pytest.approx(float(r["loss"]) - fstar)
        assert float(r["loss"]) >= fstar - 1e-9  # F* is the global minimum
        if r["method"] == "gd":
            assert r["measure_gap"] == "" and r["loss_gap"] == ""
        else:
            assert float(r["measure_gap"]) >= 0 and float(r["pred_gap"]) >= 0
    # matched references: GD starts from the grid's own measure (weighted particles at the
    # grid points), so F(0) and f(0) equal the JKO's; Langevin is 2 seeds of particles
    # drawn from that measure, with a seed standard error that is its gaps' noise floor
    jko0 = next(r for r in rows if r["method"] == "jko")
    assert float(jko0["loss_gap"]) < 1e-12 and float(jko0["pred_gap"]) < 1e-12
    assert float(jko0["loss_se"]) == 0.0 and float(jko0["loss_gap_floor"]) == 0.0
    # the measure gap at t = 0 is only the compression of GD's weighted particles
    assert float(jko0["measure_gap"]) <= 2 * float(jko0["measure_gap_floor"]) + 1e-3
    for r in rows:
        if r["method"] == "gd":
            assert float(r["loss_se"]) == 0.0  # deterministic
        if r["method"] == "langevin":
            assert float(r["loss_se"]) > 0
            assert float(r["loss_gap_floor"]) == pytest.approx(float(r["loss_se"]))
            assert float(r["pred_gap_floor"]) > 0
    # the grid's boundary mass is recorded for JKO only, as a fraction
    for r in rows:
        if r["method"] == "jko":
            assert 0.0 <= float(r["edge_mass"]) <= 1.0
        else:
            assert r["edge_mass"] == ""
    # GD decreases F
    gd_loss = [float(r["loss"]) for r in rows if r["method"] == "gd"]
    assert gd_loss[-1] < gd_loss[0]

    cfg_text = (out / "config.yaml").read_text()
    for key in ("versions", "jax", "ott-jax", "numpy", "git_revision", "timestamp",
                "platform", "seed"):
        assert key in cfg_text
    g = zarr.open_group(str(out / "trajectories.zarr"), mode="r")
    assert g["jko/weights"].shape == (3, 7**3)
    np.testing.assert_allclose(np.asarray(g["jko/weights"][...]).sum(1), 1.0, atol=1e-9)
    assert g["gd/particles"].shape == (3, 20, 3)
    assert g["init/particles"].shape == (60, 3) and g["init/p0"].shape == (7**3,)
    assert g["jko/steps/t"].shape == (4,)  # 2 JKO steps per interval, 2 intervals
    assert g["jko/steps/sinkhorn_iterations"].shape == (4,)

    figs = {"loss.png", "loss_minus_fstar.png", "gaps.png", "predictor.png", "measure.png",
            "measure.gif", "jko_diagnostics.png"}
    assert figs <= {p.name for p in (out / "figures").iterdir()}
    from PIL import Image

    with Image.open(out / "figures" / "measure.gif") as gif:  # one frame per record, looping
        assert (gif.n_frames, gif.info["duration"], gif.info["loop"]) == (3, 400, 0)
    page = (out / "report.html").read_text()
    referenced = set(re.findall(r'data-file="figures/([^"]+)"', page))
    assert figs <= referenced
    assert page.count("data:image/png;base64,") >= 6 and "data:image/gif;base64," in page
    assert "within" in page and "measure gap" in page and "F − F*" in page


@pytest.mark.parametrize("after, done", [(3, ["gd"] * 3 + ["langevin"] * 2),
                                         pytest.param(5, ["gd"] * 3 + ["langevin"] * 3
                                                      + ["jko"] * 2, marks=pytest.mark.slow)])
def test_resume_after_interruption_gives_identical_metrics(full_run, tmp_path, monkeypatch,
                                                           after, done):
    """Interrupted inside Langevin (noise keyed by global step) or inside JKO (warm-started
    solver state restored from the checkpoint), then resumed: same bytes (no report: it is
    not part of the run's data, and full_run's is checked above)."""
    out = tmp_path / "interrupted"
    cfg = parse_config(tiny_raw())
    monkeypatch.setenv(INTERRUPT_ENV, str(after))
    with pytest.raises(RunInterrupted):
        run(cfg, out, progress=False, render=False)
    partial = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["method"] for r in partial] == done
    monkeypatch.delenv(INTERRUPT_ENV)
    with pytest.raises(RunExistsError, match="--resume"):
        run(cfg, out, progress=False, render=False)
    run(cfg, out, resume=True, progress=False, render=False)
    assert (out / "metrics.csv").read_bytes() == (full_run / "metrics.csv").read_bytes()
    g = zarr.open_group(str(out / "trajectories.zarr"), mode="r")
    assert g["langevin/particles"].shape[0] == 3 and g["jko/steps/t"].shape == (4,)


def test_resume_refuses_a_different_config(full_run, tmp_path):
    raw = tiny_raw()
    raw["model"]["lam"] = 0.02
    with pytest.raises(ConfigError, match="model"):
        run(parse_config(raw), full_run, resume=True, progress=False, render=False)


def test_infeasible_grid_fails_before_any_output(tmp_path):
    raw = tiny_raw()
    raw["methods"]["jko"]["grid"]["ranges"] = [[-0.2, 0.2]] * 3
    with pytest.raises(ConfigError, match="jko.grid.ranges"):
        run(parse_config(raw), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_open_run_is_a_dataset_with_the_stored_dimension_names(full_run, tmp_path):
    from mfjko.io import open_run

    g = zarr.open_group(str(full_run / "trajectories.zarr"), mode="r")
    assert g["jko/weights"].metadata.dimension_names == ("record", "grid_point")
    assert g["jko/steps/t"].metadata.dimension_names == ("jko_step",)
    ds = open_run(full_run)
    assert ds["jko/weights"].dims == ("record", "grid_point")
    assert ds.sizes["record"] == 3 and ds.sizes["grid_point"] == 7**3
    assert ds["gd/particles"].dims == ("record", "saved_particle", "coord")
    assert ds["data/X"].dims == ("sample", "input") and ds.attrs["parametrization"] == "neuron"
    np.testing.assert_allclose(ds["jko/weights"].sum("grid_point"), 1.0, atol=1e-9)
    np.testing.assert_array_equal(ds["jko/t"], [0.0, 0.2, 0.4])
    # a folder without trajectories is a run folder error
    from mfjko.runner import RunFolderError

    with pytest.raises(RunFolderError):
        open_run(tmp_path)
