r"""Memory (and rough time) of a run's grid methods, estimated before any work.

A grid method's peak memory grows linearly in its number of grid points N (separable
kernels: O(N) per step) plus its cached features Φ (N × n_train floats); ``wfr_jko``'s
direction kernel is a dense N × N matrix. :data:`BYTES_PER_POINT` and :data:`BASE_BYTES`
are calibrated by ``tests/test_memory.py`` against the peak RSS of real JKO runs. A run
whose estimate exceeds the memory it may use (:func:`available_bytes`: a fraction of the
physical memory, or ``MFJKO_MAX_MEMORY_GB``) is refused before any work with the largest
grid that fits.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from mfjko import methods as _methods
from mfjko.config import ConfigError, RunConfig
from mfjko.runner.setup import dataset_for

__all__ = ["BYTES_PER_POINT", "BYTES_PER_POINT_SAMPLE", "BASE_BYTES", "MEMORY_ENV",
           "MEMORY_FRACTION", "GridCost",
           "grid_costs", "seconds_per_point_step", "available_bytes", "check_memory",
           "format_bytes"]

#: peak bytes per JKO grid point besides its data terms (measured on 21³-61³ grids with
#: n_train = 20 and 200: ≈ 1 KB + 32 B per training point; tests/test_memory.py)
BYTES_PER_POINT = 1024
#: peak bytes per JKO grid point and training point (Φ and its temporaries)
BYTES_PER_POINT_SAMPLE = 32
#: peak resident memory of a run without its grids (Python, JAX, XLA programs, GD)
BASE_BYTES = 700 * 2**20
#: seconds per grid point and JKO step on grids of up to 32 points per axis; longer axes
#: cost (n_max/32)² more per point (:func:`seconds_per_point_step`)
SECONDS_PER_POINT_STEP = 3e-6
#: environment variable: the memory (GB) a run may use, instead of MEMORY_FRACTION of RAM
MEMORY_ENV = "MFJKO_MAX_MEMORY_GB"
#: fraction of the physical memory a run may use
MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class GridCost:
    """A grid method's estimated peak memory and time.

    Attributes:
      method: the method's name.
      points: its number of grid points N.
      bytes: estimated peak bytes (without :data:`BASE_BYTES`).
      seconds: rough time of its steps on a 2-core CPU.
      per_point: bytes per grid point (linear part), for the largest grid that fits.
      dense: whether the memory grows like N² (``wfr_jko``'s dense kernel).
      shape: how the grid is sized in the config (for the message).
    """

    method: str
    points: int
    bytes: float
    seconds: float
    per_point: float
    dense: bool
    shape: str


def _n_train(cfg: RunConfig, cache: dict) -> int:
    key = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
    if key not in cache:
        try:
            cache[key] = int(dataset_for(cfg).X.shape[0])
        except Exception:  # noqa: BLE001 — data errors are reported by the run itself
            cache[key] = int(cfg.data.kwargs.get("n_train", 100))
    return cache[key]


def grid_costs(cfg: RunConfig, cache: dict | None = None) -> list[GridCost]:
    """The estimated cost of each enabled grid method of ``cfg`` (none: empty list).

    The grid is counted from the config, never built: a 1000³ grid costs nothing here.
    """
    cache = {} if cache is None else cache
    out = []
    steps = lambda mc: max(1, round(cfg.T / mc.tau))  # noqa: E731
    for name in cfg.methods.grid_methods():
        mc = getattr(cfg.methods, name)
        if _methods.get(name).kind != "grid":  # a grid of its own, a dense N × N kernel
            n = int(mc.grid_size())
            per = 8.0 * 4 * n  # C and K (N × N float64) and two temporaries
            out.append(GridCost(name, n, per * n, n * n * steps(mc) * 1e-9, per, True,
                                mc.grid_shape()))
            continue
        g = mc.grid
        if g.kind == "sphere_line":
            n = g.n_dirs * g.n_beta
            shape = f"n_dirs × n_beta = {g.n_dirs} × {g.n_beta}"
        else:
            n = math.prod(g.sizes) * (2 if g.kind in ("signed", "pm") else 1)
            shape = "sizes = [" + ", ".join(map(str, g.sizes)) + "]"
        n *= len(g.scales) if g.scales else 1
        per = BYTES_PER_POINT + BYTES_PER_POINT_SAMPLE * _n_train(cfg, cache)
        extra = 16.0 * g.n_dirs**2 if g.kind == "sphere_line" else 0.0
        longest = max(g.n_dirs, g.n_beta) if g.kind == "sphere_line" else max(g.sizes)
        out.append(GridCost(name, n, n * per + extra,
                            n * steps(mc) * seconds_per_point_step(longest), per, False, shape))
    return out


def seconds_per_point_step(longest_axis: int) -> float:
    """Rough seconds per grid point and JKO step on a 2-core CPU.

    For a product grid whose longest axis has ``longest_axis`` points.
    Each kernel application contracts every axis (n per point), the underflow-safe
    log-sum-exp of fine grids at ε ≈ δ² takes n/GROUP logs per point, and the Sinkhorn
    loop needs more iterations as δ shrinks: (n/32)² fits the warm steps measured on the
    default problem along τ = 32/(n − 1), ε = δ² (49³: 0.9 s, 65³: 2.6–3.0 s, 97³: 22–27 s,
    129³: 117 s; ``benchmarks/README.md``, ``bench_lse.py``) within 1.6×, where a
    constant per point was 30× short at 129³.
    """
    return SECONDS_PER_POINT_STEP * max(1.0, (longest_axis / 32) ** 2)


def available_bytes() -> float:
    """The memory a run may use: ``MFJKO_MAX_MEMORY_GB``, else a fraction of physical RAM."""
    value = os.environ.get(MEMORY_ENV)
    if value:
        try:
            gb = float(value)
        except ValueError:
            raise ConfigError(f"{MEMORY_ENV}={value!r} is not a number of GB") from None
        if not gb > 0:
            raise ConfigError(f"{MEMORY_ENV}={value!r} must be a positive number of GB")
        return gb * 2**30
    try:
        return MEMORY_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # unknown: no limit
        return math.inf


def format_bytes(n: float) -> str:
    """``n`` bytes as '1.2 GB' / '350 MB'."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _fits(cost: GridCost, budget: float) -> str:
    """The largest grid of ``cost``'s kind that fits ``budget`` bytes, in words."""
    if cost.dense:
        n = int(math.sqrt(max(budget, 0) / cost.per_point * cost.points))
        return f"about {n // 2} directions (n_dirs)"
    n = int(max(budget, 0) / cost.per_point)
    if cost.shape.startswith("sizes"):
        axes = cost.shape.count(",") + 1
        side = int(n ** (1 / axes))
        return f"about {n:,} points (e.g. sizes = [{', '.join([str(side)] * axes)}])"
    return f"about {n:,} points"


def check_memory(configs: list[RunConfig], copies: int = 1, remote: bool = False,
                 limit: float | None = None) -> str:
    """The one line of estimated memory and time of the grid methods; refuse too much.

    Args:
      configs: the run's config, or every point of a sweep.
      copies: points computed at once on this machine (local sweep workers).
      remote: the work runs elsewhere (a Dask scheduler): report, never refuse.
      limit: the bytes allowed (None: :func:`available_bytes`).

    Returns:
      The line to print ('' without grid methods).

    Raises:
      ConfigError: the largest estimate exceeds the allowed memory (exit status 2).
    """
    cache: dict = {}
    worst: tuple[float, RunConfig, list[GridCost]] | None = None
    seconds = 0.0
    for cfg in configs:
        costs = grid_costs(cfg, cache)
        if not costs:
            continue
        seconds += sum(c.seconds for c in costs)
        total = BASE_BYTES + sum(c.bytes for c in costs)
        if worst is None or total > worst[0]:
            worst = (total, cfg, costs)
    if worst is None:
        return ""
    total, cfg, costs = worst
    peak = BASE_BYTES + (total - BASE_BYTES) * copies
    grids = ", ".join(f"{c.method} {c.points:,} points" for c in costs)
    many = f" per point × {copies} at once" if copies > 1 else ""
    t = seconds / max(copies, 1)
    when = ("a second" if t < 1 else f"{t:.0f} s" if t < 120 else f"{t / 60:.0f} min"
            if t < 7200 else f"{t / 3600:.1f} h")
    line = (f"estimated memory {format_bytes(peak)} ({grids}{many}); grid steps take about "
            f"{when} on a 2-core CPU")
    if remote:
        return line + " (on the scheduler's workers)"
    allowed = available_bytes() if limit is None else limit
    if peak > allowed:
        big = max(costs, key=lambda c: c.bytes)
        budget = (allowed - BASE_BYTES) / copies - (total - BASE_BYTES - big.bytes)
        raise ConfigError(
            f"the grid needs an estimated {format_bytes(peak)} of memory ({grids}{many}), "
            f"more than the {format_bytes(allowed)} allowed (set {MEMORY_ENV} to change it): "
            f"methods.{big.method} ({big.shape}) fits {_fits(big, budget)}")
    return line
