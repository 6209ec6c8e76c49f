"""Standard vs debiased WFR JKO (methods.wfr_jko.debias) on configs/wfr.yaml's problem.

1-D regression (relu_teacher, n = 20), neuron, λ = 0.01, balanced init (s = 0.5, m = 1000,
seed 0: GD is then exactly the WFR flow), T = 10. References: GD (h = 0.01) and conic
particle GD (h = 0.01) from the same particles (deterministic given them). WFR JKO on
N = 512 directions, τ = 0.2, ρ = 2, ρ′ = ρ − ε, at ε = 1.5δ² (the config's) and a larger ε
(where D = ε/(4τ) matters), each standard and debiased. Prints, per run, the sup over the
records t = 0, 1, …, T of |F − F_GD|/F_GD and |F − F_conic|/F_GD, F at T, and the
Sinkhorn iterations per step (mean, max), and the wall time.

Usage: python scripts/wfr_debias_check.py [--T 10] [--eps-factors 1.5 20]
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
from mfjko.wfr import WFRSolverOptions


def run(stepper, problem, theta0, T):
    """(records t, F at each, the trajectory's diagnostics)."""
    tr = drive(stepper, problem, theta0, T=T, record_every=round(1.0 / stepper.step_size))
    return np.asarray(tr.t), np.asarray(tr.diagnostics["objective"]), tr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=float, default=10.0)
    ap.add_argument("--eps-factors", type=float, nargs="+", default=[1.5, 20.0])
    args = ap.parse_args()
    ds = data.regression_1d(n_train=20, n_test=200, target="relu_teacher", seed=0)
    problem = MeanFieldProblem.create("neuron", ds.X, ds.y, 0.01)
    key = jax.random.split(jax.random.PRNGKey(0), 4)[0]  # the runner's particle key
    theta0 = np.asarray(initial.sample_particles(initial.BalancedLaw(0.5), problem.param, key,
                                                 1000, 2))
    t, f_gd, _ = run(GradientDescent(h=0.01), problem, theta0, args.T)
    _, f_conic, _ = run(ConicGD(h=0.01), problem, theta0, args.T)
    print("t     " + " ".join(f"{x:9.1f}" for x in t))
    print("GD    " + " ".join(f"{x:9.6f}" for x in f_gd))
    print("conic " + " ".join(f"{x:9.6f}" for x in f_conic))
    delta2 = (2 * np.pi / 512) ** 2
    for factor in args.eps_factors:
        for debias in (False, True):
            tic = time.perf_counter()
            its: list[int] = []
            st = WFRJKO(tau=0.2, eps=factor * delta2, n_dirs=512,
                        options=WFRSolverOptions(debias=debias),
                        on_step=lambda k, t, nu, d, its=its: its.append(d["sinkhorn_iterations"]))
            tw, f, _ = run(st, problem, theta0, args.T)
            assert np.allclose(tw, t)
            mean_it, max_it = float(np.mean(its)), int(np.max(its))
            print(f"eps = {factor}δ² ({'debiased' if debias else 'standard'}): "
                  f"sup|F−F_GD|/F_GD = {np.max(np.abs(f - f_gd) / f_gd):.3e}, "
                  f"sup|F−F_conic|/F_GD = {np.max(np.abs(f - f_conic) / f_gd):.3e}, "
                  f"F(T) = {f[-1]:.6f}, iterations/step mean {mean_it:.1f} max {max_it}, "
                  f"{time.perf_counter() - tic:.0f} s")
            print("  F   " + " ".join(f"{x:9.6f}" for x in f))


if __name__ == "__main__":
    main()
