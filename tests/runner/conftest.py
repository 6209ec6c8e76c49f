"""Fixtures of the run-folder tests, one run each per session: the uninterrupted reference
run of the crash tests, the tiny run of every method with its report, and a run through
the CLI with --set. Each costs seconds (a report alone ≈ 3.5 CPU-s): tests read them.

mfjko (and jax) are imported inside the fixtures: importing jax here, before
tests/conftest.py's ``pytest_configure``, would leave ``pytest tests/runner`` with the
optimized programs that ``make test`` does not compile (tests/conftest.py)."""

import shutil

import pytest


@pytest.fixture(scope="session")
def crash_reference(tmp_path_factory):
    """The uninterrupted run of :func:`runs_support.crash_raw` and the labels of its write
    points, in order (no report: the report is not part of the run's data)."""
    from runs_support import crash_raw

    from mfjko.config import parse_config
    from mfjko.io import CRASH
    from mfjko.runner import run

    folder = tmp_path_factory.mktemp("crash") / "reference"
    CRASH.arm(None, trace=True)
    try:
        run(parse_config(crash_raw()), folder, progress=False, render=False)
        trace = list(CRASH.trace)
    finally:
        CRASH.disarm()
    return folder, trace


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """The tiny run of GD, Langevin and JKO (:func:`support.tiny_raw`), report included:
    test_runner.py reads its outputs, test_report.py its report."""
    from mfjko.config import parse_config
    from mfjko.runner import run
    from support import tiny_raw

    out = tmp_path_factory.mktemp("runs") / "full"
    run(parse_config(tiny_raw()), out, progress=False)
    return out


@pytest.fixture(scope="session")
def set_run(tmp_path_factory):
    """A run with ``--set`` through the CLI, over an existing run folder (``--overwrite``).

    ``a``: GD and the gradient flow (``flow: {}``, its defaults) of the tiny config, run in
    process without a report; ``b``: a copy of ``a`` replaced by ``mfjko run CONFIG --out b
    --overwrite --set model.lam=0.05 --set T=0.2`` (report included). test_cli.py checks
    the overwrite and compares ``a`` and ``b``, test_report.py reads b's header.

    Returns:
      (config path, a, b, the CliRunner result of b's run).
    """
    import yaml
    from typer.testing import CliRunner

    from mfjko.cli import app
    from mfjko.config import load_config
    from mfjko.runner import run
    from support import tiny_raw

    folder = tmp_path_factory.mktemp("cli")
    raw = tiny_raw()
    raw["methods"] = {"gd": {"h": 0.05}, "flow": {}}  # {} (or true): defaults; null: off
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    a, b = folder / "a", folder / "b"
    run(load_config(config), a, progress=False, render=False)
    shutil.copytree(a, b)
    res = CliRunner().invoke(app, ["run", str(config), "--out", str(b), "--no-progress",
                                   "--overwrite", "--set", "model.lam=0.05", "--set", "T=0.2"])
    return config, a, b, res
