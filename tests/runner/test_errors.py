"""User mistakes on the command line end with one line naming the thing and the fix, the
exit status of their class (mfjko.cli.EXIT_CODES) and no traceback (issue 10, items 1, 4,
5, 7); ``--debug`` shows the traceback. None of these runs any dynamics."""

import contextlib
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mfjko.cli import EXIT_CODES, app
from mfjko.io import RUN_MARKER
from support import examples, tiny_raw

runner = CliRunner()


def _config(tmp_path, **data) -> str:
    raw = tiny_raw()
    raw["methods"] = {"gd": {"h": 0.05}}
    if data:
        raw["data"] = data
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _fails(args, code: int, *needles: str) -> str:
    """Invoke the CLI; assert the exit status, one line of output, no traceback."""
    res = runner.invoke(app, args)
    text = res.output.strip()
    assert res.exit_code == code, text
    assert len(text.splitlines()) == 1, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def test_exit_code_table_is_distinct_per_class():
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(codes)
    assert {0, 1, 2, 3, 4, 5, 6, 130} == set(codes)


def test_data_file_mistakes_exit_4_naming_the_file(tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path, name="file", path=str(tmp_path / "missing.npz"))
    _fails(["run", cfg, "--out", str(out)], 4, "data.path", "missing.npz", "does not exist")
    np.savez(tmp_path / "nan.npz", X=np.array([[0.1], [np.nan], [0.3]]), y=np.ones(3))
    cfg = _config(tmp_path, name="file", path=str(tmp_path / "nan.npz"))
    _fails(["run", cfg, "--out", str(out)], 4, "nan.npz", "NaN", "row 1")
    (tmp_path / "header.csv").write_text("x,y\n")
    cfg = _config(tmp_path, name="file", path=str(tmp_path / "header.csv"))
    _fails(["run", cfg, "--out", str(out)], 4, "header.csv", "no data rows")
    np.savez(tmp_path / "mismatch.npz", X=np.ones((4, 1)), y=np.ones(3))
    cfg = _config(tmp_path, name="file", path=str(tmp_path / "mismatch.npz"))
    _fails(["run", cfg, "--out", str(out)], 4, "mismatch.npz", "4 rows but y has 3")
    assert not out.exists()


def test_config_mistakes_exit_2_naming_the_key(tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path)
    _fails(["run", cfg, "--out", str(out), "--set", "data.kwargs.n_trian=20"], 2,
           "data.kwargs.n_trian", "unknown option", "n_train")
    _fails(["run", cfg, "--out", str(out), "--set", "data.kwargs.n_train=-5"], 2,
           "data.kwargs", "n_train must be an integer >= 1, got -5")
    (tmp_path / "bad.yaml").write_text("T: [1,\nmethods: {gd: {h: 0.1}}\n")
    _fails(["run", str(tmp_path / "bad.yaml"), "--out", str(out)], 2, "not valid YAML",
           "line")
    _fails(["run", cfg, "--out", str(out), "--resume", "--overwrite"], 2, "exclude")
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    cfg = _config(tmp_path)
    args = ["run", cfg, "--out", str(tmp_path / "run"), "--set", "data.kwargs.n_train=-5"]
    for extra in (["--debug"], []):
        res = runner.invoke(app, [*extra, *args] if extra else [*args, "--debug"])
        # the traceback, and still the exit status of a config error
        assert res.exit_code == 2, res.output
        assert "Traceback" in res.output and "ConfigError" in res.output


def test_out_is_a_file_or_under_a_file_exits_3(tmp_path):
    cfg = _config(tmp_path)
    (tmp_path / "afile").write_text("x")
    _fails(["run", cfg, "--out", str(tmp_path / "afile")], 3, "is a file")
    _fails(["run", cfg, "--out", str(tmp_path / "afile" / "run")], 3, "is a file")
    assert (tmp_path / "afile").read_text() == "x"


@contextlib.contextmanager
def _read_only(folder):
    """A folder nobody (root included) can create entries in: the immutable attribute
    for root, permissions otherwise."""
    folder.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_read_only_out_exits_5_before_any_work(tmp_path):
    cfg = _config(tmp_path)
    ro = tmp_path / "ro"
    with _read_only(ro):
        _fails(["run", cfg, "--out", str(ro / "run")], 5, str(ro / "run"),
               "choose a writable location")
    assert list(ro.iterdir()) == []


