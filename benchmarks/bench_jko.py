"""Benchmark: one entropic JKO step on the 1-D-regression-with-bias problem.

Problem: ``neuron`` parametrization, data x_j = linspace(−1, 1, 20) with a bias column,
y = |x| − 0.3, λ = 0.01; a 3-D box grid over (w1, w2, α) ∈ [−3, 3]³ with s points per
axis (N = s³), spacing δ = 6/(s − 1), ε = δ² (so each step blurs by √(ε/2) ≈ 0.7δ),
τ = 0.1 (mean-field time; σ = 2τ/ε), initial law N(0, I) discretized on the cells.
Every solver stops at the same marginal error ‖b ⊙ Kᵀa − q‖₁ ≤ 1e-9.

Cases (each in its own subprocess, so that peak memory is that case's alone):

- ``ours``: :func:`mfjko.jko.jko_step` on the separable ProductGeometry (log domain,
  KL-prox by Newton on the n-dim dual, Anderson acceleration, warm start);
- ``ours_plain``: the same without Anderson (ablation);
- ``dense_jax``: the same algorithm on a DenseGeometry (explicit N×N cost) — baseline (b);
- ``numpy_scipy``: what a user writes by hand: dense Gibbs kernel K = exp(−C/ε) in NumPy
  (kernel domain), generalized Sinkhorn with the KL-prox of F solved by
  scipy.optimize.minimize(L-BFGS-B) on p ≥ 0 — baseline (a).

Reported per case: compile time (JAX), cold step time (no warm start, compiled), warm
step time (started from the previous step's state; mean over steps 2..k), Sinkhorn
iterations, peak RSS of the process and its increase over the post-import baseline
(CPU; XLA buffers live in RSS), device peak bytes where the backend reports them (GPU),
and the L1 distance of the cold step's p to ours.

Usage::

    python benchmarks/bench_jko.py [--sizes 21 32 64] [--out FILE] [--quick]
        [--dense-max 21] [--numpy-max 21] [--warm-steps 3] [--time-cap 240]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOL = 1e-9
TAU = 0.1
LAM = 0.01
N_DATA = 20
RADIUS = 3.0


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def problem(size: int):
    """(geometry, q0, phi, y, v, eps) of the benchmark at s = size points per axis."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import mfjko  # noqa: F401
    from mfjko import grids
    from mfjko import parametrizations as P
    from mfjko.initial import GaussianLaw

    geom = grids.cartesian_grid([(-RADIUS, RADIUS)] * 3, [size] * 3)
    param = P.get("neuron")
    x = np.linspace(-1, 1, N_DATA)
    X = jnp.asarray(np.stack([x, np.ones_like(x)], 1))
    y = jnp.asarray(np.abs(x) - 0.3)
    phi = param.features(geom.points, X)
    v = param.potentials(geom.points)
    q0, _ = grids.discretize(GaussianLaw(1.0), param, geom, jax.random.PRNGKey(0))
    delta = 2 * RADIUS / (size - 1)
    return geom, q0, phi, y, v, delta * delta


def run_jax_case(size: int, case: str, warm_steps: int, out_p: str) -> dict:
    import jax
    import numpy as np

    from mfjko import grids
    from mfjko.jko import JKOSolverOptions, jko_step

    base = rss_peak_mb()
    geom, q0, phi, y, v, eps = problem(size)
    if case == "dense_jax":
        geom = grids.DenseGeometry.from_points(geom.points, geom.cost_matrix())
    opts = JKOSolverOptions(tol=TOL, anderson_depth=0 if case == "ours_plain" else 6)

    def step(q, state):
        p, st, d = jko_step(geom, q, phi, y, v, LAM, TAU, eps, state, opts)
        jax.block_until_ready(p)
        return p, st, d

    t0 = time.perf_counter()
    step(q0, None)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    p1, s1, d1 = step(q0, None)
    t_cold = time.perf_counter() - t0
    np.save(out_p, np.asarray(p1))
    warm_t, warm_it = [], []
    p, s = p1, s1
    for _ in range(warm_steps):
        t0 = time.perf_counter()
        p, s, d = step(p, s)
        warm_t.append(time.perf_counter() - t0)
        warm_it.append(int(d.sinkhorn_iterations))
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    return {
        "compile_s": t_first - t_cold,
        "cold_s": t_cold,
        "cold_iters": int(d1.sinkhorn_iterations),
        "cold_newton": int(d1.newton_total),
        "warm_s": float(np.mean(warm_t)),
        "warm_iters": float(np.mean(warm_it)),
        "marginal_error": float(d1.marginal_error),
        "device_peak_mb": (stats or {}).get("peak_bytes_in_use", float("nan")) / 2**20,
        "rss_base_mb": base,
    }


