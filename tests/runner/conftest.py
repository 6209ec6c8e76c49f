"""Fixtures of the run-folder tests: one uninterrupted reference run per session."""

import pytest
from runs_support import crash_raw

from mfjko.config import parse_config
from mfjko.io import CRASH
from mfjko.runner import run


@pytest.fixture(scope="session")
def crash_reference(tmp_path_factory):
    """The uninterrupted run of :func:`runs_support.crash_raw` and the labels of its write
    points, in order (no report: the report is not part of the run's data)."""
    folder = tmp_path_factory.mktemp("crash") / "reference"
    CRASH.arm(None, trace=True)
    try:
        run(parse_config(crash_raw()), folder, progress=False, render=False)
        trace = list(CRASH.trace)
    finally:
        CRASH.disarm()
    return folder, trace
