"""Benchmark: warm step times of one source tree, to compare two versions of the solvers.

Run it with ``PYTHONPATH=<a checkout's src>`` for each version, alternating on the same
idle machine (a refactor's before/after cannot share one process)::

    for i in 1 2; do for src in ../old/src src; do
      PYTHONPATH=$src python benchmarks/bench_step_ab.py; done; done

Prints one JSON line: for each case, (median warm step in s over steps 2..6, Sinkhorn
iterations of the last step). Cases: the balanced JKO on bench_jko's 32³ problem
(standard and debiased) and the WFR step on bench_wfr's S¹ problem with N = 4096.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from bench_jko import LAM, TAU, TOL, problem  # noqa: E402

from mfjko import data  # noqa: E402
from mfjko.jko import JKOSolverOptions, jko_step  # noqa: E402
from mfjko.wfr import (  # noqa: E402
    WFRSolverOptions,
    circle_directions,
    direction_features,
    wfr_jko_step,
    wfr_kernel,
)

STEPS = 6


def _timed(step, x, state):
    """STEPS warm steps of ``step(x, state) -> (x, state, diag)``: (median of steps 2.., diag)."""
    times = []
    for _ in range(STEPS):
        t = time.perf_counter()
        x, state, diag = step(x, state)
        jax.block_until_ready(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:])), diag


def main() -> dict:
    out = {}
    geom, q0, phi, y, v, eps = problem(32)
    for name, opts in [("jko32", JKOSolverOptions(tol=TOL)),
                       ("jko32_debias", JKOSolverOptions(tol=TOL, debias=True))]:

        def jstep(q, state, opts=opts):
            return jko_step(geom, q, phi, y, v, LAM, TAU, eps, state, opts)

        p, state, _ = jstep(q0, None)  # compile + one step
        dt, diag = _timed(jstep, p, state)
        out[name] = (dt, int(diag.sinkhorn_iterations))
    ds = data.regression_1d(n_train=20, seed=0)
    X, yy = np.asarray(ds.X), np.asarray(ds.y)
    N, e = 4096, 4.5e-4
    S = circle_directions(N)
    kernel, feats = wfr_kernel(S, e, 2.0), direction_features(S, X)
    opts = WFRSolverOptions()

    def wstep(q, state):
        return wfr_jko_step(kernel, q, feats, yy, LAM, TAU, state, opts, rho_old=2.0 - e)

    nu, state, _ = wstep(np.full((2, N), 0.125 / N), None)
    dt, diag = _timed(wstep, nu, state)
    out["wfr4096"] = (dt, int(diag.sinkhorn_iterations))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
