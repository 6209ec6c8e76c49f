"""`mfjko sweep` on the command line: --overwrite never deletes what a sweep did not write,
invalid keys fail before any work naming the key, the stored sweep.yaml runs again, an
unreachable scheduler fails fast without leaving a folder, Ctrl-C prints the resume command."""

import json
import socket
import time

import pytest
import yaml
from typer.testing import CliRunner

from mfjko.cli import app
from mfjko.sweep import expand, load_sweep
from mfjko.sweep.run import SWEEP_MARKER, _folder_plan, _open_folder, _prepare_folder
from support import tiny_raw

runner = CliRunner()


def _spec(tmp_path, name="tiny.yaml", **extra) -> "Path":  # noqa: F821
    doc = {"name": "tiny", "base": tiny_raw(), "product": {"jko.eps_over_delta2": [0.5, 1.0]},
           **extra}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _one_line(res) -> str:
    assert "Traceback" not in res.output, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


def test_overwrite_keeps_a_sweep_folder_holding_user_files(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    _prepare_folder(out, load_sweep(spec), resume=False, overwrite=False)
    (out / "notes.md").write_text("my notes")
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--overwrite"])
    assert res.exit_code == 3
    assert "notes.md" in _one_line(res)
    assert (out / "notes.md").read_text() == "my notes" and (out / "sweep.yaml").exists()
    # a stray file among the points is foreign too
    (out / "notes.md").unlink()
    (out / "points").mkdir()
    (out / "points" / "draft.txt").write_text("x")
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--overwrite"])
    assert res.exit_code == 3 and "points/draft.txt" in _one_line(res)
    assert (out / "points" / "draft.txt").exists()


def test_overwrite_refuses_the_working_folder_and_folders_without_the_marker(tmp_path,
                                                                              monkeypatch):
    # the user's own spec is called sweep.yaml, in the working folder: --out .
    spec = _spec(tmp_path, name="sweep.yaml")
    (tmp_path / "notes.md").write_text("my notes")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["sweep", "sweep.yaml", "--out", ".", "--overwrite"])
    assert res.exit_code == 3 and "working folder" in _one_line(res)
    assert (tmp_path / "notes.md").exists() and spec.exists()
    # --resume does not take the user's spec for a sweep folder (nor rewrite it)
    text = spec.read_text()
    res = runner.invoke(app, ["sweep", "sweep.yaml", "--out", ".", "--resume"])
    assert res.exit_code == 3 and "no sweep to resume" in _one_line(res)
    assert spec.read_text() == text
    # a folder holding a sweep.yaml but no marker is not a sweep folder for --overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "sweep.yaml").write_text(spec.read_text())
    res = runner.invoke(app, ["sweep", "sweep.yaml", "--out", str(other), "--overwrite"])
    assert res.exit_code == 3 and SWEEP_MARKER in _one_line(res)
    assert (other / "sweep.yaml").exists()


def test_overwrite_replaces_only_the_sweeps_own_entries(tmp_path):
    spec = load_sweep(_spec(tmp_path))
    out = tmp_path / "out"
    _prepare_folder(out, spec, resume=False, overwrite=False)
    (out / "points" / "0000-0123abcd").mkdir(parents=True)
    (out / "points" / "0000-0123abcd" / "metrics.csv").write_text("method,t\n")
    (out / "results.parquet").write_text("x")
    (out / "study").mkdir()
    assert _folder_plan(out, resume=False, overwrite=True) == "overwrite"
    _open_folder(out, spec, "overwrite")
    assert sorted(p.name for p in out.iterdir()) == [SWEEP_MARKER, "sweep.yaml"]


