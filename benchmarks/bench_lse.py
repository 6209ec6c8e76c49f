"""The separable log-sum-exp where the plain kernel mode underflows: grouped vs exact.

    python benchmarks/bench_lse.py [--sizes 65 97 129] [--step 97]

On a fine grid at ε = δ², a row far (in units of √ε) from where its line's u is largest
underflows in the plain kernel mode (``mfjko.geometry.product._axis_lse``'s first try).
The axis was then recomputed by the exact broadcasted log-sum-exp (n exps per point); it
is now recomputed with one stabilizer per group of ``GROUP`` inputs (one batched matmul
and n/GROUP logs per point), and exactly only if that may have lost a term.

Cases, side by side:
- ``axis``: one application along axis 0 of an n³ tensor u = −(w₁/0.1)² − (w₂/0.5)²
  (a peaked log-density, as the JKO's potentials are), ``grouped`` against ``exact`` (the
  old fallback), with their largest relative difference;
- ``--step n``: warm entropic JKO steps on the default problem's n³ grid along the c = 0.91
  path (τ = 32/(n − 1), ε = δ²), the current ``_axis_lse`` against the old one (plain, then
  exact), each case in a process of its own, and the largest difference of the two
  steps' weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import mfjko  # noqa: F401  (float64)
from mfjko import grids as G
from mfjko.geometry import product as PR


def _timed(f, *args, repeat: int = 3) -> float:
    jax.block_until_ready(f(*args))
    tic = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(f(*args))
    return (time.perf_counter() - tic) / repeat


def bench_axis(n: int) -> dict:
    g = G.cartesian_grid([(-3.5, 3.5)] * 3, [n] * 3)
    eps = g.spacing ** 2
    x = np.asarray(g.axes[0])
    U = jnp.asarray(np.broadcast_to(-(x[:, None, None] / 0.1) ** 2
                                    - (x[None, :, None] / 0.5) ** 2, g.shape).copy())
    cost = g.factors[0].cost / eps
    kernel = jnp.exp(-cost)
    grouped = jax.jit(lambda U: PR._axis_lse_grouped(U, kernel, cost, 0))
    exact = jax.jit(lambda U: PR._axis_lse_exact(U, cost, 0))
    out, needed = grouped(U)
    ref = exact(U)
    return {"n": n, "points": n ** 3, "exact_s": _timed(exact, U),
            "grouped_s": _timed(grouped, U), "exact_needed": bool(needed),
            "max_rel_diff": float(jnp.max(jnp.abs(out - ref) / jnp.abs(ref)))}


def _old_axis_lse(U, kernel, cost_over_eps, axis):
    """The fallback before the grouped mode: plain kernel mode, else exact."""
    m = jnp.max(U, axis=axis, keepdims=True)
    finite_line = jnp.isfinite(m)
    m_safe = jnp.where(finite_line, m, 0.0)
    W = jnp.moveaxis(jnp.tensordot(kernel, jnp.exp(U - m_safe), axes=([1], [axis])), 0, axis)
    bad = ((W < PR.UNDERFLOW) | ~jnp.isfinite(W)) & finite_line
    return jax.lax.cond(jnp.any(bad), lambda: PR._axis_lse_exact(U, cost_over_eps, axis),
                        lambda: jnp.log(W) + m_safe)


def bench_step(n: int, case: str, steps: int = 2) -> dict:
    """Warm JKO steps with ``case`` ("current" or "old") as the axis log-sum-exp.

    Run in a process of its own per case: the jitted programs keep the code they traced.
    """
    from mfjko import methods
    from mfjko.config import load_config
    from mfjko.runner.setup import prepare

    if case == "old":
        PR._axis_lse = _old_axis_lse
    tau = 32 / (n - 1)
    cfg = load_config("configs/default.yaml", [
        f"methods.jko.grid.sizes=[{n},{n},{n}]", f"methods.jko.tau={tau}",
        f"methods.jko.eps={(7 / (n - 1)) ** 2}", "methods.langevin=null", "record_every=2.0"])
    setup = prepare(cfg)
    info = methods.get("jko")
    stepper = info.build(cfg.methods.jko, setup)
    state = stepper.init(setup.problem_for(info.kind), setup.initial_of("jko"))
    state, _ = stepper.advance(state, 1)  # compile and the first step
    tic = time.perf_counter()
    state, _ = stepper.advance(state, steps)
    seconds = (time.perf_counter() - tic) / steps
    return {"n": n, "tau": tau, "s_per_step": seconds,
            "weights": np.asarray(stepper.measure(state)[1]).tolist()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[65, 97, 129])
    ap.add_argument("--step", type=int, default=None, help="grid n of the JKO step case")
    ap.add_argument("--step-case", choices=["current", "old"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step_case:  # one case of --step, in its own process
        print(json.dumps(bench_step(args.step, args.step_case)))
        raise SystemExit(0)
    print(f"devices: {jax.devices()}, GROUP = {PR.GROUP}")
    for n in args.sizes:
        r = bench_axis(n)
        print(f"axis  n = {n:4d} ({r['points']:,} points): exact {r['exact_s']:.3f} s, "
              f"grouped {r['grouped_s']:.3f} s, ratio {r['exact_s'] / r['grouped_s']:.1f}×, "
              f"exact needed: {r['exact_needed']}, max rel diff {r['max_rel_diff']:.1e}")
    if args.step:
        runs = {}
        for case in ("current", "old"):
            res = subprocess.run([sys.executable, __file__, "--step", str(args.step),
                                  "--step-case", case], capture_output=True, text=True,
                                 check=True)
            runs[case] = json.loads(res.stdout.strip().splitlines()[-1])
        old, cur = runs["old"], runs["current"]
        diff = np.max(np.abs(np.asarray(old["weights"]) - np.asarray(cur["weights"])))
        print(f"step  n = {args.step} ({args.step ** 3:,} points, τ = {cur['tau']:.3f}): old "
              f"{old['s_per_step']:.1f} s/step, current {cur['s_per_step']:.1f} s/step, "
              f"ratio {old['s_per_step'] / cur['s_per_step']:.2f}×, max |Δw| {diff:.1e}")
