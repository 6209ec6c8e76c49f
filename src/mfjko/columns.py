"""The columns of metrics.csv, by name: a leaf module (no dependency, not even NumPy).

Storage (:mod:`mfjko.io`), the sweep's tables and any reader of metrics.csv need the
column names, not the metrics; the metrics themselves (:data:`mfjko.metrics.ROW_METRICS`,
which computes each group of columns) import JAX, OTT and the problem. The two lists are
kept equal by ``tests/test_import_graph.py`` (a new metric adds its columns here too,
in the same order as in ``ROW_METRICS``).
"""

from __future__ import annotations

__all__ = ["COLUMNS", "METRIC_COLUMNS"]

#: the columns of metrics.csv after ``method`` and ``t``, grouped as in ROW_METRICS
COLUMNS: tuple[str, ...] = (
    "loss", "data_loss", "test_loss",                             # losses
    "loss_gap", "pred_gap", "pred_gap_test",                      # gaps to GD
    "loss_se", "loss_gap_floor", "pred_gap_floor",                # noise floors
    "measure_gap", "measure_gap_grid_tv", "measure_gap_floor",    # measure gap
    "direction_gap",                                              # direction gap
    "edge_mass",                                                  # grid edge mass
    "F_star", "loss_minus_F_star",                                # the optimum
)
#: columns of metrics.csv, in order
METRIC_COLUMNS: tuple[str, ...] = ("method", "t", *COLUMNS)
