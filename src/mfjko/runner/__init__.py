r"""Runs: prepare, drive every method and record, with provenance.

Runs: prepare (:mod:`.setup`), drive every method and record (:mod:`.run`,
:mod:`.recorder`), with provenance (:mod:`.provenance`).

All methods start from the same initial law (particles drawn from it with the run's seed,
the grid from its discretization) and share the mean-field time axis; records fall at
t_i = i·record_every. The environment variable ``MFJKO_INTERRUPT_AFTER`` = k raises
:class:`RunInterrupted` after k intervals (resume tests); ``MFJKO_CRASH_AT`` = k ends the
process at the k-th write point (crash tests, :mod:`mfjko.faults`).
"""

from mfjko.runner.provenance import provenance
from mfjko.runner.run import (
    INTERRUPT_ENV,
    RunExistsError,
    RunFolderError,
    RunInterrupted,
    RunStopped,
    SolverError,
    config_doc,
    run,
)
from mfjko.runner.setup import FSTAR_PARAMS, Setup, build_geometry, prepare

__all__ = ["run", "prepare", "build_geometry", "provenance", "config_doc", "Setup",
           "RunExistsError", "RunFolderError", "RunInterrupted", "RunStopped", "SolverError",
           "INTERRUPT_ENV", "FSTAR_PARAMS"]
