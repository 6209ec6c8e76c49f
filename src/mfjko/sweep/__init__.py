r"""Sweeps: a base config plus axes, every point a run, on Dask distributed.

:mod:`.spec` (sweep files, points, derived keys), :mod:`.execute` (a group of points on a
worker: shared references, batched JKO), :mod:`.run` (the client: plan, submit, resume,
progress), :mod:`.results` (tidy Parquet table and xarray Dataset).
"""

from mfjko.sweep.results import collect, load_table
from mfjko.sweep.run import SweepExistsError, run_sweep
from mfjko.sweep.spec import DERIVED, Point, SweepSpec, expand, load_sweep, resolve_point

__all__ = ["run_sweep", "SweepExistsError", "load_sweep", "expand", "resolve_point",
           "SweepSpec", "Point", "DERIVED", "collect", "load_table"]
