"""The command line through typer's CliRunner: run with --set, safe folders, report,
compare, examples."""

import csv

import yaml
from typer.testing import CliRunner

from mfjko.cli import app
from support import tiny_raw

runner = CliRunner()


def _config(tmp_path):
    raw = tiny_raw()
    raw["methods"] = {"gd": {"h": 0.05}, "flow": {}}  # {} (or true): defaults; null: off
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_set_overrides_report_and_compare(set_run, tmp_path):
    """``mfjko run --set --overwrite`` (the fixture's run b over a copy of a), an existing
    folder refused, ``mfjko report``, ``mfjko compare``."""
    cfg, a, b, res = set_run
    assert res.exit_code == 0, res.output
    # b is a's folder replaced by the run with the overrides
    rows_b = list(csv.DictReader(open(b / "metrics.csv")))
    assert max(float(r["t"]) for r in rows_b) == 0.2
    assert {r["method"] for r in rows_b} == {"gd", "flow"}
    assert yaml.safe_load((b / "config.yaml").read_text())["config"]["model"]["lam"] == 0.05
    assert (b / "report.html").is_file()

    # an existing folder is never overwritten silently
    before = (a / "metrics.csv").read_bytes()
    res = runner.invoke(app, ["run", str(cfg), "--out", str(a), "--no-progress"])
    assert res.exit_code == 3 and "--resume" in res.output and "--overwrite" in res.output
    assert (a / "metrics.csv").read_bytes() == before

    assert not (a / "report.html").exists()  # a was run without its report
    res = runner.invoke(app, ["report", str(a)])
    assert res.exit_code == 0 and (a / "report.html").is_file()

    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "compare.html").read_text()
    assert (out / "compare.png").stat().st_size > 10_000
    assert "data:image/png;base64," in page and str(a) in page and str(b) in page
    # the settings that differ, and only those
    assert "Settings that differ" in page and "<code>model.lam</code>" in page
    assert "<td>0.05</td>" in page and "<code>T</code>" in page
    assert "<code>seed</code>" not in page


def test_run_reports_config_errors_with_the_key(tmp_path):
    cfg = _config(tmp_path)
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "x"),
                              "--set", "methods.gd.step=0.1"])
    assert res.exit_code == 2
    assert "methods.gd.step" in res.output and "unknown key" in res.output
    assert not (tmp_path / "x").exists()
    res = runner.invoke(app, ["compare", str(tmp_path)])
    assert res.exit_code == 2 and "at least two" in res.output


def test_examples_lists_shipped_configs():
    res = runner.invoke(app, ["examples"])
    assert res.exit_code == 0
    for name in ("default", "signed", "sphere", "orthogonal", "teacher", "digits"):
        assert f"configs/{name}.yaml:" in res.output


def test_compile_cache_folder_and_switches(tmp_path, monkeypatch):
    """The CLI keeps XLA programs in MFJKO_XLA_CACHE (or ~/.cache); 0 or JAX's own var: off.

    In this process (a fresh interpreter per case cost 5 s of imports each): JAX opens its
    cache at the first compilation, so switching the folder here compiles nothing into
    it; the test's own session cache (tests/conftest.py) is restored afterwards.
    """
    import jax

    from mfjko.runner.compile_cache import enable_compile_cache

    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {k: getattr(jax.config, k) for k in keys}

    def probe(**env):
        for k in ("MFJKO_XLA_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        jax.config.update("jax_compilation_cache_dir", None)
        folder = enable_compile_cache()
        return [str(folder), str(jax.config.jax_compilation_cache_dir)]

    try:
        folder = tmp_path / "xla"
        assert probe(MFJKO_XLA_CACHE=str(folder)) == [str(folder), str(folder)]
        assert folder.is_dir()
        assert probe(XDG_CACHE_HOME=str(tmp_path / "c")) == [str(tmp_path / "c/mfjko/xla")] * 2
        assert probe(MFJKO_XLA_CACHE="0") == ["None", "None"]
        assert probe(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "j")) == ["None", "None"]
    finally:
        for k, v in saved.items():
            jax.config.update(k, v)


def test_debug_keeps_the_exit_status_of_a_config_error(tmp_path):
    cfg = _config(tmp_path)
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "x"),
                              "--set", "methods.gd.step=0.1", "--debug"])
    assert res.exit_code == 2
    assert "Traceback" in res.output and "methods.gd.step" in res.output


def test_compare_into_a_file_is_a_run_folder_error(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "metrics.csv").write_text("method,t\n")  # the folder is checked before reading
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    res = runner.invoke(app, ["compare", str(a), str(a), "--out", str(target)])
    assert res.exit_code == 3 and "is a file" in res.output and "Traceback" not in res.output
    assert target.read_text() == "keep"


def test_version():
    """In process; ``python -m mfjko`` in a real process (≈ 6 CPU-s of imports each):
    test_errors.py::test_entry_point_prints_one_line_without_traceback."""
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("mfjko ")


def test_examples_are_package_data_from_any_folder(tmp_path, monkeypatch):
    """The configs ship inside the package (mfjko/examples), so a non-editable install
    lists them too; from elsewhere they are shown by a path that works."""
    from pathlib import Path

    import mfjko
    from mfjko.cli import examples_dir

    folder = examples_dir()
    assert folder.parent == Path(mfjko.__file__).parent
    assert {p.name for p in folder.glob("*.yaml")} >= {"default.yaml", "sphere.yaml"}
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["examples"])
    assert res.exit_code == 0
    first = res.output.splitlines()[0].split(":")[0]
    assert Path(first).is_file() and first.endswith("default.yaml")
