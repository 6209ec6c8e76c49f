"""What a run records about where it came from: seed, versions, git revision, platform."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import jax

__all__ = ["provenance", "git_revision", "PACKAGES"]

#: packages whose versions a run records
PACKAGES = ("mfjko", "jax", "jaxlib", "ott-jax", "equinox", "diffrax", "numpy", "scipy",
            "cvxpy-base", "clarabel", "zarr", "xarray", "pydantic", "matplotlib", "dask",
            "distributed")


def git_revision() -> str | None:
    """HEAD of the repository this package runs from, with "+dirty" for local changes."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(cfg) -> dict:
    """Seed, package versions, git revision, timestamp and platform of this run."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "seed": cfg.seed,
        "versions": versions,
        "git_revision": git_revision(),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax_devices": [str(d) for d in jax.devices()],
        "command": " ".join(sys.argv),
    }
