"""XLA's persistent compilation cache, shared by the CLI and the sweep's worker processes."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["enable_compile_cache"]


def enable_compile_cache() -> Path | None:
    """Keep XLA's compiled programs on disk between runs (JAX's persistent cache).

    In ``$MFJKO_XLA_CACHE``, else ``$XDG_CACHE_HOME/mfjko/xla`` (``~/.cache/mfjko/xla``):
    a second ``mfjko run`` of a config skips most compilation, and a sweep's worker
    processes (:func:`mfjko.sweep.execute.run_group`) compile a program once between them
    and across sweeps. Nothing is cached with
    ``MFJKO_XLA_CACHE=0`` or when ``JAX_COMPILATION_CACHE_DIR`` already chooses a folder.
    Compiled programs depend only on shapes and code, never on data: results are the same.

    Returns:
      The cache folder, or None when off.
    """
    setting = os.environ.get("MFJKO_XLA_CACHE", "")
    if setting == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(setting) if setting else base / "mfjko" / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return folder
