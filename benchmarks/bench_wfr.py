"""Benchmark: one entropic WFR JKO step (mfjko.wfr.wfr_jko_step) on direction grids.

Cases: N ∈ {512, 4096} directions on S¹ (regression_1d, n = 20, d = 2) and on S³
(data.teacher(d_in=3, n_train=50), d = 4). S¹: uniform angles, ε = 4.5e-4 for both N
(D = ε/4τ = 1.1e-3, the head-to-head's physics; ``--eps-s1`` changes it). S³: normalized
Gaussian points (repulsion would need GBs at N = 4096; point quality does not change the
cost), δ = median nearest-neighbour geodesic distance, ε = 1.5δ². τ = 0.1, λ = 0.01,
ρ = 2, ρ' = ρ − ε, uniform masses 0.125 per sign; stop at relative marginal error 1e-9.

Reported: kernel build (NumPy, O(N²)), compile, cold step (state None, compiled; median
of 3), warm step (from the previous step's state; mean of steps 2..4), Sinkhorn
iterations (cold / warm mean), max Newton iterations per prox, exact log-sum-exp
fallbacks, peak RSS. See benchmarks/README.md.

Usage: python benchmarks/bench_wfr.py [--sizes 512 4096] [--eps-s1 4.5e-4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import jax
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko import data
from mfjko.wfr import (
    circle_directions,
    direction_features,
    geodesic_distance,
    wfr_jko_step,
    wfr_kernel,
)

TAU, LAM, RHO = 0.1, 0.01, 2.0


def directions(sphere: str, N: int):
    if sphere == "S1":
        return circle_directions(N), 2 * np.pi / N
    x = np.random.default_rng(0).standard_normal((N, 4))
    S = x / np.linalg.norm(x, axis=1, keepdims=True)
    nn = np.empty(N)
    for i in range(0, N, 512):  # nearest-neighbour geodesic distance, by row blocks
        d = geodesic_distance(S[i : i + 512], S)
        d[np.arange(d.shape[0]), np.arange(i, i + d.shape[0])] = np.inf
        nn[i : i + 512] = d.min(axis=1)
    return S, float(np.median(nn))


def case(sphere: str, N: int, eps_s1: float) -> dict:
    if sphere == "S1":
        ds = data.regression_1d(n_train=20, seed=0)
    else:
        ds = data.teacher(d_in=3, width=3, n_train=50, seed=0)
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    S, delta = directions(sphere, N)
    eps = eps_s1 if sphere == "S1" else 1.5 * delta**2
    phi = direction_features(S, X)
    q = np.full((2, N), 0.125 / N)
    t = time.perf_counter()
    ker = wfr_kernel(S, eps, RHO)
    jax.block_until_ready(ker.K)
    build = time.perf_counter() - t

    def step(qq, state=None):
        t = time.perf_counter()
        nu, st, dg = wfr_jko_step(ker, qq, phi, y, LAM, TAU, state, rho_old=RHO - eps)
        jax.block_until_ready(nu)
        return nu, st, dg.as_dict(), time.perf_counter() - t

    _, _, _, first = step(q)  # compile + one step
    colds = [step(q) for _ in range(3)]
    cold_t = float(np.median([c[3] for c in colds]))
    nu, st, d_cold = colds[0][0], colds[0][1], colds[0][2]
    warm_t, warm_it, newton, exact = [], [], [d_cold["newton_max"]], [d_cold["exact_lse"]]
    for _ in range(3):
        nu, st, d, dt = step(nu, st)
        warm_t.append(dt)
        warm_it.append(d["sinkhorn_iterations"])
        newton.append(d["newton_max"])
        exact.append(d["exact_lse"])
    return {
        "sphere": sphere, "N": N, "n": len(y), "delta": delta, "eps": eps, "kernel_build_s": build,
        "compile_s": first - cold_t, "cold_s": cold_t, "warm_s": float(np.mean(warm_t)),
        "cold_iterations": d_cold["sinkhorn_iterations"],
        "warm_iterations": float(np.mean(warm_it)), "newton_max": max(newton),
        "exact_lse": int(sum(exact)), "converged": bool(d_cold["converged"]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 4096])
    ap.add_argument("--eps-s1", type=float, default=4.5e-4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{platform.processor() or platform.machine()}, jax {jax.__version__}")
    print("| sphere | N | n | ε | ε/δ² | kernel build (s) | compile (s) | cold step (s) "
          "| warm step (s) | iterations cold / warm | Newton max | exact LSE | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for sphere in ("S1", "S3"):
        for N in args.sizes:
            r = case(sphere, N, args.eps_s1)
            rows.append(r)
            print(f"| {sphere} | {N} | {r['n']} | {r['eps']:.2e} | "
                  f"{r['eps'] / r['delta']**2:.1f} | "
                  f"{r['kernel_build_s']:.2f} | "
                  f"{r['compile_s']:.1f} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | "
                  f"{r['cold_iterations']:.0f} / {r['warm_iterations']:.1f} | "
                  f"{r['newton_max']:.0f} | {r['exact_lse']} | {r['peak_rss_mb']:.0f} |",
                  flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
