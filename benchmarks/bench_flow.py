"""The default run's gradient flow under solver options: time, steps and F(μ_t).

    python benchmarks/bench_flow.py [--config configs/default.yaml] [--T 10] [--out FILE]
        [--cases solver:rtol:atol ...]

For each option set (solver, rtol, atol) the flow runs the config's particles over
[0, T] in segments of record_every (as the runner does), after one untimed call that
compiles it. Reports wall and CPU seconds, accepted/rejected steps, and the largest
relative change of F(μ_t) at the records and of the particles (max |Δθ|) against a
reference (the first case) and against the shipped setting (the second).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from mfjko.config import load_config
from mfjko.methods.gd import particle_velocity
from mfjko.runner import prepare

SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "bosh3": diffrax.Bosh3,
           "dopri8": diffrax.Dopri8}


@partial(jax.jit, static_argnames=("param", "solver", "rtol", "atol", "max_steps"))
def _segment(param, theta, X, y, lam, duration, solver, rtol, atol, max_steps):
    term = diffrax.ODETerm(lambda t, th, args: particle_velocity(param, th, X, y, lam))
    sol = diffrax.diffeqsolve(term, SOLVERS[solver](), t0=0.0, t1=duration, dt0=None,
                              y0=theta, max_steps=max_steps, throw=False,
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                              saveat=diffrax.SaveAt(t1=True))
    return (param.project(sol.ys[0]), sol.stats["num_accepted_steps"],
            sol.stats["num_rejected_steps"], sol.result == diffrax.RESULTS.successful)


def run(setup, solver, rtol, atol, T, max_steps=100_000):
    """Records θ_t and F(μ_t) at t = 0, record_every, ..., T; times the solve."""
    p = setup.problem
    dt = setup.cfg.record_every
    n = int(round(T / dt))
    args = (p.param, jnp.asarray(setup.theta0), p.X, p.y, p.lam, jnp.float64(dt), solver,
            rtol, atol, max_steps)
    jax.block_until_ready(_segment(*args))  # compile
    theta, frames, acc, rej = jnp.asarray(setup.theta0), [np.asarray(setup.theta0)], 0, 0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        theta, a, r, ok = _segment(p.param, theta, *args[2:6], solver, rtol, atol, max_steps)
        acc, rej = acc + int(a), rej + int(r)
        if not bool(ok):
            raise RuntimeError(f"{solver} rtol={rtol} failed")
        frames.append(np.asarray(theta))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    m = frames[0].shape[0]
    F = [float(p.objective(jnp.asarray(f), jnp.full(m, 1.0 / m))) for f in frames]
    return {"solver": solver, "rtol": rtol, "atol": atol, "wall": wall, "cpu": cpu,
            "accepted": acc, "rejected": rej, "F": F, "theta": frames}


def main() -> None:
    """Run the option grid and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--T", type=float, default=10.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", nargs="+", default=[
        "tsit5:1e-10:1e-12", "tsit5:1e-8:1e-10", "tsit5:1e-7:1e-9", "tsit5:1e-6:1e-8",
        "tsit5:1e-5:1e-7", "dopri5:1e-6:1e-8", "bosh3:1e-6:1e-8"],
        help="solver:rtol:atol; the first is the reference, the second the shipped setting")
    a = ap.parse_args()
    setup = prepare(load_config(a.config))
    cases = [(c.split(":")[0], float(c.split(":")[1]), float(c.split(":")[2]))
             for c in a.cases]
    print(f"load average {os.getloadavg()}")
    res = [run(setup, *c, T=a.T) for c in cases]
    ref, shipped = res[0], res[1]
    print(f"{'solver':7s} {'rtol':>7s} {'atol':>7s} {'wall s':>7s} {'cpu s':>7s} "
          f"{'accepted':>8s} {'rejected':>8s} {'dF/F ref':>9s} {'dF/F ship':>9s} "
          f"{'dθ ref':>9s} {'dθ ship':>9s}")
    rows = []
    for r in res:
        def rel(o, r=r):
            return max(abs(f - g) / abs(g) for f, g in zip(r["F"], o["F"], strict=True))

        def dth(o, r=r):
            return max(float(np.abs(f - g).max())
                       for f, g in zip(r["theta"], o["theta"], strict=True))
        row = {k: r[k] for k in ("solver", "rtol", "atol", "wall", "cpu", "accepted",
                                 "rejected")}
        row.update(dF_ref=rel(ref), dF_shipped=rel(shipped), dtheta_ref=dth(ref),
                   dtheta_shipped=dth(shipped), F=r["F"])
        rows.append(row)
        print(f"{r['solver']:7s} {r['rtol']:7.0e} {r['atol']:7.0e} {r['wall']:7.2f} "
              f"{r['cpu']:7.2f} {r['accepted']:8d} {r['rejected']:8d} {row['dF_ref']:9.2e} "
              f"{row['dF_shipped']:9.2e} {row['dtheta_ref']:9.2e} {row['dtheta_shipped']:9.2e}")
    print(f"load average {os.getloadavg()}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
