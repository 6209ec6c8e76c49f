"""Cell-by-cell relative difference of two metrics.csv files: `python scripts/compare_metrics.py A B`."""
import csv, math, sys
a = list(csv.DictReader(open(sys.argv[1]))); b = list(csv.DictReader(open(sys.argv[2])))
assert len(a) == len(b), (len(a), len(b))
worst, where, cells = 0.0, None, 0
for ra, rb in zip(a, b):
    assert ra["method"] == rb["method"]
    for k in ra:
        if k == "method":
            continue
        va, vb = ra[k], rb.get(k, "")
        if va == "" or vb == "":
            assert va == vb, (k, va, vb); continue
        x, y = float(va), float(vb); cells += 1
        rel = abs(x - y) / max(abs(x), abs(y), 1e-300)
        if rel > worst:
            worst, where = rel, (ra["method"], ra["t"], k, va, vb)
print(f"{cells} numeric cells, max relative difference {worst:.3g} at {where}")
