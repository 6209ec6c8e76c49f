"""User mistakes on the command line end with one line naming the thing and the fix, the
exit status of their class (mfjko.cli.EXIT_CODES) and no traceback (issue 10, items 1, 4,
5, 7); ``--debug`` shows the traceback. None of these runs any dynamics."""

import contextlib
import os
import subprocess
import sys

import numpy as np
import yaml
from typer.testing import CliRunner

from mfjko.cli import EXIT_CODES, app
from mfjko.io import RUN_MARKER
from support import tiny_raw

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
        assert res.exit_code != 0 and type(res.exception).__name__ == "ConfigError"


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
    """The installed command (a real process): one stderr line, the class's status."""
    cfg = _config(tmp_path)
    res = subprocess.run([sys.executable, "-m", "mfjko.cli", "run", cfg, "--out",
                          str(tmp_path / "r"), "--set", "data.kwargs.n_trian=20"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert "data.kwargs.n_trian" in res.stderr
