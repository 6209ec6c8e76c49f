"""Issue 20.5 prototype: the debiased step with an explicit second-order (Fisher) correction.

The debiased step's residual is O(ε²): for q = N(0, s²) one step adds ε²/(16 s²) of variance
per coordinate (docs/MATH.md). Its source is the ε² term of the entropic cost, whose first
variation at p = q is a multiple of the Fisher information's, δI/δp(q) = −4 Δ√q/√q (the
Bohm potential). Calibrated on that Gaussian, the potential

    U_k = (ε²/8) (Δ√q / √q)(θ_k)     (Δ: the grid's 7-point Laplacian, in log q)

added to the step's objective (⟨U, p⟩, explicit in q, so the step stays convex) cancels the
residual: min_x |x − y|² + U(x) with ∇U = ε² x/(16 s⁴) shrinks the variance by ε²/(16 s²).
U enters through the weight-decay potential V (2τ·(λ/2)·V_extra = U). The ratio
√q(neighbour)/√q is capped at e^{cap} (default cap = 3): where mass concentrates in a cell
(s ≲ √ε) the expansion does not hold, and uncapped ratios reach 1e4.

Same problem, grid, references and output as scripts/debias_check.py (matched GD of the
grid's own initial measure; 41³, τ = 0.2, ε = δ², T = 10), for the debiased step without
and with the correction.

Usage: python scripts/debias_fisher_check.py [--n 41] [--T 10] [--cap 3] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from debias_check import HALF, LAM, matched_gd

import mfjko  # noqa: F401  (float64)
from mfjko import data, initial
from mfjko import parametrizations as P
from mfjko.geometry import cartesian_grid
from mfjko.jko import JKOSolverOptions
from mfjko.jko.solver import solve_step
from mfjko.problem import GridProblem, MeanFieldProblem


def bohm_potential(q, n, delta, cap):
    """(Δ√q/√q) on the n³ grid (C order, zero-flux faces), from log q; ratios capped."""
    lq = jnp.log(jnp.maximum(q, 1e-300)).reshape(n, n, n)
    out = jnp.zeros_like(lq)
    for ax in range(3):
        for shift in (1, -1):
            nb = jnp.roll(lq, shift, axis=ax)
            edge = (jnp.arange(n) == (0 if shift == 1 else n - 1))
            edge = edge.reshape([n if a == ax else 1 for a in range(3)])
            d = jnp.where(edge, 0.0, jnp.clip(0.5 * (nb - lq), -cap, cap))
            out = out + jnp.exp(d) - 1.0
    return (out / delta**2).reshape(-1)


def run(grid, p0, tau, eps, T, n, delta, cap, fisher):
    opts = JKOSolverOptions(debias=True)
    p, state = jnp.asarray(p0), None
    F, its, secs = [float(grid.objective(p))], [], []
    for _ in range(int(round(T / tau))):
        t0 = time.perf_counter()
        g = grid
        if fisher:
            U = (eps**2 / 8) * bohm_potential(p, n, delta, cap)
            g = eqx.tree_at(lambda x: x.v, grid, grid.v + U / (tau * grid.lam))
        p, state, diag = solve_step(g, p, tau, eps, state, opts)
        p.block_until_ready()
        secs.append(time.perf_counter() - t0)
        its.append(int(diag.sinkhorn_iterations))
        F.append(float(grid.objective(p)))
    return np.array(F), np.array(its), np.array(secs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=41)
    ap.add_argument("--T", type=float, default=10.0)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--cap", type=float, default=3.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ds = data.regression_1d(n_train=20, n_test=200, target="relu_teacher", seed=0)
    X, y = jnp.asarray(ds.X), jnp.asarray(ds.y)
    param = P.get("neuron")
    n = args.n
    geom = cartesian_grid([(-HALF, HALF)] * 3, [n] * 3)
    pts = np.asarray(geom.points).reshape(n, n, n, 3)
    assert np.ptp(pts[:, 0, 0, 0]) > 0 and np.ptp(pts[0, :, 0, 1]) > 0  # C order: axis k ↔ coord k
    delta = 2 * HALF / (n - 1)
    eps, tau = delta**2, args.tau
    p0, _ = initial.discretize(initial.GaussianLaw(scale=0.5), param, geom,
                               jax.random.PRNGKey(0))
    p0 = np.asarray(p0)
    grid = GridProblem.create(MeanFieldProblem.create(param, X, y, LAM), geom)
    keep = p0 > 0
    F_gd = matched_gd(param, jnp.asarray(np.asarray(geom.points)[keep]),
                      jnp.asarray(p0[keep]), X, y, args.T, tau)
    t = tau * np.arange(len(F_gd))
    res = {"n": n, "delta": delta, "eps": eps, "tau": tau, "T": args.T, "cap": args.cap,
           "t": t.tolist(), "F_gd": F_gd.tolist()}
    for name, fisher in (("debiased", False), ("debiased+fisher", True)):
        F, its, secs = run(grid, p0, tau, eps, args.T, n, delta, args.cap, fisher)
        gap = np.abs(F - F_gd) / F_gd
        res[name] = {"F": F.tolist(), "gap": gap.tolist(), "iterations": its.tolist()}
        print(f"{name}: its/step {its.mean():.1f} (max {its.max()}), s/step "
              f"{np.mean(secs[1:]):.2f}; sup gap t ≤ 4 {100 * gap[t <= 4 + 1e-9].max():.3f} %, "
              f"t ≤ T {100 * gap.max():.3f} %", flush=True)
    print("   t     F_gd      debiased  +fisher  (signed F/F_GD − 1)")
    for k in range(0, len(t), 5):
        a = res["debiased"]["F"][k] / F_gd[k] - 1
        b = res["debiased+fisher"]["F"][k] / F_gd[k] - 1
        print(f"{t[k]:5.1f}  {F_gd[k]:.6f}  {100 * a:+7.3f}%  {100 * b:+7.3f}%")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