@pytest.mark.parametrize("extra, key", [
    ({"product": {"jko.grid_nn": [5, 7]}}, "jko.grid_nn"),
    ({"set": ["methods.jko.epss=0.1"]}, "methods.jko.epss"),
    ({"zip": [{"jko.grid_n": [5, 6], "data.kwargs.n_trian": [8, 9]}]}, "data.kwargs.n_trian"),
    ({"product": {"methods.jko.eps": [0.1, -1.0]}}, "methods.jko.eps"),
    ({"set": ["jko.courant=0.1"]}, "jko.courant"),
])
def test_invalid_keys_and_values_fail_before_any_work_naming_the_key(tmp_path, extra, key):
    spec = _spec(tmp_path, **extra)
    out = tmp_path / "out"
    tic = time.perf_counter()
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert key in _one_line(res)
    assert not out.exists() and time.perf_counter() - tic < 20


def test_spec_errors_are_one_line_without_pydantic_boilerplate(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": tiny_raw(), "product": {"T": 3}, "axes": 1}))
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o")])
    line = _one_line(res)
    assert res.exit_code == 2 and "product.T" in line and "axes" in line
    assert "pydantic" not in line and "validation error" not in line
    path.write_text("name: [unclosed\nbase: x\n")
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not valid YAML (line" in _one_line(res)
    (tmp_path / "base.yaml").write_text("data: [unclosed\n")
    path.write_text(yaml.safe_dump({"base": "base.yaml", "product": {"T": [0.4]}}))
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "base config" in _one_line(res)


def test_the_stored_sweep_yaml_runs_again_with_the_same_points(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_raw()))
    spec_path = _spec(tmp_path, base="base.yaml", set=["T=0.2"])
    spec = load_sweep(spec_path)
    out = tmp_path / "elsewhere" / "out"
    _prepare_folder(out, spec, resume=False, overwrite=False)
    again = load_sweep(out / "sweep.yaml")  # base inline: no path relative to the old file
    assert [p.id for p in expand(again)] == [p.id for p in expand(spec)]
    assert again.base_source == str(tmp_path / "base.yaml")
    # and a sweep.yaml stored before (base path + base_config) still loads
    old = {**yaml.safe_load(spec_path.read_text()), "base_config": tiny_raw()}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    assert [p.id for p in expand(load_sweep(tmp_path / "old.yaml"))] == \
        [p.id for p in expand(spec)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_fails_fast_and_leaves_no_folder(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    tic = time.perf_counter()
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--scheduler",
                              f"tcp://127.0.0.1:{_free_port()}"])
    assert res.exit_code == 5, res.output
    assert "scheduler" in _one_line(res) and time.perf_counter() - tic < 30
    assert not out.exists()  # a plain retry is not blocked


def test_ctrl_c_prints_the_resume_command_and_exits_130(tmp_path, monkeypatch):
    import mfjko.sweep.run as sweep_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run, "_client", lambda workers, scheduler: (_Fake(), None))
    monkeypatch.setattr(sweep_run, "_execute", interrupted)
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert res.exit_code == 130
    assert f"resume with: mfjko sweep {spec} --out {out} --resume" in res.output
    assert json.loads((out / SWEEP_MARKER).read_text())["what"] == "mfjko sweep folder"


class _Fake:
    def close(self):
        pass


def test_a_local_cluster_is_quiet_when_port_8787_is_taken(recwarn):
    from mfjko.sweep.run import _client

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", 8787))
            s.listen()
        except OSError:
            pass  # taken already: the same situation
        client, cluster = _client(1, None)
        client.close()
        cluster.close()
    assert not [w for w in recwarn if "8787" in str(w.message)]


def test_results_zarr_is_written_without_zarr_warnings(tmp_path):
    import warnings

    import numpy as np
    import xarray as xr

    from mfjko.sweep.results import write_zarr

    ds = xr.Dataset({"loss": (("t",), np.arange(3.0))}, coords={"t": [0.0, 0.2, 0.4]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_zarr(ds, tmp_path / "r.zarr")
        back = xr.open_zarr(tmp_path / "r.zarr")
    assert not [w for w in caught if "onsolidated" in str(w.message)], caught
    np.testing.assert_array_equal(back["loss"].values, ds["loss"].values)
