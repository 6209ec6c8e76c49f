"""Implicit steps on the shipped configs: share of steps meeting tol, residuals, time.

    python scripts/implicit_survey.py [CONFIG ...] [--solver-file PATH] [--out FILE]

For each config: its data, parametrization, λ and initial particles (as ``mfjko run``
draws them), the config's implicit h (or a default h per config, as when a user adds
``methods.implicit`` to it) over its horizon T, one backward Euler step at a time with
tol = 1e-10. Reports the share of steps whose inner solve met tol, the worst final
residual, the share of particles meeting tol in the worst step, the most Newton
iterations, and the seconds per step (after one compiling step). ``--solver-file`` loads
another version of ``mfjko/methods/implicit.py`` (e.g. an older commit's) to compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mfjko import initial
from mfjko.config import load_config
from mfjko.problem import MeanFieldProblem
from mfjko.runner.setup import dataset_for, law_for

#: h for configs that ship without an implicit method (about record_every / 10)
DEFAULT_H = {"signed": 0.05, "sphere": 0.05, "orthogonal": 0.25, "digits": 0.05}


def _solver(path):
    if path is None:
        from mfjko.methods import implicit
        return implicit
    spec = importlib.util.spec_from_file_location("implicit_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def survey(path_cfg, mod, tol=1e-10, max_iter=50):
    """One config's table row (dict)."""
    cfg = load_config(path_cfg)
    ds = dataset_for(cfg)
    prob = MeanFieldProblem.create(cfg.model.parametrization, ds.X, ds.y, cfg.model.lam)
    k_particles = jax.random.split(jax.random.PRNGKey(cfg.seed), 4)[0]
    theta = jnp.asarray(initial.sample_particles(law_for(cfg), prob.param, k_particles,
                                                 cfg.init.m, prob.d))
    mc = cfg.methods.implicit
    h = mc.h if mc is not None else DEFAULT_H[cfg.name]
    n = int(round(cfg.T / h))
    args = (jnp.float64(h), jnp.float64(tol), jnp.int32(1), jnp.int32(max_iter))
    res, frac, its, secs = [], [], [], []
    for _ in range(n):
        w0 = time.perf_counter()
        theta, it_max, _, r, _, f = mod._implicit_advance(prob.param, theta, prob.X, prob.y,
                                                          prob.lam, *args)
        r = float(r)
        secs.append(time.perf_counter() - w0)
        res.append(r)
        frac.append(float(f))
        its.append(int(it_max))
    res = np.asarray(res)
    return {"config": cfg.name, "param": cfg.model.parametrization, "m": cfg.init.m,
            "h": h, "steps": n, "met_tol": float(np.mean(res <= tol)),
            "missed": int(np.sum(res > tol)), "worst_residual": float(res.max()),
            "worst_particle_share": float(min(frac)), "max_iter_used": max(its),
            "s_per_step": float(np.mean(secs[1:])) if n > 1 else float("nan"),
            "finite": bool(np.isfinite(np.asarray(theta)).all())}


def main() -> None:
    """Survey the configs and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="*", default=[
        "configs/default.yaml", "configs/signed.yaml", "configs/sphere.yaml",
        "configs/orthogonal.yaml", "configs/teacher.yaml", "configs/digits.yaml"])
    ap.add_argument("--solver-file", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    mod = _solver(a.solver_file)
    print(f"solver {mod.__file__}; load average {os.getloadavg()}")
    print(f"{'config':11s} {'param':7s} {'m':>5s} {'h':>5s} {'steps':>5s} {'met tol':>7s} "
          f"{'worst res':>9s} {'worst ptcl':>10s} {'iters':>5s} {'s/step':>7s}")
    rows = []
    for c in a.configs:
        r = survey(c, mod)
        rows.append(r)
        print(f"{r['config']:11s} {r['param']:7s} {r['m']:5d} {r['h']:5.2f} {r['steps']:5d} "
              f"{r['met_tol']:7.1%} {r['worst_residual']:9.2e} {r['worst_particle_share']:10.4f} "
              f"{r['max_iter_used']:5d} {r['s_per_step']:7.3f}", flush=True)
    print(f"load average {os.getloadavg()}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
