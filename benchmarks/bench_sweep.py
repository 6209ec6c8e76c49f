"""Sweep throughput: points per minute of a small JKO sweep.

(1) On one worker (this process): the same points run one by one (each point a full run of
GD, matched Langevin and JKO, as `mfjko run` would do it) vs as one group (set-up and GD
shared), its JKO runs one after the other (the CPU default) or vmapped over ε in one
compiled program. All after a warm-up, so compilation is not counted. (2) Across workers:
`mfjko sweep` with 1 and with 2 local Dask worker processes on a sweep of several groups,
wall time including the cluster's start; a first sweep fills the persistent XLA cache (in a
temporary folder) that both then read. Usage: python benchmarks/bench_sweep.py [--points 6]
[--groups 6] [--eps 4] [--T 8] (benchmarks/README.md: --groups 12 --T 16)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from mfjko.sweep import expand, load_sweep, run_sweep
from mfjko.sweep.execute import run_group
from mfjko.sweep.run import plan

BASE = {
    "data": {"name": "regression_1d", "kwargs": {"n_train": 20, "n_test": 100, "seed": 0}},
    "model": {"parametrization": "neuron", "lam": 0.01},
    "init": {"law": "gaussian", "scale": 0.5, "m": 500},
    "methods": {"gd": {"h": 0.01}, "langevin": {"h": 0.01, "match_jko": True},
                "jko": {"tau": 0.1, "eps": 0.02,
                        "grid": {"kind": "cartesian", "ranges": [[-3.5, 3.5]] * 3,
                                 "sizes": [17, 17, 17]}}},
    "T": 2.0, "record_every": 0.5,
    "metrics": {"sinkhorn_eps": 0.1, "max_support": 200, "particles_saved": 20,
                "measure_gap": "none"},
}


def _spec(folder: Path, n_eps: int, seeds=(0,), T: float = 2.0) -> Path:
    """Groups: one per seed (its own data and particles), each of n_eps values of ε/δ²."""
    eps = [round(0.1 * 1.6**k, 4) for k in range(n_eps)]
    spec = {"name": "bench", "base": {**BASE, "T": T},
            "product": {"seed": list(seeds), "jko.courant": [0.25], "jko.eps_over_delta2": eps}}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def one_worker(folder: Path, n_points: int) -> dict:
    spec = load_sweep(_spec(folder, n_points))
    (group,), _ = plan(spec, expand(spec), batch=True)
    configs, ids = [d for _, d in group], [p.id for p, _ in group]
    for vmap in (False, True):  # warm-up: compile the programs of this size
        run_group(configs, ids, vmap=vmap)

    def timed(calls) -> float:
        tic = time.perf_counter()
        for args, vmap in calls:
            out = run_group(*args, vmap=vmap)
            assert all(o["error"] is None for o in out), out[0]["error"]
        return time.perf_counter() - tic

    alone = timed([(([c], [i]), False) for c, i in zip(configs, ids, strict=True)])
    grouped = timed([((configs, ids), False)])
    vmapped = timed([((configs, ids), True)])
    n = len(ids)
    return {"points": n, "one_by_one_s": alone, "grouped_s": grouped, "vmapped_s": vmapped,
            "one_by_one_points_per_min": 60 * n / alone,
            "grouped_points_per_min": 60 * n / grouped,
            "vmapped_points_per_min": 60 * n / vmapped,
            "ratio_grouped": alone / grouped, "ratio_vmapped": alone / vmapped}


def workers(folder: Path, n_groups: int, n_eps: int, T: float = 8.0) -> dict:
    path = _spec(folder, n_eps, range(n_groups), T)
    os.environ["MFJKO_XLA_CACHE"] = str(folder / "xla")  # the workers inherit it
    run_sweep(path, folder / "warm", workers=2, progress=False)  # fills the cache
    out = {}
    for w in (1, 2):
        target = folder / f"w{w}"
        shutil.rmtree(target, ignore_errors=True)
        tic = time.perf_counter()
        run_sweep(path, target, workers=w, progress=False)
        out[w] = time.perf_counter() - tic
    n = n_groups * n_eps
    return {"points": n, "seconds_1": out[1], "seconds_2": out[2],
            "points_per_min_1": 60 * n / out[1], "points_per_min_2": 60 * n / out[2],
            "ratio": out[1] / out[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=6, help="points of the one-worker group")
    ap.add_argument("--groups", type=int, default=6, help="groups of the 1-vs-2-worker sweep")
    ap.add_argument("--eps", type=int, default=4, help="ε values per group there")
    ap.add_argument("--T", type=float, default=8.0, help="horizon of the 1-vs-2-worker sweep")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = {"one_worker": one_worker(Path(tmp), args.points),
               "workers": workers(Path(tmp), args.groups, args.eps, args.T)}
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
