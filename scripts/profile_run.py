"""Profile one `mfjko run` by phase: wall and CPU seconds, and XLA compile time, per method.

    python scripts/profile_run.py configs/default.yaml --out /tmp/prof [--set key=value ...]

Phases are timed exclusively (a phase's time excludes the phases nested in it): setup
(data, grid, F*), dynamics per method (each stepper's ``advance``), metrics per method
(losses and frames, the grid Sinkhorn gap, the particle Sinkhorn gaps), storage, and the
report (each figure group). Compile time comes from jax.monitoring events and is charged
to the innermost phase. Prints a table and writes it as JSON next to the run
(profile.json).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import jax

from mfjko import io, methods, metrics, report
from mfjko.config import load_config

_recorder = importlib.import_module("mfjko.runner.recorder")
# the module, not the function mfjko.runner.run it exports
_run = importlib.import_module("mfjko.runner.run")

WALL: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)
COMPILE: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
STACK: list[list] = []  # [name, wall start, cpu start, nested wall, nested cpu]
CONTEXT = {"method": "-"}
_COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                   "jaxpr_trace_duration", "jaxpr_to_mlir_module_duration")


def _on_event(event: str, duration: float, **_) -> None:
    if any(event.endswith(e) for e in _COMPILE_EVENTS):
        COMPILE[STACK[-1][0] if STACK else "other"] += duration


def timed(name_fn):
    """Decorator: charge the wall and CPU time of a call, minus nested phases, to a phase."""
    def deco(fn):
        def wrapper(*args, **kwargs):
            name = name_fn(args, kwargs) if callable(name_fn) else name_fn
            STACK.append([name, time.perf_counter(), time.process_time(), 0.0, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                nm, w0, c0, nw, nc = STACK.pop()
                w, c = time.perf_counter() - w0, time.process_time() - c0
                WALL[nm] += w - nw
                CPU[nm] += c - nc
                CALLS[nm] += 1
                if STACK:
                    STACK[-1][3] += w
                    STACK[-1][4] += c
        return wrapper
    return deco


def install() -> None:
    """Wrap the phases' entry points (module attributes looked up at call time)."""
    jax.monitoring.register_event_duration_secs_listener(_on_event)
    _run.prepare = timed("setup (data, grid, F*)")(_run.prepare)
    seen = set()
    for info in methods.REGISTRY.values():
        cls = info.stepper
        if cls in seen or "advance" not in vars(cls):
            continue
        seen.add(cls)
        cls.advance = timed(lambda a, k: f"dynamics {a[0].name}")(vars(cls)["advance"])
    rec = _recorder.Recorder.record

    def record(self, name, *args, **kwargs):
        CONTEXT["method"] = name
        return timed(f"metrics {name}: losses, frames")(rec)(self, name, *args, **kwargs)

    _recorder.Recorder.record = record
    metrics.grid_sinkhorn_divergence = timed(
        lambda a, k: f"metrics {CONTEXT['method']}: grid Sinkhorn gap")(
        metrics.grid_sinkhorn_divergence)
    metrics.sinkhorn_divergence = timed(
        lambda a, k: f"metrics {CONTEXT['method']}: particle Sinkhorn gap")(
        metrics.sinkhorn_divergence)
    for m in ("save_checkpoint", "write_metrics", "write_timings"):
        if hasattr(io.RunStore, m):
            setattr(io.RunStore, m, timed("storage (checkpoints, csv)")(getattr(io.RunStore, m)))
    for f in ("_loss_figures", "_gap_figure", "_predictor_figure", "_measure_figures",
              "_data_space_figure", "_diagnostics_figure"):
        if hasattr(report, f):
            setattr(report, f, timed(f"report {f.strip('_')}")(getattr(report, f)))
    report.render = timed("report html, gif")(report.render)


def main() -> None:
    """Run the config once under the profiler and print the phase table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args()
    install()
    cfg = load_config(a.config, a.overrides)
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    timed("total")(_run.run)(cfg, a.out, overwrite=True, progress=False)
    total_w, total_c = time.perf_counter() - w0, time.process_time() - c0
    rows = sorted(WALL, key=lambda k: -WALL[k])
    print(f"{'phase':55s} {'wall s':>8s} {'cpu s':>8s} {'compile s':>9s} {'calls':>6s}")
    for k in rows:
        print(f"{k:55s} {WALL[k]:8.2f} {CPU[k]:8.2f} {COMPILE.get(k, 0.0):9.2f} {CALLS[k]:6d}")
    print(f"{'TOTAL (process)':55s} {total_w:8.2f} {total_c:8.2f} "
          f"{sum(COMPILE.values()):9.2f}")
    print(f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}")
    doc = {"total_wall": total_w, "total_cpu": total_c, "load_start": load0,
           "load_end": os.getloadavg()[0],
           "phases": {k: {"wall": WALL[k], "cpu": CPU[k], "compile": COMPILE.get(k, 0.0),
                          "calls": CALLS[k]} for k in rows}}
    (Path(a.out) / "profile.json").write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
