"""docs/FINDINGS.md assembly: readings computed from the points, sections, fragments."""

import pandas as pd

from mfjko.study.findings import _groups_reading, write_findings
from mfjko.study.findings_parts import phase_reading as _phase_reading


def _points():
    return pd.DataFrame({
        "regime": ["pinned", "GD-like", "Langevin-like", "neither"],
        "grid_size": [2197, 19683, 6859, 6859], "courant": [0.05, 0.7, 0.2, 0.5],
        "eps_over_delta2": [0.1, 0.3, 3.0, 1.0], "D": [0.01, 0.005, 0.2, 0.05],
        "gap_gd": [2.0, 0.04, 0.2, 0.3], "gap_langevin": [2.1, 0.06, 0.03, 0.4],
    })


def test_phase_reading_counts_regimes_and_what_moving_runs_track():
    text = _phase_reading(_points())
    assert "**GD-like** (1 runs): grids of 19683 points" in text
    assert "sup gap to GD 4.0 %" in text
    # three runs move; only the Langevin-like one is closer to Langevin than to GD
    assert "Of the 3 runs that move, 1 are closer" in text
    assert "among those with ε/δ² ≥ 1, 1 of 2" in text


def test_groups_reading_compares_a_two_valued_hue():
    p = pd.DataFrame({"init.scale": [0.5, 0.5, 0.1, 0.1, 0.01, 0.01],
                      "tag.grid": ["single", "multi"] * 3,
                      "gap_gd": [0.1, 0.05, 0.3, 0.2, 0.9, 1.0]})
    text = _groups_reading(p, "init.scale", "tag.grid")
    assert "init.scale = 0.01: closest to GD with tag.grid = single" in text
    assert "tag.grid = multi is closer to GD at 2 of 3 values of init.scale" in text


def test_write_findings_without_studies_and_with_a_fragment(tmp_path):
    docs = tmp_path / "docs"
    (docs / "findings").mkdir(parents=True)
    (docs / "findings" / "zz_method.md").write_text("## A hand-written section\n")
    out = write_findings(tmp_path / "no_studies", docs / "FINDINGS.md")
    text = out.read_text()
    assert "(not run: `make study` produces it)" in text
    assert text.rstrip().endswith("## A hand-written section")


def test_what_changed_sets_published_regimes_against_a_rerun(tmp_path):
    """A rerun study's regimes stand next to the published ones; one not rerun says so."""
    import json

    import pandas as pd

    from mfjko.study import findings_changes

    folder = tmp_path / "regression" / "study"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(
        {"points": 3, "regimes": {"Langevin-like": 2, "pinned": 1}, "rates": []}))
    pd.DataFrame({"regime": ["Langevin-like", "Langevin-like", "pinned"]}).to_csv(
        folder / "points.csv", index=False)
    text = findings_changes.section(tmp_path)
    assert ("| regression | 3 | GD-like 2, Langevin-like 9, neither 33, pinned 16 | "
            "Langevin-like 2, pinned 1 |") in text
    assert "| sphere | 24 | Langevin-like 3, neither 9, pinned 12 | (not rerun) |" in text


def test_path_rates_fit_every_grid_of_a_path_across_studies(tmp_path):
    """A path's coarse grids in one study and its fine end in another: one fit over all,
    equal to the power law the gaps were drawn from; the brief states it."""
    from mfjko.study.findings import _path_lines
    from mfjko.study.findings_parts import path_points, path_rates

    def write(name, sizes):
        folder = tmp_path / name / "study"
        folder.mkdir(parents=True)
        delta = [7 / (n - 1) for n in sizes]
        pd.DataFrame({"delta": delta, "tag.c": 0.18, "eps_over_delta2": 1.0,
                      "gap_gd": [0.3 * d ** 0.6 for d in delta],
                      "gap_langevin": [0.01 * d for d in delta],
                      "langevin_gap_gd": [0.3 * d ** 0.6 for d in delta]}).to_csv(
            folder / "points.csv", index=False)
        (folder / "summary.json").write_text("{}")

    write("path_to_gd", [17, 33, 65])
    write("path_to_gd_fine", [129])
    points = path_points([tmp_path / "path_to_gd", tmp_path / "path_to_gd_fine",
                          tmp_path / "not_run"])
    assert sorted(points["study"].unique()) == ["path_to_gd", "path_to_gd_fine"]
    (gd,) = path_rates(points, ("gap_gd",))
    assert gd["n"] == 4 and gd["grids"] == "17³–129³"
    assert abs(gd["rate"] - 0.6) < 1e-12 and gd["ci_low"] > 0.59
    assert gd["values"][0] > gd["values"][-1]
    (line,) = [x for x in _path_lines(tmp_path) if "Path to GD" in x]
    assert "(c = 0.18, ε/δ² = 1, τ ∝ δ, 4 grids, 17³–129³)" in line
    assert "p = 0.60" in line
