"""Entropic JKO on the orthogonal-input case of Boursier, Pillaud-Vivien & Flammarion (2022).

X = I₄, y = (1, 1, −1, −1), λ = 0, balanced initialization of scale s (the setting of
tests/test_orthogonal.py). GD from a small initialization converges to
h*(x) = σ(β₊ᵀx) − σ(β₋ᵀx) (mfjko.optimum.orthogonal_limit_predictor). This script runs
the `sphere` parametrization on a grid S³ × β (quasi-uniform directions × a β line),
starting from the discretization of the same law, and prints the sup-error of the JKO
predictor against h* on the data and off the data (4000 points of the unit sphere), next
to particle GD's (classic neurons) at the same mean-field time.

    python scripts/orthogonal_jko.py [--s 0.01] [--T 40] [--tau 0.2] [--eps 0.04]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko import grid_runs, grids, initial, optimum, particles
from mfjko.objective import predict
from mfjko.parametrizations import get


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--s", type=float, default=0.01, help="initialization scale")
    ap.add_argument("--m", type=int, default=100, help="GD particles")
    ap.add_argument("--T", type=float, default=100.0, help="mean-field horizon")
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--eps", type=float, default=0.04)
    ap.add_argument("--n-dirs", type=int, default=300)
    ap.add_argument("--n-beta", type=int, default=81)
    ap.add_argument("--beta-max", type=float, default=8.0)
    args = ap.parse_args()

    X, y = np.eye(4), np.array([1.0, 1.0, -1.0, -1.0])
    rng = np.random.default_rng(0)
    off = rng.normal(size=(4000, 4))
    off /= np.linalg.norm(off, axis=1, keepdims=True)
    h_data = optimum.orthogonal_limit_predictor(X, y, X)
    h_off = optimum.orthogonal_limit_predictor(X, y, off)
    param = get("sphere")
    # Particles θ = √m (w, a) reproduce the classic network (tests/test_orthogonal.py).
    law = initial.BalancedLaw(np.sqrt(args.m) * args.s)

    # GD runs on classic neurons (`neuron`), the dynamics whose limit h* is; the `sphere`
    # parametrization has other gradients (MATH.md), hence another small-init limit.
    neuron = get("neuron")
    th0 = initial.sample_particles(law, neuron, jax.random.PRNGKey(0), args.m, 4)
    gd = particles.gradient_descent(neuron, th0, X, y, 0.0, h=0.05, T=args.T,
                                    record_every=int(round(args.T / 0.05)))
    s_gd, w_gd = gd.final()

    geom = grids.sphere_line_grid(4, args.n_dirs, (-args.beta_max, args.beta_max), args.n_beta)
    p0, outside = grids.discretize(law, param, geom, jax.random.PRNGKey(1))
    phi = param.features(geom.points, X)
    traj = grid_runs.run_jko(geom, param, p0, X, y, 0.0, args.tau, args.eps, args.T,
                       record_every=int(round(args.T / args.tau)))
    s_jk, w_jk = traj.final()

    def sup_errors(par, points, weights):
        on = np.max(np.abs(np.asarray(predict(par, points, weights, X)) - h_data))
        of = np.max(np.abs(np.asarray(predict(par, points, weights, off)) - h_off))
        return on, of

    print(f"s = {args.s}, T = {args.T}, grid N = {geom.size} (spacing {geom.spacing:.3f}), "
          f"tau = {args.tau}, eps = {args.eps} (D = eps/4tau = {args.eps / (4 * args.tau):.3f}); "
          f"initial mass outside the grid {outside:.2e}; |Phi p0| max {np.abs(phi @ p0).max():.2e}")
    for name, par, pts, w in [("GD", neuron, s_gd, w_gd), ("JKO", param, s_jk, w_jk)]:
        on, of = sup_errors(par, pts, w)
        print(f"{name:4s}: sup |f - h*| on data {on:.4f}, off data {of:.4f}")


if __name__ == "__main__":
    main()
