"""Cell-by-cell relative difference of two metrics.csv files.

Usage: python scripts/compare_metrics.py A/metrics.csv B/metrics.csv
"""

import csv
import sys


def main(path_a: str, path_b: str) -> None:
    a = list(csv.DictReader(open(path_a)))
    b = list(csv.DictReader(open(path_b)))
    if len(a) != len(b):
        sys.exit(f"different numbers of rows: {len(a)} vs {len(b)}")
    worst, where, cells = 0.0, None, 0
    for ra, rb in zip(a, b, strict=True):
        if ra["method"] != rb["method"]:
            sys.exit(f"rows differ in method: {ra['method']} vs {rb['method']}")
        for k, va in ra.items():
            vb = rb.get(k, "")
            if k == "method" or va == vb == "":
                continue
            if va == "" or vb == "":
                sys.exit(f"{ra['method']} t = {ra['t']} {k}: {va!r} vs {vb!r}")
            x, y = float(va), float(vb)
            cells += 1
            rel = abs(x - y) / max(abs(x), abs(y), 1e-300)
            if rel > worst:
                worst, where = rel, (ra["method"], ra["t"], k, va, vb)
    print(f"{cells} numeric cells, max relative difference {worst:.3g} at {where}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
