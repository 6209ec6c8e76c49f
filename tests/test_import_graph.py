"""No import circle in src/mfjko, imports inside functions included (issue 19).

Pure ``ast`` (scripts/import_graph.py): nothing of the package is imported for the graph.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _load():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ig = _load()


@pytest.mark.parametrize("packages", [True, False], ids=["with-package-inits", "modules-only"])
def test_no_import_circle(packages):
    g = ig.graph(packages=packages)
    assert len(g) > 50 and "mfjko.runner.run" in g
    found = ig.cycles(g)
    assert not found, "import circles:\n" + "\n".join(ig.describe(c, g) for c in found)


def test_function_local_imports_count():
    # a circle held open by an import inside a function is still found
    g = {"a": {"b": [1]}, "b": {"a": [7]}, "c": {"c": [2]}, "d": {"a": [3]}}
    assert ig.cycles(g) == [["a", "b"], ["c"]]
    src = ig.modules()
    edges = ig.imports_of("mfjko.cli", src["mfjko.cli"], src)
    assert "mfjko.report" in edges  # imported inside a command function


def test_leaf_modules_import_nothing_of_the_package():
    g = ig.graph()
    for leaf in ("mfjko.errors", "mfjko.columns", "mfjko.faults"):
        assert g[leaf] == {}, (leaf, g[leaf])


def test_script_exit_status():
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 circle(s)" in res.stdout


def test_errors_reexported_from_their_old_homes():
    from mfjko import config, data, errors, io, runner, sweep
    from mfjko.jko import ConvergenceError
    from mfjko.sweep import run as sweep_run

    assert config.ConfigError is errors.ConfigError
    assert data.DataError is errors.DataError
    assert data.DataFileNotFoundError is errors.DataFileNotFoundError
    for name in ("RunFolderError", "RunExistsError", "RunInterrupted", "RunStopped",
                 "SolverError"):
        assert getattr(runner, name) is getattr(errors, name)
        assert getattr(importlib.import_module("mfjko.runner.run"), name) is getattr(errors, name)
    assert sweep.SweepExistsError is errors.SweepExistsError
    assert sweep_run.SchedulerError is errors.SchedulerError
    assert ConvergenceError is errors.ConvergenceError
    from mfjko import faults
    assert io.CRASH is faults.CRASH and io.SimulatedCrash is faults.SimulatedCrash


def test_columns_match_the_metrics():
    from mfjko import columns, io, metrics

    assert columns.COLUMNS == metrics.COLUMNS
    assert io.METRIC_COLUMNS == columns.METRIC_COLUMNS == ("method", "t", *metrics.COLUMNS)


def test_public_api_resolves_every_name():
    """Every name of ``mfjko.__all__`` loads from its module (and is that module's object)."""
    import importlib

    import mfjko

    for name in mfjko.__all__:
        if name == "__version__":
            continue
        value = getattr(mfjko, name)
        assert value is getattr(importlib.import_module(mfjko._API[name]), name)
