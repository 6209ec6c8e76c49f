"""Shared fixtures. Tests mirror the package (tests/geometry ↔ mfjko.geometry, ...);
tests/support.py holds plain helpers (importable as ``support``)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from support import tiny_raw  # noqa: E402

# no persistent XLA cache in tests (CLI runs, subprocesses included): every test compiles
# what it runs; tests/runner/test_cli.py checks the cache switch itself
os.environ.setdefault("MFJKO_XLA_CACHE", "0")


def pytest_configure(config):
    """``support.FULL``: does this run select the ``slow`` tests (``make test-all``)? Then
    fuzz tests draw their full number of examples (:func:`support.examples`)."""
    markexpr = config.getoption("markexpr", "") or ""
    support.FULL = "not slow" not in " ".join(markexpr.split())
    if not support.FULL and "jax" not in sys.modules:
        # `make test` (its time is budgeted, CONTRIBUTING.md) compiles without most XLA
        # optimizations: compilation dominates its tests (25-40 % less CPU). Results differ
        # in the last bits from optimized programs, so this process and the subprocesses and
        # workers it starts must agree: only when jax is not imported yet (`pytest
        # tests/runner` imports it from tests/runner/conftest.py first: then nothing is
        # changed, anywhere). `make test-all` tests the optimized programs.
        os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


@pytest.fixture
def tiny_config() -> dict:
    """A tiny end-to-end run config (dict) of the 1-D regression: GD, Langevin, JKO on 7³."""
    return tiny_raw()
