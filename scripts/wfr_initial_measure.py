"""The WFR-JKO's initial measure: the run's particles binned on the directions, or the
exact lift of the law (methods.wfr_jko.initial). Default problem (configs/wfr.yaml):
GD, conic particle GD (the WFR flow's particles, from GD's projected particles) and
WFR-JKO (N = 512, τ = 0.2, ε = 1.5δ²) from both initial measures, for seeds 0..S−1.
Prints F at t = 0, 1, 2, 5, 10 and the relative gaps |F − F_ref|/F_GD.

Usage: python scripts/wfr_initial_measure.py [--seeds 3] [--T 10]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko import data, initial
from mfjko.driver import drive
from mfjko.methods.conic import ConicGD
from mfjko.methods.gd import GradientDescent
from mfjko.methods.wfr_jko import WFRJKO
from mfjko.problem import MeanFieldProblem

TIMES = (0.0, 1.0, 2.0, 5.0, 10.0)


def losses(stepper, problem, theta0, T):
    tr = drive(stepper, problem, theta0, T=T, record_every=round(1.0 / stepper.step_size))
    return {float(t): float(f) for t, f in zip(tr.t, tr.diagnostics["objective"], strict=True)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--T", type=float, default=10.0)
    args = ap.parse_args()
    ds = data.regression_1d(n_train=20, n_test=200, target="relu_teacher", seed=0)
    problem = MeanFieldProblem.create("neuron", ds.X, ds.y, 0.01)
    law = initial.GaussianLaw(0.5)
    eps = 1.5 * (2 * np.pi / 512) ** 2
    rows = {}
    for seed in range(args.seeds):
        key = jax.random.split(jax.random.PRNGKey(seed), 4)[0]  # the runner's particle key
        theta0 = np.asarray(initial.sample_particles(law, problem.param, key, 1000, 2))
        tic = time.perf_counter()
        runs = {"gd": losses(GradientDescent(h=0.01), problem, theta0, args.T),
                "conic": losses(ConicGD(h=0.01), problem, theta0, args.T)}
        for init in ("particles", "law"):
            st = WFRJKO(tau=0.2, eps=eps, n_dirs=512, initial=init, law=law)
            runs[f"wfr_{init}"] = losses(st, problem, theta0, args.T)
        rows[seed] = runs
        print(f"seed {seed} ({time.perf_counter() - tic:.0f} s)")
        for t in TIMES:
            if t > args.T:
                continue
            g = runs["gd"][t]
            cells = " ".join(f"{m} {runs[m][t]:.6f} ({(runs[m][t] - g) / g:+.2%} vs GD, "
                             f"{(runs[m][t] - runs['conic'][t]) / g:+.2%} vs conic)"
                             for m in ("wfr_particles", "wfr_law"))
            print(f"  t = {t:4.1f}: GD {g:.6f} conic {runs['conic'][t]:.6f} "
                  f"({(runs['conic'][t] - g) / g:+.2%}) | {cells}")
    T = args.T
    for m in ("conic", "wfr_particles", "wfr_law"):
        gaps = np.array([(r[m][T] - r["gd"][T]) / r["gd"][T] for r in rows.values()])
        print(f"{m}: gap to GD at T = {T:g}: mean {gaps.mean():+.3%}, std {gaps.std():.3%}")
    gd_T = np.array([r["gd"][T] for r in rows.values()])
    print(f"GD F(T) seed spread: {gd_T.std() / gd_T.mean():.3%}")


if __name__ == "__main__":
    main()
