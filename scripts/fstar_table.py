"""F* (the global optimum of the mean-field objective, mfjko.optimum) for every shipped
config, by each solver that applies:

- circle: the circle-grid Lasso with a certified duality gap (d = 2 only), 10⁴ directions
  plus the data's kink directions;
- exact: the Pilanci–Ergen convex program over all activation patterns (when the chamber
  count is at most --max-patterns);
- reference: what `mfjko run` reports (``reference_value``: exact when it applies, else
  circle (d = 2) or the refined sphere-grid solver (an upper bound) for d > 2).

    python scripts/fstar_table.py [--max-patterns 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mfjko  # noqa: F401  (float64)
from mfjko import optimum
from mfjko.config import load_config
from mfjko.runner import prepare

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-patterns", type=int, default=2000)
    args = ap.parse_args()
    print("| config | n × d | λ | chambers ≤ | circle (gap) | exact | reference (method, s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        ds = prepare(cfg).dataset
        lam = cfg.model.lam
        X, y = ds.X, ds.y
        bound = optimum.chamber_count_bound(X)
        circle = exact = "—"
        if X.shape[1] == 2 and lam > 0:
            r = optimum.optimum_circle(X, y, lam, n_dirs=10_000)
            circle = f"{r.value:.10f} ({r.duality_gap:.1e})"
        if bound <= args.max_patterns:
            exact = f"{optimum.optimum_exact(X, y, lam, max_patterns=args.max_patterns).value:.10f}"
        tic = time.perf_counter()
        ref = optimum.reference_value(ds, lam)
        sec = time.perf_counter() - tic
        print(f"| {path.stem} | {X.shape[0]} × {X.shape[1]} | {lam:g} | {bound} | {circle} | "
              f"{exact} | {ref.value:.10f} ({ref.method}, {sec:.1f} s) |")


if __name__ == "__main__":
    main()