def numpy_scipy_step(C, q, phi, y, v, lam, tau, eps, tol, max_iter, time_cap, p_init=None):
    """Generalized Sinkhorn in the kernel domain with an L-BFGS-B KL-prox (baseline a)."""
    import numpy as np
    import scipy.optimize as so

    n = phi.shape[0]
    K = np.exp(-C / eps)
    sigma = 2 * tau / eps
    a = np.ones_like(q)
    p = q.copy() if p_init is None else p_init.copy()
    t_start = time.perf_counter()
    err, it = np.inf, 0
    for it in range(1, max_iter + 1):  # noqa: B007
        b = q / (K.T @ a)
        z = K @ b

        def fun(p, z=z, log_z=np.log(z)):
            # σF(p) + KL(p | z) and its gradient
            r = phi @ p - y
            lp = np.log(np.maximum(p, 1e-300))
            f = sigma * (0.5 * r @ r / n + 0.5 * lam * v @ p) + np.sum(p * (lp - log_z) - p + z)
            g = sigma * (phi.T @ r / n + 0.5 * lam * v) + lp - log_z
            return f, g

        res = so.minimize(fun, np.maximum(p, 1e-300), jac=True, method="L-BFGS-B",
                          bounds=[(0.0, None)] * len(q),
                          options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12})
        p = res.x
        a = p / z
        err = np.abs(b * (K.T @ a) - q).sum()
        if err <= tol or time.perf_counter() - t_start > time_cap:
            break
    return p / p.sum(), it, err


def run_numpy_case(size: int, warm_steps: int, out_p: str, time_cap: float) -> dict:
    import numpy as np

    base = rss_peak_mb()
    geom, q0, phi, y, v, eps = problem(size)
    C = np.asarray(geom.cost_matrix())
    q0, phi, y, v = (np.asarray(a) for a in (q0, phi, y, v))
    t0 = time.perf_counter()
    p1, it1, err1 = numpy_scipy_step(C, q0, phi, y, v, LAM, TAU, eps, TOL, 10_000, time_cap)
    t_cold = time.perf_counter() - t0
    np.save(out_p, p1)
    warm_t, warm_it = [], []
    if err1 <= TOL:
        p = p1
        for _ in range(warm_steps):  # "warm": the prox starts from the previous p
            t0 = time.perf_counter()
            p, it, _ = numpy_scipy_step(C, p, phi, y, v, LAM, TAU, eps, TOL, 10_000, time_cap,
                                        p_init=p)
            warm_t.append(time.perf_counter() - t0)
            warm_it.append(it)
    return {
        "compile_s": 0.0,
        "cold_s": t_cold,
        "cold_iters": it1,
        "cold_newton": float("nan"),
        "warm_s": float(np.mean(warm_t)) if warm_t else float("nan"),
        "warm_iters": float(np.mean(warm_it)) if warm_it else float("nan"),
        "marginal_error": float(err1),
        "device_peak_mb": float("nan"),
        "rss_base_mb": base,
    }


