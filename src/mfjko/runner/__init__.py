r"""Runs: prepare, drive every method, record, with provenance.

Modules: :mod:`.setup` (prepare), :mod:`.run` and :mod:`.recorder` (drive and record),
:mod:`.provenance`. All methods start from the same initial law (particles drawn from it
with the run's seed, the grid from its discretization) and share the mean-field time axis;
records fall at t_i = i·record_every. The environment variable ``MFJKO_INTERRUPT_AFTER`` = k raises
:class:`RunInterrupted` after k intervals (resume tests).
"""

from mfjko.runner.provenance import provenance
from mfjko.runner.run import INTERRUPT_ENV, RunExistsError, RunInterrupted, config_doc, run
from mfjko.runner.setup import FSTAR_PARAMS, Setup, build_geometry, prepare

__all__ = ["run", "prepare", "build_geometry", "provenance", "config_doc", "Setup",
           "RunExistsError", "RunInterrupted", "INTERRUPT_ENV", "FSTAR_PARAMS"]