def test_resume_of_a_missing_folder_is_an_error(tmp_path):
    """Issue 10.5: a typo in --out with --resume must not start a fresh run."""
    cfg = _config(tmp_path)
    out = tmp_path / "typo"
    _fails(["run", cfg, "--out", str(out), "--resume"], 3, "nothing to resume",
           "does not exist")
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _fails(["run", cfg, "--out", str(out), "--resume"], 3, "nothing to resume")


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, monkeypatch):
    """Issue 10.1: --overwrite replaces run folders only, never '.', home, or foreign files."""
    cfg = _config(tmp_path)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    _fails(["run", cfg, "--out", str(precious), "--overwrite"], 3, "not a run folder")
    assert (precious / "thesis.tex").read_text() == "x"

    fake_run = tmp_path / "oldrun"  # a run folder (marker) holding a user's file
    fake_run.mkdir()
    (fake_run / RUN_MARKER).write_text("{}")
    (fake_run / "metrics.csv").write_text("method,t\n")
    (fake_run / "thesis.tex").write_text("x")
    _fails(["run", cfg, "--out", str(fake_run), "--overwrite"], 3, "thesis.tex",
           "does not write")
    (fake_run / "thesis.tex").unlink()
    monkeypatch.chdir(fake_run)
    _fails(["run", cfg, "--out", ".", "--overwrite"], 3, "working folder")
    (fake_run / "sub").mkdir()
    monkeypatch.chdir(fake_run / "sub")
    _fails(["run", cfg, "--out", "..", "--overwrite"], 3, "working folder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(fake_run))
    _fails(["run", cfg, "--out", str(fake_run), "--overwrite"], 3, "home folder")
    assert (fake_run / "metrics.csv").exists() and (fake_run / RUN_MARKER).exists()


def test_compare_with_a_missing_folder_writes_nothing(tmp_path):
    out = tmp_path / "cmp"
    _fails(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)], 3,
           "does not exist")
    assert not out.exists()
    _fails(["compare", str(tmp_path / "a")], 2, "at least two")


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    _fails(["report", str(tmp_path / "nope")], 3, "does not exist")
    (tmp_path / "x").mkdir()
    _fails(["report", str(tmp_path / "x")], 3, "not a run folder")


def test_examples_paths_work_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["examples"])
    assert res.exit_code == 0
    paths = [line.split(":", 1)[0] for line in res.output.strip().splitlines()]
    assert len(paths) >= 6
    for p in paths:
        assert os.path.isfile(p), p


def test_entry_point_prints_one_line_without_traceback(tmp_path):
    """The command in a real process, as ``python -m mfjko`` (mfjko/__main__.py): one stderr
    line, the class's status. The one process of the command that `make test` starts (≈ 5
    CPU-s of imports); test_cli.py checks --version in process."""
    cfg = _config(tmp_path)
    res = subprocess.run([sys.executable, "-m", "mfjko", "run", cfg, "--out",
                          str(tmp_path / "r"), "--set", "data.kwargs.n_trian=20"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert "data.kwargs.n_trian" in res.stderr


# --------------------------------------------------------------------------- fuzzing
# Malformed configs and data files through the command line: the class's status, one
# line, no traceback, and no folder left behind.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mfjko.config import ConfigError, load_config  # noqa: E402

_fuzz = settings(max_examples=examples(40), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fuzz
@given(st.integers(0, 10_000), st.text(min_size=1, max_size=20))
def test_fuzz_cli_malformed_config_text(tmp_path, where, junk):
    text = yaml.safe_dump(tiny_raw())
    i = where % (len(text) + 1)
    path = tmp_path / "fuzz.yaml"
    path.write_text(text[:i] + junk + text[i:])
    out = tmp_path / "fuzz-run"
    try:
        load_config(path)
    except ConfigError:
        _fails(["run", str(path), "--out", str(out)], 2, "config")
        assert not out.exists()


_defects = st.sampled_from(["nan", "inf", "rows", "dtype", "ndim", "missing", "empty"])


@_fuzz
@given(_defects, st.integers(1, 6), st.integers(1, 3), st.floats(-1e3, 1e3))
def test_fuzz_cli_malformed_data_arrays(tmp_path, defect, n, d, value):
    X, y = np.full((n, d), value), np.linspace(-1, 1, n)
    arrays = {"X": X, "y": y}
    if defect in ("nan", "inf"):
        X.flat[(n * d) // 2] = np.nan if defect == "nan" else -np.inf
    elif defect == "rows":
        arrays["y"] = np.ones(n + 1)
    elif defect == "dtype":
        arrays["X"] = X.astype(complex)
    elif defect == "ndim":
        arrays["X"] = X[..., None]
    elif defect == "missing":
        del arrays["y"]
    else:
        arrays = {"X": np.ones((0, d)), "y": np.ones(0)}
    np.savez(tmp_path / "d.npz", **arrays)
    cfg = _config(tmp_path, name="file", path=str(tmp_path / "d.npz"))
    out = tmp_path / "fuzz-run"
    _fails(["run", cfg, "--out", str(out)], 4, "d.npz")
    assert not out.exists()


@pytest.mark.slow
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.floats(-900, 900))
def test_fuzz_cli_valid_data_of_any_scale_never_gives_nan(tmp_path, log_scale):
    """Finite data of any magnitude: a run with finite losses, or a one-line error (data
    scale: status 4, before any folder; GD diverging: status 6) — never NaN results."""
    n = 6  # one shape: one compilation
    rng = np.random.default_rng(0)
    scale = 10.0 ** (log_scale / 3)
    np.savez(tmp_path / "d.npz", X=scale * rng.standard_normal(n), y=scale * rng.random(n))
    raw = tiny_raw()
    raw["data"] = {"name": "file", "path": str(tmp_path / "d.npz"),
                   "kwargs": {"test_fraction": 0.0}}
    raw["methods"] = {"gd": {"h": 0.1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "fuzz-run"
    shutil.rmtree(out, ignore_errors=True)
    res = runner.invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(out),
                              "--no-progress"])
    if res.exit_code == 0:
        rows = list(csv.DictReader(open(out / "metrics.csv")))
        for r in rows:
            for col in ("loss", "data_loss", "test_loss"):
                assert np.isfinite(float(r[col])), (col, r)
    else:
        text = res.output.strip()
        assert res.exit_code in (4, 6) and len(text.splitlines()) == 1, text
        assert "Traceback" not in text
        if res.exit_code == 4:
            assert "rescale" in text and not out.exists()
