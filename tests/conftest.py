"""Shared fixtures. Tests mirror the package (tests/geometry ↔ mfjko.geometry, ...);
tests/support.py holds plain helpers (importable as ``support``)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import tiny_raw  # noqa: E402

# no persistent XLA cache in tests (CLI runs, subprocesses included): every test compiles
# what it runs; tests/runner/test_cli.py checks the cache switch itself
os.environ.setdefault("MFJKO_XLA_CACHE", "0")


@pytest.fixture
def tiny_config() -> dict:
    """A tiny end-to-end run config (dict) of the 1-D regression: GD, Langevin, JKO on 7³."""
    return tiny_raw()
