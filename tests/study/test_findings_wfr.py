"""FINDINGS' WFR section: "not run" without the studies, numbers read from their outputs."""

from __future__ import annotations

import json

import pandas as pd

from mfjko.study import findings_wfr
from mfjko.study.findings import write_findings


def _study(root, name, points: pd.DataFrame):
    folder = root / name / "study"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"points": len(points), "regimes": {}}))
    points.to_csv(folder / "points.csv", index=False)


def test_section_degrades_without_studies(tmp_path):
    text = findings_wfr.section(tmp_path / "none", tmp_path / "figs")
    assert "not run" in text and len(text.strip().splitlines()) == 3
    out = write_findings(tmp_path / "none", tmp_path / "docs" / "FINDINGS.md")
    assert "Wasserstein–Fisher–Rao" in out.read_text()


def test_points_needed_and_section_numbers_come_from_the_outputs(tmp_path):
    h2h = pd.DataFrame({
        "tag.scheme": ["wfr"] * 3 + ["jko"] * 2,
        "tag.points": [256, 1024, 512, 3375, 91125],
        "gap_gd_T": [0.03, 0.004, 0.0099, 0.2, 0.0537],
        "gap_conic_T": [0.01, 0.002, 0.03, 0.2, 0.1],
    })
    need = findings_wfr.points_needed(h2h)
    # the smallest passing grid, not the first row nor the best gap
    assert need["wfr"] == {"needed": 512, "largest": 1024, "best_gap": 0.004, "best_at": 1024}
    assert need["jko"]["needed"] is None and need["jko"]["best_at"] == 91125
    assert findings_wfr.points_needed(h2h, gap=0.25)["jko"]["needed"] == 3375
    _study(tmp_path, "wfr_headtohead", h2h)
    _study(tmp_path, "wfr_gridscale", pd.DataFrame({
        "init.scale": [0.5, 0.01], "tag.grid": ["wfr", "wfr"], "gap_gd_T": [0.0123, 0.0456]}))
    text = findings_wfr.section(tmp_path, tmp_path / "figs")
    assert "wfr: 512 grid points" in text
    assert "no grid up to 91125 points" in text and "5.4 %" in text
    assert "1/178 of the balanced JKO's points (at least" in text  # 91125 / 512
    assert "from the same balanced neurons) the WFR JKO's gap at T is ≤ 1% from 256 points" in text
    assert "1.2 %" in text and "4.6 %" in text  # the grid-scale table
    assert "phase diagram" in text and "not run" in text  # the wfr phase study is absent
