"""Benchmark: the debiased entropic JKO step against the standard one (issue 20).

Problem: the default run's (configs/default.yaml data: regression_1d, n_train = 20,
seed 0; ``neuron``, λ = 0.01; Gaussian init of scale 0.5 discretized on the cells) on a
box grid [-3.5, 3.5]³ with s points per axis, ε = δ², τ = 0.2, tol 1e-9 (the solver's
defaults: Anderson depth 6, warm start). Both variants advance their own trajectory from
the same p0 in one process, alternating step by step (so load changes on a shared
machine hit both alike). Reported per size: compile + first (cold) step, warm step time
(mean over steps 2..k) and Sinkhorn iterations per step (mean, max), and the
debiased/standard ratios.

Usage::

    python benchmarks/bench_debias.py [--sizes 21 64] [--steps 6] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko import data, initial
from mfjko import parametrizations as P
from mfjko.geometry import cartesian_grid
from mfjko.jko import JKOSolverOptions
from mfjko.jko.solver import solve_step
from mfjko.problem import GridProblem, MeanFieldProblem

TAU, LAM, HALF = 0.2, 0.01, 3.5


def run_size(size: int, steps: int) -> dict:
    ds = data.regression_1d(n_train=20, n_test=200, target="relu_teacher", seed=0)
    param = P.get("neuron")
    geom = cartesian_grid([(-HALF, HALF)] * 3, [size] * 3)
    eps = (2 * HALF / (size - 1)) ** 2
    p0, _ = initial.discretize(initial.GaussianLaw(scale=0.5), param, geom,
                               jax.random.PRNGKey(0))
    grid = GridProblem.create(MeanFieldProblem.create(param, ds.X, ds.y, LAM), geom)
    variants = {"standard": JKOSolverOptions(), "debiased": JKOSolverOptions(debias=True)}
    state = {k: (jnp.asarray(p0), None) for k in variants}
    out = {k: {"seconds": [], "iterations": []} for k in variants}
    for _ in range(steps):
        for name, opts in variants.items():
            p, st = state[name]
            t0 = time.perf_counter()
            p, st, diag = solve_step(grid, p, TAU, eps, st, opts)
            p.block_until_ready()
            out[name]["seconds"].append(time.perf_counter() - t0)
            out[name]["iterations"].append(int(diag.sinkhorn_iterations))
            state[name] = (p, st)
    row = {"size": size, "N": size**3, "eps": eps, "tau": TAU}
    for name, r in out.items():
        s, it = np.array(r["seconds"]), np.array(r["iterations"])
        row[name] = {"first_s": float(s[0]), "warm_s": float(s[1:].mean()),
                     "iterations_mean": float(it.mean()), "iterations_max": int(it.max()),
                     "seconds": s.tolist(), "iterations": it.tolist()}
    row["ratio_warm_s"] = row["debiased"]["warm_s"] / row["standard"]["warm_s"]
    row["ratio_iterations"] = (row["debiased"]["iterations_mean"]
                               / row["standard"]["iterations_mean"])
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[21, 64])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    print(f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"{jax.devices()[0].platform}")
    print(" size        N   variant   first s   warm s/step   iters mean (max)")
    for size in args.sizes:
        row = run_size(size, args.steps)
        rows.append(row)
        for name in ("standard", "debiased"):
            r = row[name]
            print(f"{size:5d} {row['N']:8d}   {name:8s} {r['first_s']:8.2f}   "
                  f"{r['warm_s']:10.3f}   {r['iterations_mean']:6.1f} ({r['iterations_max']})")
        print(f"      ratio debiased/standard: warm time {row['ratio_warm_s']:.2f}, "
              f"iterations {row['ratio_iterations']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
