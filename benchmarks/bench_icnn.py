"""Benchmark: one ICNN JKO step vs the samples m and dim Θ, next to a GD step on them.

Problems (``neuron``, λ = 0.01, samples of GaussianLaw(0.5), τ = 0.1):
d_Θ = 3: ``regression_1d(n_train=20)``; d_Θ = 18 / 65: ``digits`` with 16 / 63 PCA
components (n_train = 200). The ICNN is the default (32, 32), β = 4. A step is timed at a
fixed budget of ``--evals`` loss-and-gradient evaluations (min_iter = max_iter), warm
(compiled; mean of ``--repeats`` calls after one warm-up call whose time, minus a timed
call, is reported as compile time), so that cost per evaluation is comparable across
cases; real steps use 50–1000 evaluations (the ftol/tol stopping rule; reported by the
scripts). Entropy: none (D = 0) for every case; exact log-det (L-BFGS) for d_Θ ≤ 18;
stochastic (Hutchinson + Lanczos with k = min(16, d_Θ), Adam) for every d_Θ, at m = 1024.
GD: the ``gd`` stepper (``GradientDescent.advance``, one compiled loop) for 100 steps of
h = 0.01 on the same samples, per step. Both use the same ``MeanFieldProblem``.
Each case runs in its own subprocess (peak memory of that case alone).

Usage: python benchmarks/bench_icnn.py [--ms 256 1024 4096] [--dims 3 18 65] [--evals 50]
       [--repeats 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def problem(dim: int):
    from mfjko import data

    if dim == 3:
        return data.regression_1d(n_train=20, seed=0)
    return data.digits(n_components=dim - 2, task="regression", n_train=200, n_test=100,
                       seed=0)


def run_case(case: dict) -> dict:
    import warnings

    import jax

    import mfjko  # noqa: F401
    from mfjko import initial
    from mfjko.icnn import ICNNOptions, icnn_jko_step, init_potential
    from mfjko.methods.gd import GradientDescent
    from mfjko.problem import MeanFieldProblem

    ds = problem(case["dim"])
    pb = MeanFieldProblem.create("neuron", ds.X, ds.y, 0.01)
    m = case["m"]
    th = initial.sample_particles(initial.GaussianLaw(0.5), pb.param, jax.random.PRNGKey(0), m,
                                  ds.d)
    out = dict(case, device=str(jax.devices()[0].platform))
    if case["kind"] == "gd":
        n = 100
        gd = GradientDescent(h=0.01)
        state0 = gd.init(pb, th)

        def go():
            state, _ = gd.advance(state0, n)
            return state.theta.block_until_ready()

        t = time.perf_counter()
        go()
        first = time.perf_counter() - t
        times = []
        for _ in range(case["repeats"]):
            t = time.perf_counter()
            go()
            times.append(time.perf_counter() - t)
        out.update(step_s=min(times) / n, compile_s=first - min(times))
    else:
        ev = case["evals"]
        kw = dict(max_iter=ev, min_iter=ev, tol=1e-300, ftol=1e-300)
        D = 0.0
        if case["kind"] == "exact":
            kw.update(entropy="exact")
            D = 0.005
        elif case["kind"] == "stochastic":
            kw.update(entropy="stochastic", optimizer="adam",
                      lanczos_steps=min(16, case["dim"]))
            D = 0.005
        opts = ICNNOptions(**kw)
        psi0 = init_potential(jax.random.PRNGKey(1), th.shape[1], opts)

        def go():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                T, _, _, diag = icnn_jko_step(pb, psi0, th, 0.1, D, jax.random.PRNGKey(2),
                                              opts, warn=False)
            T.block_until_ready()
            return diag

        t = time.perf_counter()
        go()
        first = time.perf_counter() - t
        times = []
        for _ in range(case["repeats"]):
            t = time.perf_counter()
            diag = go()
            times.append(time.perf_counter() - t)
        out.update(step_s=min(times), per_eval_ms=1e3 * min(times) / int(diag.iterations),
                   compile_s=first - min(times), evaluations=int(diag.iterations))
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ms", type=int, nargs="*", default=[256, 1024, 4096])
    ap.add_argument("--dims", type=int, nargs="*", default=[3, 18, 65])
    ap.add_argument("--evals", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.case is not None:
        print(json.dumps(run_case(json.loads(a.case))))
        return
    cases = []
    for dim in a.dims:
        for m in a.ms:
            cases.append(dict(kind="gd", dim=dim, m=m))
            cases.append(dict(kind="none", dim=dim, m=m))
        if dim <= 18:
            cases.append(dict(kind="exact", dim=dim, m=1024))
        cases.append(dict(kind="stochastic", dim=dim, m=1024))
    rows = []
    print(f"{'kind':<11} {'d_Θ':>4} {'m':>5} {'step (s)':>10} {'ms/eval':>8} {'compile':>8} "
          f"{'vs GD step':>10} {'RSS MB':>7}")
    gd_time = {}
    for c in cases:
        c.update(evals=a.evals, repeats=a.repeats)
        env = dict(os.environ)
        res = subprocess.run([sys.executable, __file__, "--case", json.dumps(c)],
                             capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(f"{c['kind']:<11} {c['dim']:>4} {c['m']:>5} FAILED: "
                  f"{res.stderr.strip().splitlines()[-1][:120]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(r)
        if r["kind"] == "gd":
            gd_time[(r["dim"], r["m"])] = r["step_s"]
        ratio = r["step_s"] / gd_time.get((r["dim"], r["m"]), float("nan"))
        pe = r.get("per_eval_ms", float("nan"))
        print(f"{r['kind']:<11} {r['dim']:>4} {r['m']:>5} {r['step_s']:10.4g} {pe:8.3g} "
              f"{r['compile_s']:8.1f} {ratio:10.3g} {r['rss_peak_mb']:7.0f}", flush=True)
        meta = dict(python=platform.python_version(), machine=platform.machine(),
                    cpus=os.cpu_count(), load=os.getloadavg(), evals=a.evals)
        if a.out:  # after every case: a run cut short keeps what it measured
            with open(a.out, "w") as f:
                json.dump(dict(meta=meta, rows=rows), f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
