"""Sweeps and studies of the WFR JKO: derived keys wfr_jko.* (angular spacing and speed),
its point facts, per-step drift ratios carried to the table, and the study summarized for
the method named in the sweep's study section (in-process: no Dask cluster)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml

from mfjko import data, initial
from mfjko import parametrizations as P
from mfjko.sweep import expand, load_sweep, resolve_point
from mfjko.sweep.execute import run_group
from mfjko.sweep.results import collect
from mfjko.sweep.run import _write_point, plan
from mfjko.wfr import bin_particles, circle_directions, conic_velocity

N = 48
BASE = {
    "data": {"name": "regression_1d", "kwargs": {"n_train": 8, "n_test": 30, "seed": 1}},
    "model": {"parametrization": "neuron", "lam": 0.01},
    "init": {"law": "gaussian", "scale": 0.5, "m": 60},
    "methods": {"gd": {"h": 0.05}, "langevin": {"h": 0.05, "match_jko": True, "m": 400, "seeds": 2},
                "conic": {"h": 0.05}, "wfr_jko": {"tau": 0.1, "eps": 0.01, "n_dirs": N}},
    "T": 0.4, "record_every": 0.2,
    # max_support: support.tiny_raw's 60, not 2N = 96: the Sinkhorn programs the tiny runs
    # compiled (measures of more atoms, Langevin's 800 particles and the 2N conic atoms, are
    # compressed to it; nothing here reads a gap's value): 14.7 → 9.1 CPU-s
    "metrics": {"sinkhorn_eps": 0.1, "max_support": 60, "particles_saved": 10,
                "measure_gap": "final"},
}


def test_wfr_sweep_derived_keys_facts_drift_and_study(tmp_path):
    spec_doc = {"name": "wfr_tiny", "base": BASE,
                "product": {"wfr_jko.eps_over_delta2": [1.5], "wfr_jko.courant": [0.25, 0.5]},
                "study": {"method": "wfr_jko",
                          "phase": {"x": "courant", "y": "eps_over_delta2", "panel": "grid_size"}}}
    path = tmp_path / "wfr_tiny.yaml"
    path.write_text(yaml.safe_dump(spec_doc))
    spec = load_sweep(path)
    points = expand(spec)
    delta = 2 * math.pi / N
    # V₀: the RMS of the conic field's direction part over GD's projected, binned particles
    # weighted by mass (jax.grad inside conic_velocity; independent of direction_speed)
    ds = data.regression_1d(n_train=8, n_test=30, seed=1)
    key = jax.random.split(jax.random.PRNGKey(0), 4)[0]
    th = np.asarray(initial.sample_particles(initial.GaussianLaw(0.5), P.get("neuron"), key,
                                             60, 2))
    S = circle_directions(N)
    q = bin_particles(S, np.asarray(P.get("sphere").from_classic(th[:, :-1], th[:, -1])))
    conic = np.c_[np.concatenate([S, S]), 2 * N * np.r_[q[0], -q[1]]]
    v = np.asarray(conic_velocity(jnp.asarray(conic), ds.X, ds.y, 0.01))[:, :-1]
    speed = math.sqrt(np.sum(np.abs(conic[:, -1]) * (v**2).sum(1)) / np.abs(conic[:, -1]).sum())
    for p in points:
        cfg = resolve_point(spec, p)
        mc = cfg.methods.wfr_jko
        assert mc.eps == pytest.approx(1.5 * delta**2, rel=1e-9)
        assert p.resolved["wfr_jko_speed0"] == pytest.approx(speed, rel=1e-10)
        assert abs(0.2 / mc.tau - round(0.2 / mc.tau)) < 1e-9
        assert p.resolved["wfr_jko_courant"] == pytest.approx(mc.tau * speed / delta)
        assert cfg.langevin_D() == pytest.approx(mc.eps / (4 * mc.tau))
    # points differing only in their wfr_jko settings form one group (GD, conic, F* shared)
    tasks, failures = plan(spec, points, batch=True)
    assert not failures and len(tasks) == 1 and len(tasks[0]) == 2
    out = tmp_path / "out"
    (out / "points").mkdir(parents=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump({**spec_doc, "base_config": BASE}))
    results = run_group([doc for _, doc in tasks[0]], [p.id for p, _ in tasks[0]])
    gd_rows = [[r for r in res["rows"] if r["method"] == "gd"] for res in results]
    assert gd_rows[0] == gd_rows[1]
    # GD starts from the WFR's ν₀ (its conic view: Setup.grid_particles): the same F(0)
    for res in results:
        F0 = {r["method"]: r["loss"] for r in res["rows"] if r["t"] == 0}
        assert F0["gd"] == pytest.approx(F0["wfr_jko"], rel=1e-9)
        assert F0["conic"] == pytest.approx(F0["wfr_jko"], rel=1e-9)
    for p, res in zip([p for p, _ in tasks[0]], results, strict=True):
        assert res["error"] is None, res.get("traceback")
        facts = res["facts"]
        assert facts["wfr_jko_delta"] == pytest.approx(delta, rel=1e-9)
        assert facts["wfr_jko_grid_size"] == 2 * N
        assert facts["wfr_jko_eps_over_delta2"] == pytest.approx(1.5, rel=1e-9)
        n_steps = round(0.4 / facts["wfr_jko_tau"])
        assert len(res["drift_methods"]["wfr_jko"]) == n_steps
        assert {r["method"] for r in res["rows"]} == {"gd", "langevin", "conic", "wfr_jko"}
        _write_point(out, p, res)
    table = collect(out, spec, points)
    wfr = table[(table["method"] == "wfr_jko") & (table["t"] > 0)]
    assert wfr["drift_ratio"].notna().all() and wfr["drift_ratio"].between(0.05, 2).all()
    from mfjko.study.render import render_study

    render_study(out)
    pts = pd.read_csv(out / "study" / "points.csv")
    assert set(pts["method"]) == {"wfr_jko"}
    np.testing.assert_allclose(sorted(pts["courant"]),
                               sorted(p.resolved["wfr_jko_courant"] for p in points))
    for col in ("gap_gd", "gap_conic", "gap_conic_T", "direction_gap_T", "drift_ratio"):
        assert pts[col].notna().all(), col
    summary = json.loads((out / "study" / "summary.json").read_text())
    assert summary["points"] == 2 and (out / "study" / "phase.png").exists()


def test_points_share_references_only_with_the_same_wfr_initial_measure(tmp_path):
    """A group shares GD and conic GD, which start from the WFR's ν₀ (no jko grid): points
    that differ in τ or ε form one group, points that differ in n_dirs (another ν₀) do not;
    beside a jko grid (the references' start) the WFR settings do not split groups."""
    doc = {"name": "wfr_groups", "base": BASE,
           "product": {"methods.wfr_jko.n_dirs": [N, 64], "methods.wfr_jko.tau": [0.1, 0.2]}}
    path = tmp_path / "groups.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = load_sweep(path)
    tasks, failures = plan(spec, expand(spec), batch=True)
    assert not failures
    assert sorted(len(t) for t in tasks) == [2, 2]
    assert all(len({d["methods"]["wfr_jko"]["n_dirs"] for _, d in t}) == 1 for t in tasks)
    base = json.loads(json.dumps(BASE))
    base["methods"]["jko"] = {"tau": 0.1, "eps": 0.05, "grid": {
        "kind": "cartesian", "ranges": [[-2, 2]] * 3, "sizes": [7] * 3}}
    path.write_text(yaml.safe_dump({**doc, "base": base}))
    spec = load_sweep(path)
    tasks, failures = plan(spec, expand(spec), batch=True)
    assert not failures and len(tasks) == 1
