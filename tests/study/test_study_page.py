"""The study page: regimes as a table, no empty "Fitted rates" section, visible pinned
markers drawn without matplotlib warnings."""

import warnings

import matplotlib
import pandas as pd

from mfjko.study import render

matplotlib.use("Agg")


def _points():
    return pd.DataFrame({"point": ["a", "b", "c"], "courant": [0.05, 0.1, 0.2],
                         "eps_over_delta2": [0.5, 1.0, 2.0], "grid_size": [125] * 3,
                         "delta": [1.0] * 3, "gap_gd": [0.01, 0.2, 0.3],
                         "gap_langevin": [0.3, 0.01, 0.2], "pred_gap_T": [0.1] * 3,
                         "measure_gap_T": [0.1] * 3,
                         "regime": ["pinned", "GD-like", "pinned"]})


def test_regimes_are_a_table_and_no_empty_rates_heading(tmp_path):
    summary = {"rule": "r", "regimes": {"pinned": 2, "GD-like": 1}, "rates": []}
    page = render._page(tmp_path, {"name": "s"}, _points(), summary, []).read_text()
    assert "<table class='regimes'>" in page and "<td>pinned</td><td>2</td>" in page
    assert "<td>Langevin-like</td><td>0</td>" in page and '{"pinned"' not in page
    assert "Fitted rates" not in page
    rate = {"path": "p", "metric": "gap_gd", "x": "delta", "rate": 1.0, "stderr": 0.1,
            "ci_low": 0.8, "ci_high": 1.2, "n": 3}
    page = render._page(tmp_path, {"name": "s"}, _points(), {**summary, "rates": [rate]},
                        []).read_text()
    assert "Fitted rates" in page and "delta^1.000" in page


def test_phase_figure_draws_pinned_markers_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render._phase_figure(_points(), {"x": "courant", "y": "eps_over_delta2",
                                         "panel": "grid_size"}, tmp_path / "phase.png")
    assert (tmp_path / "phase.png").stat().st_size > 10_000