def child(args) -> None:
    if args.case == "numpy_scipy":
        res = run_numpy_case(args.size, args.warm_steps, args.out_p, args.time_cap)
    else:
        res = run_jax_case(args.size, args.case, args.warm_steps, args.out_p)
    res["rss_peak_mb"] = rss_peak_mb()
    print("RESULT " + json.dumps(res))


def plan(sizes, quick: bool, dense_max: int, numpy_max: int):
    cases = []
    for s in sizes:
        cases.append((s, "ours"))
        cases.append((s, "ours_plain"))
        # 32³ dense = 32768² doubles = 8.6 GB per N×N array (the step holds ~3): not on a
        # 23 GB CPU box, possible on an 80 GB GPU (--dense-max 32)
        if s <= dense_max:
            cases.append((s, "dense_jax"))
        if s <= numpy_max and not quick:
            cases.append((s, "numpy_scipy"))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[21, 32, 64])
    ap.add_argument("--out", type=str, default=None, help="write the results (JSON) here")
    ap.add_argument("--quick", action="store_true", help="21³ only, JAX cases only")
    ap.add_argument("--warm-steps", type=int, default=3)
    ap.add_argument("--time-cap", type=float, default=240.0,
                    help="wall-clock cap (s) of one NumPy/SciPy step")
    ap.add_argument("--dense-max", type=int, default=21,
                    help="largest s for the dense JAX baseline (b)")
    ap.add_argument("--numpy-max", type=int, default=21,
                    help="largest s for the NumPy/SciPy baseline (a); 0 skips it")
    ap.add_argument("--case", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out-p", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case is not None:
        child(args)
        return

    import jax
    import numpy as np

    sizes = [21] if args.quick else args.sizes
    warm = 2 if args.quick else args.warm_steps
    print(f"jax {jax.__version__}, devices: {jax.devices()}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.platform()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_jko_"))
    rows = []
    for size, case in plan(sizes, args.quick, args.dense_max, args.numpy_max):
        out_p = str(tmp / f"{case}_{size}.npy")
        cmd = [sys.executable, __file__, "--case", case, "--size", str(size), "--out-p", out_p,
               "--warm-steps", str(warm), "--time-cap", str(args.time_cap)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"{case} at {size}³ failed:\n{proc.stderr[-2000:]}")
            continue
        res = json.loads(line[0][7:])
        res.update(size=size, N=size**3, case=case)
        ours = tmp / f"ours_{size}.npy"
        res["l1_to_ours"] = (float(np.abs(np.load(out_p) - np.load(ours)).sum())
                             if ours.exists() else float("nan"))
        rows.append(res)
        print(f"{case:12s} N={size}³ compile {res['compile_s']:.2f}s cold {res['cold_s']:.3f}s "
              f"({res['cold_iters']} it) warm {res['warm_s']:.3f}s ({res['warm_iters']:.1f} it) "
              f"err {res['marginal_error']:.1e} RSS peak {res['rss_peak_mb']:.0f} MB "
              f"(+{res['rss_peak_mb'] - res['rss_base_mb']:.0f}) dev peak "
              f"{res['device_peak_mb']:.0f} MB  |p−p_ours|₁ {res['l1_to_ours']:.1e}", flush=True)
    for size in sizes:
        by = {r["case"]: r for r in rows if r["size"] == size}
        if "ours" not in by:
            continue
        for other in ("ours_plain", "dense_jax", "numpy_scipy"):
            if other in by:
                print(f"{size}³ speed-up vs {other}: cold "
                      f"{by[other]['cold_s'] / by['ours']['cold_s']:.1f}×, warm "
                      f"{by[other]['warm_s'] / by['ours']['warm_s']:.1f}×")
    if args.out:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "devices": [str(d) for d in jax.devices()], "cpus": os.cpu_count(),
                "platform": platform.platform(), "command": " ".join(sys.argv),
                "tau": TAU, "lam": LAM, "tol": TOL, "eps": "delta^2"}
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
