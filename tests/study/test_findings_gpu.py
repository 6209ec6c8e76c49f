"""The GPU section of FINDINGS.md reads the committed GPU sweeps (studies/gpu/results).

Its numbers are checked against the raw per-record losses of results.parquet, and the
GPU/CPU agreement against a CPU study made of the same rows.
"""

import json
import shutil

import numpy as np
import pandas as pd

from mfjko.study import findings_gpu as G
from mfjko.sweep.results import read_results


def _sup_gap(results: pd.DataFrame, point: str) -> float:
    rows = results[results.point == point]
    jko = rows[rows.method == "jko"].sort_values("t")["loss"].to_numpy()
    gd = rows[rows.method == "gd"].sort_values("t")["loss"].to_numpy()
    return float(np.max(np.abs(jko - gd) / gd))


def test_gpu_points_equal_the_raw_records_and_the_brief_states_them():
    """gap_gd of every GPU point = sup_t |F_jko − F_gd| / F_gd of its stored records."""
    for name in ("regression_refine_fine", "regression_mobility"):
        points = pd.read_csv(G.RESULTS / name / "study" / "points.csv")
        results = pd.read_parquet(G.RESULTS / name / "results.parquet")
        for r in points.to_dict("records"):
            assert abs(r["gap_gd"] - _sup_gap(results, r["point"])) <= 1e-12
    lines = G.brief_lines()
    assert len(lines) == 2
    fine = read_results(G.RESULTS / "regression_refine_fine" / "study" / "points.csv")
    finest = fine[np.isclose(fine.eps_over_delta2, 0.5)].sort_values("delta").iloc[0]
    assert f"{100 * finest['gap_gd']:.1f} %" in lines[0]
    assert "181³" in lines[0]
    mob = read_results(G.RESULTS / "regression_mobility" / "study" / "points.csv")
    best = mob.loc[mob.gap_gd.idxmin()]
    assert f"the smallest, {100 * best['gap_gd']:.1f} %, at ε/δ² = {best['eps_over_delta2']:.2g}" \
        in lines[1]
    assert "H100" in G.device()


def test_results_stored_under_the_old_name_are_read_under_the_new_one(tmp_path):
    """The committed GPU sweeps predate the rename eps_over_h2 → eps_over_delta2 (issue 19):
    read_results gives their tables the new columns, and their study (sweep.yaml with the
    old names in its axes and where: filters) renders from them."""
    import warnings

    from mfjko.study.render import render_study

    for name in ("regression_refine_fine", "regression_mobility"):
        for f in ("results.parquet", "study/points.csv"):
            raw = (pd.read_parquet if f.endswith("parquet") else pd.read_csv)(G.RESULTS / name / f)
            table = read_results(G.RESULTS / name / f)
            assert "eps_over_h2" in raw and "jko.eps_over_h2" in raw
            assert not [c for c in table if "eps_over_h2" in c]
            assert table["eps_over_delta2"].equals(raw["eps_over_h2"])
            assert table["jko.eps_over_delta2"].equals(raw["jko.eps_over_h2"])
    folder = tmp_path / "fine"
    folder.mkdir()
    for f in ("sweep.yaml", "results.parquet"):
        shutil.copy(G.RESULTS / "regression_refine_fine" / f, folder / f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_study(folder)
    assert any(issubclass(w.category, FutureWarning) and "eps_over_h2" in str(w.message)
               for w in caught)
    assert "eps_over_delta2" in read_results(folder / "study" / "points.csv")
    summary = json.loads((folder / "study" / "summary.json").read_text())
    gd = [r for r in summary["rates"] if r["path"].startswith("to GD")]
    assert gd and all(r["n"] == 6 for r in gd)


def test_cpu_agreement_is_zero_against_the_same_rows_and_none_without_a_cpu_study(tmp_path):
    assert G.cpu_agreement(cpu_root=tmp_path) is None
    (tmp_path / "regression_refine").mkdir()
    shutil.copy(G.RESULTS / "regression_refine_fine" / "results.parquet",
                tmp_path / "regression_refine" / "results.parquet")
    agree = G.cpu_agreement(cpu_root=tmp_path)
    assert agree["grids"] == [41, 64, 91, 128, 161, 181]
    assert all(agree[c] == 0.0 for c in ("loss", "drift_ratio"))


def test_section_renders_tables_and_figures(tmp_path):
    from mfjko.study.findings import _rates_section

    text = G.section(tmp_path, _rates_section, cpu_root=tmp_path)
    assert "| to GD: ε/δ² = 0.5, c = 0.25 | gap_gd |" in text
    assert "### One fine grid (128³)" in text
    assert (tmp_path / "regression_refine_fine_refinement.png").exists()
    assert (tmp_path / "gpu_regression_mobility_groups.png").exists()
    empty = G.section(tmp_path, _rates_section, root=tmp_path / "none")
    assert "(not run" in empty
