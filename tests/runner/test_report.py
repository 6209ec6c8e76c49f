"""The report a researcher reads (issue 10.7): values to their precision, colour bars, a
header from the resolved config, the data-space view of the neurons' kinks, and pages for
folders a run left at any stage."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml
from runs_support import crash_raw

from mfjko import parametrizations as P
from mfjko import report
from mfjko.io import RUN_MARKER


def test_values_are_formatted_to_their_precision():
    assert report.fmt_value(0.34999999999999964) == "0.35"
    assert report.fmt_value(0.016827370812345, 10) == "0.01682737081"
    assert report.fmt_value([0.1 + 0.2, 3]) == "[0.3, 3]"
    assert report.fmt_value(True) == "True" and report.fmt_value(7) == "7"


def test_heatmap_has_a_colour_bar():
    fig, ax = plt.subplots()
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    report._heatmap(ax, "neuron", pts, np.array([0.25, 0.75]), None, 0.0)
    bars = [a for a in fig.axes if a is not ax]
    assert len(bars) == 1 and bars[0].get_ylabel() == "mass per cell"
    fig2, ax2 = plt.subplots()
    report._heatmap(ax2, "signed", np.array([[0.0, 1.0], [1.0, -1.0]]), np.ones(2), None, 0.0)
    assert [a.get_ylabel() for a in fig2.axes if a is not ax2] == ["signed mass per cell"]
    plt.close("all")


@pytest.mark.parametrize("name", ["neuron", "sphere", "pm", "signed"])
def test_kinks_are_where_the_neurons_bend(name):
    """x* = −c·b/w: the neuron's output α·σ(w x + c b) has its kink there (closed form),
    checked against the parametrization's own output on both sides of x*."""
    param = P.get(name)
    W = np.array([[2.0, -1.0], [-0.5, 0.25], [1.0, 0.3]])
    alpha = np.array([0.5, -2.0, 1.0])
    theta = np.asarray(param.project(param.from_classic(W, alpha)))
    mass = np.array([0.2, 0.3, 0.5])
    if name == "signed":  # grid atoms carry |α| = 1: the mass is |α| times the weight
        theta, mass = np.column_stack([W, np.sign(alpha)]), mass * np.abs(alpha)
    x, m, sign = report._kinks(name, theta, mass, j=0, b=1, c=1.0)
    order = np.argsort(x)
    np.testing.assert_allclose(x[order], np.sort([0.5, 0.5, -0.3]), atol=1e-12)
    assert sorted(sign.tolist()) == [-1.0, 1.0, 1.0]
    assert m.sum() == pytest.approx(mass.sum())
    for xk in x:  # each kink is a kink of the measure's predictor
        X = np.array([[xk - 1e-3, 1.0], [xk, 1.0], [xk + 1e-3, 1.0]])
        f = np.asarray([sum(mass[i] * float(param.output(theta[i], X[k]))
                            for i in range(3)) for k in range(3)])
        assert abs(f[2] - 2 * f[1] + f[0]) > 1e-6


def test_report_of_the_reference_run_has_all_views(full_run):
    """The report the tiny run of GD, Langevin and JKO rendered at its end."""
    page = (full_run / "report.html").read_text()
    for fig in ("data_space.png", "measure.png", "jko_diagnostics.png", "predictor.png"):
        assert f'data-file="figures/{fig}"' in page, fig
    setup = re.search(r"<ul id='setup'>(.*?)</ul>", page, re.S).group(1)
    assert "grid_spacing: 0.666667" in setup  # 4/6, not 0.6666666666666666
    for number in re.findall(r"\d+\.\d+", setup):
        assert len(number.replace(".", "").lstrip("0")) <= 10, number
    assert "Methods: gd (h = 0.05, init = auto); langevin (h = 0.05, " in page
    assert "; jko (tau = 0.1, eps = 0.05" in page
    assert "reference_init: gd: grid" in page and "grid_reference_frozen_mass" in page
    assert "cartesian grid 7×7×7 on [-2, 2]^3" in page


def test_header_follows_set_overrides(set_run):
    """Issue 10.7: the config's description is marked as written for the file and the
    header says what the run computed (the fixture's `mfjko run --set model.lam=0.05 --set
    T=0.2` of a config with λ = 0.01)."""
    config, _, out, res = set_run
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert "λ = 0.05." in page and "λ = 0.01" not in page
    assert "this run changed model.lam=0.05, T=0.2 with --set" in page
    doc = yaml.safe_load((out / "config.yaml").read_text())
    assert doc["source"] == {"file": str(config), "overrides": ["model.lam=0.05", "T=0.2"]}


def test_report_of_a_folder_killed_early(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / RUN_MARKER).write_text("{}")
    page = report.render(folder).read_text()
    assert "nothing was computed yet" in page
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"config": crash_raw(), "provenance": {}, "setup": {"grid_spacing": 0.1 + 0.2}}))
    page = report.render(folder).read_text()
    assert "No record was committed yet" in page and "grid_spacing: 0.3<" in page
