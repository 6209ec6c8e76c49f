"""Shared fixtures. Tests mirror the package (tests/geometry ↔ mfjko.geometry, ...);
tests/support.py holds plain helpers (importable as ``support``)."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402
from support import tiny_raw  # noqa: E402

# not the user's XLA cache (~/.cache/mfjko/xla): the session's own, below;
# tests/runner/test_cli.py checks the cache switch itself
os.environ.setdefault("MFJKO_XLA_CACHE", "0")
_SESSION_CACHE: list[str] = []


def _session_compile_cache() -> None:
    """One persistent XLA cache per test session, in a fresh temporary folder.

    Compilation dominates the suite's time (jax.monitoring, whole suite with optimized
    programs: 376 s of XLA backend compilation in 622 s, 2,657 programs). Many tests compile
    the same program again: new closures or pytrees of equal shapes miss JIT's in-memory
    cache, and every CLI subprocess and Dask worker starts empty. Programs depend on
    shapes and code only, never on data, so a cache cannot change a result; it starts
    empty, so every program is still compiled once per session. Subprocesses and workers
    inherit it through ``JAX_COMPILATION_CACHE_DIR`` (which also turns the CLI's own
    cache off, :func:`mfjko.runner.compile_cache.enable_compile_cache`). A user's
    ``JAX_COMPILATION_CACHE_DIR`` is left as it is.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="mfjko-tests-xla-")
    _SESSION_CACHE.append(folder)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    if "jax" in sys.modules:  # imported before this hook (a conftest below): configure it
        import jax

        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _single_threaded_blas() -> None:
    """OpenBLAS on one thread, unless the user chose a number (``OPENBLAS_NUM_THREADS``).

    The tests make many BLAS calls on tiny arrays (scipy's L-BFGS-B and SLSQP steps, small
    NumPy products); between them OpenBLAS's idle threads spin, which costs CPU and buys
    nothing at these sizes. Measured on tests/methods, tests/wfr and tests/optimum (2
    cores): 185 → 139 CPU-s; test_exact_against_nonconvex_multistart alone 10.5 → 1.4.
    The variable covers the BLAS libraries loaded later (scipy's own) and the CLI
    subprocesses and Dask workers; threadpoolctl (a scikit-learn dependency) the ones
    already loaded (NumPy's: a pytest plugin imports it before this file).
    """
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def pytest_configure(config):
    """``support.FULL``: does this run select the ``slow`` tests (``make test-all``)? Then
    fuzz tests draw their full number of examples (:func:`support.examples`)."""
    markexpr = config.getoption("markexpr", "") or ""
    support.FULL = "not slow" not in " ".join(markexpr.split())
    if not support.FULL and "jax" not in sys.modules:
        # `make test` (its time is budgeted, CONTRIBUTING.md) compiles without most XLA
        # optimizations: compilation dominates its tests (25-40 % less CPU). Results differ
        # in the last bits from optimized programs, so this process and the subprocesses and
        # workers it starts must agree: only when jax is not imported yet (a conftest.py
        # below that imported it would change nothing, anywhere, for `pytest` on its folder:
        # tests/runner/conftest.py imports mfjko inside its fixtures). `make test-all`
        # tests the optimized programs.
        os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
        # and without XLA:CPU's new fusion emitters, the slowest part of what compilation
        # remains: measured on tests/jko/test_debias.py + tests/test_metrics.py (twice
        # each, with the flag above), pytest CPU 62.5/61.6 s → 35.5/46.2 s. Same kind of
        # last-bit differences as above.
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_use_fusion_emitters" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_fusion_emitters=false".strip()
    _session_compile_cache()
    _single_threaded_blas()


def pytest_unconfigure(config):
    """Remove the session's XLA cache."""
    for folder in _SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tiny_config() -> dict:
    """A tiny end-to-end run config (dict) of the 1-D regression: GD, Langevin, JKO on 7³."""
    return tiny_raw()
